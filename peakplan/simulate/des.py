"""Discrete-event simulation of one service station inside a peak period (simpy).

The station: customers arrive (homogeneous or non-homogeneous Poisson), are served first
come first served by a pool of identical servers whose number may change by shift, may
abandon the queue when their patience runs out, and are blocked when the waiting room is
full. The entry point here is :func:`run_station`: independent replications of one
station over ``[0, horizon)``, with 95% confidence intervals across replications
(validated against Erlang B/C and M/M/c closed forms in :mod:`peakplan.queueing`).
The peak-day model built on the same event loop (:func:`simulate_peak_day` and
:func:`simulate_peak_periods`) lives in :mod:`peakplan.simulate.peak_periods`, plan scoring
with :func:`peak_service` in :mod:`peakplan.simulate.peak`; the first two are still
importable from here. The statistics of a run (``METRICS``, ``METRIC_DTYPE``, the
per-replication summary, :class:`Estimate` and :class:`StationResult` with its plain,
conditional and control-variate estimators) live in :mod:`peakplan.simulate.des_estimators`
and are re-exported here.

Design (why it is fast and still exact FCFS):

* All random numbers of a replication are drawn up front in numpy batches, from three
  independent streams spawned from the replication's ``SeedSequence``: arrivals,
  service times, patience times. Customer ``i`` always gets the ``i``-th service and
  patience draw, so two runs with the same seed and different server counts see the
  same customers (common random numbers; plan comparisons are paired).
* The event loop is a ``simpy.Environment`` driven by timeout events with callbacks,
  without a generator process per customer: an arrival event starts service (when a
  server is free), joins the FIFO queue, or is blocked; a departure event takes the
  head of the queue. Abandonment and shift changes are timeout events too. This is the
  same FCFS M/M/c dynamics as ``simpy.Resource`` with one process per customer, at
  about two events per customer instead of six.
* Statistics are computed afterwards, in numpy, from the per-customer records.

Semantics pinned down by the tests:

* Time is in any unit used consistently by every argument (rates per time unit).
* Arrivals stop at ``horizon``; customers present then are still served (with the
  server count in force after the horizon, by default the last one). If that count is
  zero the station *closes* at ``horizon``: customers still waiting are ``unserved``.
* A server count that drops while servers are busy lets current services finish
  (non-preemptive); no new service starts until busy servers < servers scheduled.
* Statistics cover customers arriving in the window ``[warmup, horizon)``; time
  averages (utilization, ``L``, ``L_q``, ``P_0``) integrate over that same window.
* Each customer has exactly one outcome: ``served``, ``abandoned`` (patience ran out
  in the queue), ``blocked`` (queue full on arrival) or ``unserved`` (still waiting
  when the station closed). Shares ``abandon_rate`` and ``p_block`` are per offered
  customer; ``p_wait`` and ``mean_wait`` are per admitted (not blocked) customer, where
  the wait of an abandoned or unserved customer is its time in queue. Service level is
  the share of offered customers whose service started within the threshold.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from peakplan.errors import InputError
from peakplan.queueing import _real, _servers, _show
from peakplan.rng import SeedLike, block_seeds, generator, seed_sequence
from peakplan.simulate.des_estimators import (
    COND_METRICS,  # noqa: F401 (re-exported, as before the split)
    METRIC_DTYPE,
    METRICS,  # noqa: F401 (re-exported, as before the split)
    Estimate,
    StationResult,
    _capacity_time,
    _cond_invalid,
    _overlap,
    _summarise,
)

__all__ = [
    "METRIC_DTYPE",
    "RECORD_DTYPE",
    "SLOTS",
    "Estimate",
    "StationResult",
    "run_station",
    "server_schedule",
]

#: Names moved to :mod:`peakplan.simulate.peak_periods`, still importable from this module.
_MOVED = ("PeakDayResult", "PeakPeriodsResult", "simulate_peak_day", "simulate_peak_periods")


def __getattr__(name: str) -> Any:
    """Re-export the peak-period names that moved to :mod:`peakplan.simulate.peak_periods`."""
    if name in _MOVED:
        from peakplan.simulate import peak_periods

        return getattr(peak_periods, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: One row per simulated customer (``StationResult.records``), in arrival order per
#: replication. Times are in the caller's time unit; ``start`` and ``service`` are NaN
#: for customers never served; ``end`` is the departure, abandonment, blocking or
#: closing time; ``wait`` is the time in queue (0 for blocked customers); ``servers``
#: is the number of servers scheduled at the arrival instant; ``in_system`` is the number of
#: customers in the system (in service or waiting, not abandoned) just before the arrival,
#: which the conditional estimators (:meth:`StationResult.service_level_cond`) use.
RECORD_DTYPE = np.dtype([
    ("replication", np.int32), ("arrival", np.float64), ("start", np.float64),
    ("end", np.float64), ("wait", np.float64), ("service", np.float64),
    ("served", np.bool_), ("abandoned", np.bool_), ("blocked", np.bool_),
    ("unserved", np.bool_), ("servers", np.int32), ("in_system", np.int32),
])

SERVICE_DISTS = ("exponential", "deterministic", "lognormal", "gamma", "empirical")
PATIENCE_DISTS = ("exponential", "deterministic")
#: Equal slots of a day's server schedule from a fractional server count (:func:`server_schedule`).
SLOTS = 64
_MAX_EXPECTED_ARRIVALS = 50_000_000  # per replication; beyond this memory runs out

# Customer states inside the event loop.
_WAITING, _SERVED, _ABANDONED, _BLOCKED, _UNSERVED = 0, 1, 2, 3, 4


# --------------------------------------------------------------------------- the model
@dataclass(frozen=True, eq=False)
class _Model:
    """Everything one replication needs (picklable, sent to worker processes)."""

    horizon: float
    warmup: float
    rate: float | None  # rate mode: λ, thinned by ``profile`` multipliers
    count: float | None  # count mode: number of arrivals (expected if poisson_count)
    poisson_count: bool
    profile: np.ndarray | None  # per equal slot: rate multipliers or weights
    service_dist: str
    service_mean: float | None
    service_cv: float | None
    service_samples: np.ndarray | None
    patience_dist: str
    patience_mean: float | None
    max_wait: float | None
    queue_capacity: int | None
    schedule: np.ndarray  # servers per equal slot over [0, horizon)
    late_servers: int  # servers after the horizon; 0 closes the station
    keep_records: bool
    initial: int = 0  # customers already waiting at time 0 (a carried backlog), first in line


def _arrival_times(m: _Model, g: np.random.Generator) -> np.ndarray:
    """Sorted arrival times in ``[0, horizon)`` from the arrival stream ``g``."""
    h = m.horizon
    if m.count is not None:  # a given number of arrivals, spread by the profile density
        if m.poisson_count:
            n = int(g.poisson(m.count))
        else:  # unbiased rounding of a fractional count
            n = int(math.floor(m.count) + (g.random() < m.count - math.floor(m.count)))
        u = g.random(n)
        if m.profile is None:
            return np.sort(u * h)
        w = m.profile / m.profile.sum()
        cum = np.concatenate([[0.0], np.cumsum(w)])
        cum[-1] = 1.0
        slot = np.clip(np.searchsorted(cum, u, side="right") - 1, 0, w.size - 1)
        # Zero-weight slots have zero probability mass: searchsorted skips them.
        frac = (u - cum[slot]) / w[slot]
        t = (slot + np.clip(frac, 0.0, 1.0)) * (h / w.size)
        return np.sort(np.minimum(t, np.nextafter(h, 0.0)))
    # Homogeneous Poisson at the peak rate, then thinning (Lewis & Shedler 1979).
    peak = m.rate * (1.0 if m.profile is None else float(m.profile.max()))
    expected = peak * h
    batch = int(expected + 6.0 * math.sqrt(expected) + 64.0)
    chunks: list[np.ndarray] = []
    while True:  # one batch almost always suffices (it covers the mean plus 6 sd)
        chunks.append(g.standard_exponential(batch) / peak)
        t = np.cumsum(np.concatenate(chunks))
        if t[-1] >= h:
            break
        batch = int((h - t[-1]) * peak * 1.1 + 64.0)
    t = t[t < h]
    if m.profile is not None:
        slot = np.minimum((t * (m.profile.size / h)).astype(np.int64), m.profile.size - 1)
        keep = g.random(t.size) * m.profile.max() < m.profile[slot]
        t = t[keep]
    return t


def _service_times(m: _Model, g: np.random.Generator, n: int) -> np.ndarray:
    d, mean, cv = m.service_dist, m.service_mean, m.service_cv
    if d == "exponential":
        return g.exponential(mean, n)
    if d == "deterministic":
        return np.full(n, mean)
    if d == "lognormal":  # mean and CV -> log-scale sigma and mu
        sigma2 = math.log1p(cv * cv)
        return g.lognormal(math.log(mean) - sigma2 / 2.0, math.sqrt(sigma2), n)
    if d == "gamma":
        return g.gamma(1.0 / (cv * cv), mean * cv * cv, n)
    samples = m.service_samples  # empirical: resample, optionally rescaled to ``mean``
    draws = samples[g.integers(0, samples.size, n)]
    return draws if mean is None else draws * (mean / samples.mean())


def _patience_times(m: _Model, g: np.random.Generator, n: int) -> np.ndarray | None:
    if m.patience_mean is None and m.max_wait is None:
        return None
    if m.patience_mean is None:
        return np.full(n, m.max_wait)
    pat = g.exponential(m.patience_mean, n) if m.patience_dist == "exponential" \
        else np.full(n, m.patience_mean)
    return pat if m.max_wait is None else np.minimum(pat, m.max_wait)


def _simulate(m: _Model, ss: np.random.SeedSequence, replication: int) -> np.ndarray:
    """One replication: draw, run the event loop, return its records (``RECORD_DTYPE``)."""
    g_arr, g_svc, g_pat = (generator(s) for s in block_seeds(ss, 0, 3))
    times = _arrival_times(m, g_arr)
    if m.initial:
        times = np.concatenate([np.zeros(m.initial), times])
    n = times.size
    svc_arr = _service_times(m, g_svc, n)
    pat_arr = _patience_times(m, g_pat, n)

    env = simpy.Environment()
    timeout = env.timeout
    gaps = np.diff(times, prepend=0.0).tolist()
    svc = svc_arr.tolist()
    pat = None if pat_arr is None else pat_arr.tolist()
    qcap = math.inf if m.queue_capacity is None else m.queue_capacity
    nan = math.nan
    arrival, start, end = [nan] * n, [nan] * n, [nan] * n
    state, servers_at, in_system = [_WAITING] * n, [0] * n, [0] * n
    queue: deque[int] = deque()
    popleft, append = queue.popleft, queue.append
    capacity = int(m.schedule[0])
    busy = 0
    waiting = 0  # customers in the queue that have not abandoned

    def serve_queue(now: float) -> None:
        nonlocal busy, waiting
        while waiting and busy < capacity:
            j = popleft()
            if state[j] != _WAITING:  # abandoned while queued: a stale entry
                continue
            waiting -= 1
            busy += 1
            state[j] = _SERVED
            start[j] = now
            timeout(svc[j], j).callbacks.append(depart)

    def depart(ev: simpy.Event) -> None:
        nonlocal busy
        end[ev.value] = env.now
        busy -= 1
        if waiting:
            serve_queue(env.now)

    def arrive(ev: simpy.Event) -> None:
        nonlocal busy, waiting
        i = ev.value
        now = env.now
        arrival[i] = now
        servers_at[i] = capacity
        in_system[i] = busy + waiting
        if busy < capacity:  # a free server implies an empty queue
            busy += 1
            state[i] = _SERVED
            start[i] = now
            timeout(svc[i], i).callbacks.append(depart)
        elif waiting >= qcap:
            state[i] = _BLOCKED
            end[i] = now
        else:
            append(i)
            waiting += 1
            if pat is not None:
                timeout(pat[i], i).callbacks.append(abandon)
        i += 1
        if i < n:
            timeout(gaps[i], i).callbacks.append(arrive)

    def abandon(ev: simpy.Event) -> None:
        nonlocal waiting
        j = ev.value
        if state[j] == _WAITING:
            state[j] = _ABANDONED
            end[j] = env.now
            waiting -= 1

    def change(ev: simpy.Event) -> None:
        nonlocal capacity
        capacity = ev.value
        serve_queue(env.now)

    def close(ev: simpy.Event) -> None:
        nonlocal capacity, waiting
        capacity = 0
        for j in queue:
            if state[j] == _WAITING:
                state[j] = _UNSERVED
                end[j] = env.now
        queue.clear()
        waiting = 0

    sched = m.schedule
    slot = m.horizon / sched.size
    for k in range(1, sched.size):
        if sched[k] != sched[k - 1]:
            timeout(k * slot, int(sched[k])).callbacks.append(change)
    if m.late_servers == 0:
        timeout(m.horizon).callbacks.append(close)
    elif m.late_servers != sched[-1]:
        timeout(m.horizon, m.late_servers).callbacks.append(change)
    if n:
        timeout(gaps[0], 0).callbacks.append(arrive)
    env.run()

    rec = np.empty(n, dtype=RECORD_DTYPE)
    rec["replication"] = replication
    st = np.array(state, dtype=np.int8)
    left = st == _WAITING  # only if an arrival slipped past closing time by rounding
    if left.any():
        st[left] = _UNSERVED
    rec["arrival"] = arrival
    rec["start"] = start
    e = np.array(end)
    e[left] = max(env.now, m.horizon)
    rec["end"] = e
    served = st == _SERVED
    rec["served"] = served
    rec["abandoned"] = st == _ABANDONED
    rec["blocked"] = st == _BLOCKED
    rec["unserved"] = st == _UNSERVED
    rec["wait"] = np.where(served, rec["start"], e) - rec["arrival"]
    rec["service"] = np.where(served, svc_arr, np.nan)
    rec["servers"] = servers_at
    rec["in_system"] = in_system
    return rec


# --------------------------------------------------------------------------- replications
def _entropy(ss: np.random.SeedSequence) -> Any:
    """The entropy of ``ss`` as recorded in results (an int, or a tuple of ints)."""
    ent = ss.entropy
    return int(ent) if isinstance(ent, (int, np.integer)) else tuple(int(x) for x in ent)


def _replicate(args: tuple[_Model, np.random.SeedSequence, int]) -> tuple[np.void, Any]:
    """Worker entry point: one replication's summary row and (optionally) its records."""
    m, ss, r = args
    rec = _simulate(m, ss, r)
    return _summarise(m, rec), (rec if m.keep_records else None)


def _map(fn: Any, jobs: list, workers: int) -> list:
    """``map`` in this process or in a process pool; results keep the order of ``jobs``."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        return list(pool.map(fn, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


# --------------------------------------------------------------------------- validation
def _choice(name: str, value: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise InputError(f"{name} must be one of {', '.join(options)}; got {value!r}")
    return value


def _optional_pos(name: str, value: Any, unit: str = "time units") -> float | None:
    if value is None:
        return None
    return float(_real(name, value, low=0.0, low_open=True, unit=unit))


def _whole(name: str, value: Any, low: int) -> int:
    if np.ndim(value) != 0:
        raise InputError(f"{name} must be a single whole number, got {value!r}")
    v = int(_servers(name, value))
    if v < low:
        raise InputError(f"{name} must be >= {low}, got {value!r}")
    return v


def _vector(name: str, value: Any, *, whole: bool = False) -> np.ndarray:
    """A non-empty 1-D array of non-negative numbers with a positive maximum."""
    arr = _servers(name, value) if whole else _real(name, value, low=0.0, low_open=False)
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not arr.max() > 0:
        raise InputError(f"{name} must have at least one positive entry, got {_show(arr)}")
    return arr


def _service_args(dist: str, mean: Any, cv: Any, samples: Any) -> dict:
    dist = _choice("service_dist", dist, SERVICE_DISTS)
    if dist == "empirical":
        if samples is None:
            raise InputError("service_dist='empirical' needs service_samples (an array of "
                             "observed service times)")
        smp = _real("service_samples", samples, low=0.0, low_open=False, unit="time units")
        if smp.ndim != 1 or smp.size == 0 or not smp.mean() > 0:
            raise InputError(f"service_samples must be a non-empty 1-D array with a positive "
                             f"mean, got {_show(smp)}")
        return {"service_dist": dist, "service_mean": _optional_pos("service_time_mean", mean),
                "service_cv": None, "service_samples": smp}
    if samples is not None:
        raise InputError(f"service_samples is only used with service_dist='empirical', "
                         f"got service_dist={dist!r}")
    if mean is None:
        raise InputError(f"service_time_mean is required for service_dist={dist!r}")
    if dist in ("lognormal", "gamma"):
        if cv is None:
            raise InputError(f"service_dist={dist!r} needs service_cv (coefficient of "
                             f"variation, std/mean > 0)")
        cv = _optional_pos("service_cv", cv, unit="")
    elif cv is not None:
        raise InputError(f"service_cv only applies to lognormal and gamma service times, "
                         f"got service_cv={cv!r} with service_dist={dist!r}")
    return {"service_dist": dist, "service_mean": _optional_pos("service_time_mean", mean),
            "service_cv": cv, "service_samples": None}


def _check_size(expected: float) -> None:
    if expected > _MAX_EXPECTED_ARRIVALS:
        raise InputError(f"about {expected:.3g} arrivals per replication exceeds the limit of "
                         f"{_MAX_EXPECTED_ARRIVALS:.0e}; shorten the horizon")


# --------------------------------------------------------------------------- entry points
def run_station(
    arrival_rate: float,
    servers: int | None,
    service_time_mean: float | None,
    horizon: float,
    seed: SeedLike,
    *,
    replications: int = 10,
    warmup: float = 0.0,
    service_dist: str = "exponential",
    service_cv: float | None = None,
    service_samples: Any = None,
    patience_mean: float | None = None,
    patience_dist: str = "exponential",
    max_wait: float | None = None,
    queue_capacity: int | None = None,
    arrival_profile: Any = None,
    server_schedule: Any = None,
    workers: int = 1,
    keep_records: bool = True,
) -> StationResult:
    """Simulate a multi-server FCFS station over ``[0, horizon)``, ``replications`` times.

    Parameters
    ----------
    arrival_rate:
        ``λ``, Poisson arrivals per time unit (> 0); with ``arrival_profile`` the rate in
        slot ``k`` is ``λ · profile[k]`` (non-homogeneous Poisson, generated by thinning).
    servers:
        ``c``, number of servers (>= 1); ``None`` when ``server_schedule`` is given.
    service_time_mean:
        ``1/μ``, mean service time (time units, > 0). With ``service_dist='empirical'``
        the samples are rescaled to this mean, or used as they are when it is ``None``.
    horizon:
        End of arrivals (time units, > 0). Customers present at the horizon are served
        afterwards (see the module notes on closing).
    seed:
        Root seed; replication ``r`` uses the ``r``-th spawned child ``SeedSequence``, so
        results do not depend on ``workers``.
    replications:
        Number of independent replications (>= 1; >= 2 for confidence intervals).
    warmup:
        Customers arriving before ``warmup`` are simulated but excluded from statistics
        (time units, in ``[0, horizon)``).
    service_dist:
        ``'exponential'`` (M/M/c), ``'deterministic'``, ``'lognormal'`` or ``'gamma'``
        (both need ``service_cv``; lognormal log-scale ``σ² = ln(1 + cv²)``), or
        ``'empirical'`` (resampled from ``service_samples``).
    service_cv:
        Coefficient of variation (std / mean) of lognormal or gamma service times.
    service_samples:
        Observed service times for ``'empirical'``.
    patience_mean:
        Mean patience (time units); a waiting customer abandons when it runs out.
        ``None``: nobody abandons (unless ``max_wait``).
    patience_dist:
        ``'exponential'`` (Erlang A) or ``'deterministic'``.
    max_wait:
        Cap on patience: nobody waits longer than this (time units).
    queue_capacity:
        Waiting places (``None``: unlimited; ``0``: a loss system, Erlang B). An arrival
        that finds all servers busy and the queue full is blocked.
    arrival_profile:
        Rate multipliers (>= 0) for equal slots spanning ``[0, horizon)``.
    server_schedule:
        Server counts (whole numbers >= 0) for equal slots spanning ``[0, horizon)``; the
        last count stays in force after the horizon (``0`` closes the station).
    workers:
        Processes for replications (>= 1); results are bit-identical for any value.
        Where processes are spawned rather than forked, call from under
        ``if __name__ == "__main__":``.
    keep_records:
        Keep the per-customer records (needed by :meth:`StationResult.service_level`
        and the ``*_cond`` and ``*_cv`` methods).

    An M/M/c-type run (exponential service, fixed ``servers``, no abandonment or
    blocking) also gives variance-reduced estimators: ``mean_wait_cond``,
    ``service_level_cond``, ``mean_wait_cv`` and ``service_level_cv``.
    """
    rate = float(_real("arrival_rate", arrival_rate, low=0.0, low_open=True,
                       unit="per time unit"))
    h = float(_real("horizon", horizon, low=0.0, low_open=True, unit="time units"))
    w = float(_real("warmup", warmup, low=0.0, low_open=False, high=h, unit="time units"))
    reps = _whole("replications", replications, 1)
    n_workers = _whole("workers", workers, 1)
    if server_schedule is None:
        if servers is None:
            raise InputError("servers is required unless server_schedule is given")
        schedule = np.array([_whole("servers", servers, 1)], dtype=np.int64)
    else:
        if servers is not None:
            raise InputError(f"give either servers or server_schedule, not both "
                             f"(got servers={servers!r}); pass servers=None")
        schedule = _vector("server_schedule", server_schedule, whole=True)
    profile = None if arrival_profile is None else _vector("arrival_profile", arrival_profile)
    qcap = None if queue_capacity is None else _whole("queue_capacity", queue_capacity, 0)
    model = _Model(
        horizon=h, warmup=w, rate=rate, count=None, poisson_count=False, profile=profile,
        **_service_args(service_dist, service_time_mean, service_cv, service_samples),
        patience_dist=_choice("patience_dist", patience_dist, PATIENCE_DISTS),
        patience_mean=_optional_pos("patience_mean", patience_mean),
        max_wait=_optional_pos("max_wait", max_wait), queue_capacity=qcap,
        schedule=schedule, late_servers=int(schedule[-1]), keep_records=bool(keep_records),
    )
    _check_size(rate * h * (1.0 if profile is None else float(profile.max())))
    root = seed_sequence(seed)
    jobs = [(model, ss, r) for r, ss in enumerate(block_seeds(root, 0, reps))]
    out = _map(_replicate, jobs, n_workers)
    rows = np.array([row for row, _ in out], dtype=METRIC_DTYPE)
    records = np.concatenate([rec for _, rec in out]) if keep_records else None
    return StationResult(
        per_replication=rows, records=records, horizon=h, warmup=w,
        seed_entropy=_entropy(root), seed_spawn_key=tuple(root.spawn_key),
        service_time_mean=math.nan if model.service_mean is None else model.service_mean,
        cond_invalid=_cond_invalid(model), arrival_rate_in=None if profile is not None else rate,
    )


# --------------------------------------------------------------------------- station-days
def server_schedule(servers: float, slots: int = SLOTS) -> np.ndarray:
    """Whole servers per equal slot with mean ``servers``: slot ``k`` gets
    ``round(c (k+1)) - round(c k)`` (so ``floor(c)`` or ``ceil(c)``; total ``round(c slots)``)."""
    c = float(_real("servers", servers, low=0.0, low_open=False))
    return np.diff(np.floor(c * np.arange(slots + 1) + 0.5)).astype(np.int64)


def _station_day(job: tuple) -> tuple:
    """Worker entry point of ``peakplan.simulate.peak.peak_service``: one station-day.

    ``job = (model, seed, sla, grid)``; the first ``model.initial`` customers are a carried
    backlog (they count for throughput and the queue, not for SLA and waits). Returns the
    metrics ``(fresh arrivals, carried, served, abandoned, unserved, SLA of fresh arrivals,
    mean and p95 wait of admitted fresh arrivals, utilization)``, the queue length at
    ``grid`` (the last point just before closing) and the fresh arrivals' waits.
    """
    m, ss, sla, grid = job
    rec = _simulate(m, ss, 0)
    fresh = rec[m.initial:]
    adm = fresh[~fresh["blocked"]]
    waits = adm["wait"]
    n = fresh.size
    nan = math.nan
    served = rec["served"]
    cap = _capacity_time(m.schedule, m.horizon, 0.0, m.horizon)
    busy = _overlap(rec["start"][served], rec["end"][served], 0.0, m.horizon).sum()
    q_exit = np.sort(np.where(served, rec["start"], rec["end"]))
    at = grid.copy()
    at[-1] = np.nextafter(m.horizon, 0.0)  # just before closing, when the unserved leave
    queue = np.searchsorted(rec["arrival"], at, side="right") - np.searchsorted(q_exit, at, side="right")
    metrics = (
        n, m.initial, int(served.sum()), int(rec["abandoned"].sum()), int(rec["unserved"].sum()),
        int((fresh["served"] & (fresh["wait"] <= sla)).sum()) / n if n else nan,
        float(waits.mean()) if waits.size else nan,
        float(np.percentile(waits, 95)) if waits.size else nan,
        float(busy / cap) if cap > 0 else nan,
    )
    return metrics, queue, waits.astype(np.float32)
