"""Peak periods: the discrete-event station inside peak days, and plan scoring with it.

Two layers, both on the event loop of :mod:`peakplan.simulate.des`:

* :func:`simulate_peak_day` / :func:`simulate_peak_periods` - arrays in, arrays out: a
  day's demand spread over an intraday profile, servers per slot; SLA attainment, waits,
  the queue curve.
* :func:`peak_service` - the plan-level model (DESIGN.md, "Discrete-event core"): for
  each plan, which Monte Carlo (path, period) pairs to simulate, the station-day each
  becomes, and the check of the DES throughput against the Monte Carlo fluid model.

Semantics of :func:`peak_service` (pinned down by ``tests/test_peak.py``):

* **Selection.** On the paths ``simulate(pack, ..., seed=seed)`` draws (redrawn block by
  block, so memory stays flat in ``n_paths``), per plan: ``u[p, t] = max_r need / cap``
  over the simulated resources (``need = demand @ load``, ``cap`` as below). Candidates
  are the peak periods (``pack.peak``; all periods if none). The ``top_periods``
  candidates with the highest mean ``u`` run on their representative path (``u[p, t]``
  closest to the median; lowest index on ties); then ``sampled_periods`` more (path,
  period) pairs are drawn without replacement with probability proportional to ``u``
  (DES effort where load presses on capacity), from one seeded stream shared by all plans
  (common random numbers). So ``sla_mean`` is a stress view of peak days, not an
  unbiased mean over all days.
* **Station-day.** A station is one resource (``des["resources"]``, default every loaded
  one). One operating day of ``hours_per_day`` hours stands for each of the period's
  ``d`` days (7 per week, 1 per day): ``sum_g D[p, t, g] / d`` arrivals over the segments
  loading it, spread by ``extra["intraday_profile"]`` (default flat), exponential service
  with mean ``extra["service_time"]`` (hours per unit), else the demand-weighted load
  ``sum_g D_g A[g, r] / sum_g D_g``. The backlog the Monte Carlo carries into the period
  (``B[t-1, g] / d``) waits at opening and goes first (FIFO by age, as in the fluid
  model); it takes server time but is left out of SLA and waits, which describe fresh
  arrivals (the wait of one still queued at closing runs to closing time).
* **Servers.** Capacity ``C`` (hours per period, :func:`station_capacity`) = regular
  capacity exactly as the Monte Carlo builds it (base - released + reserved, times the
  path's availability and disruption) + the flex levers' caps (flex is pay-per-use, so
  the station may call on all of it). ``c = C / d / hours_per_day`` servers on average,
  rounded per slot (:func:`~peakplan.simulate.des.server_schedule`, staggered shifts:
  ``floor(c)`` or ``ceil(c)`` per slot, the day's server-hours exact to within
  ``1 / (2 SLOTS)`` server-days). The station closes at the end of the day; customers
  still waiting are unserved (the fluid model's backlog).
* **Late delivery.** With the path's ``Draws.late`` flag, a reserve lever's increase
  effective in ``t`` arrives one period late, as in the Monte Carlo: absent from every
  day of period ``t`` (``min(y[t], y[t-1])`` on duty), on duty from ``t + 1``.
* **Fluid comparison.** :func:`peakplan.simulate.mc.run_recurrence` on the path cut to
  periods ``0..t``, ``0..t-1`` and ``0..t-2``, with ``penalty`` and ``backlog_cost`` the
  indicator of segment ``g`` (neither changes the recurrence): ``cost_penalty`` ``P`` is
  lost-so-far plus backlog of ``g``, ``cost_backlog`` ``CB`` sums its backlog, so
  ``served[t, g] = D[t, g] - (P_t - P_{t-1})`` and ``B[t-1, g] = CB_{t-1} - CB_{t-2}``
  exactly, from the public API. Each station-day has its own ``gap`` (a non-bottleneck
  station serves more than its segments get through the bottleneck); the plan's
  ``fluid_gap`` applies the fluid model's bottleneck rule: per (path, period) and
  segment, the least over its stations of served x its share of the station's
  customers, summed, against the fluid served volume. ``fluid_ok`` holds when
  ``|fluid_gap| <= 2%`` and waits are short next to the day (pooled p95 wait <=
  :data:`SHORT_WAIT_SHARE` x ``hours_per_day``); otherwise the fluid model under-states
  the peak and :attr:`PeakService.notes` says so. Pre-built stock is not modelled
  inside the day (the station sees the demand the stock would serve).
* **Cost bound.** A station-day expecting more than :data:`MAX_CUSTOMERS` customers runs
  as a slice: demand and servers times ``k = MAX_CUSTOMERS / customers`` (same
  utilisation; fewer servers queue a little more, so it errs on the safe side); served
  counts and queues are divided by ``k`` again; ``days.scale`` is ``k``, ``table.scaled``
  flags the plan.
* **Reproducibility.** Station-day ``(p, t, r)`` uses the root seed's child with spawn key
  ``(_DES_STREAM, 1, p, t, r)``: the same customers for every plan (paired comparison)
  and every worker count.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from peakplan.errors import InputError
from peakplan.pack import PlanningPack
from peakplan.queueing import _real, _servers, _show
from peakplan.rng import BLOCK_PATHS, SeedLike, block_generators, block_seeds, generator, seed_sequence
from peakplan.simulate.des import (
    SLOTS,
    _capacity_time,
    _check_size,
    _entropy,
    _map,
    _Model,
    _optional_pos,
    _overlap,
    _service_args,
    _simulate,
    _station_day,
    _whole,
    server_schedule,
)
from peakplan.simulate.mc import Draws, PlanInputs, block_draws, run_recurrence

__all__ = [
    "MAX_CUSTOMERS",
    "SLOTS",
    "PeakDayResult",
    "PeakPeriodsResult",
    "PeakService",
    "WorstDay",
    "peak_service",
    "server_schedule",
    "simulate_peak_day",
    "simulate_peak_periods",
    "station_capacity",
]


# --------------------------------------------------------------------------- peak periods
@dataclass(frozen=True, eq=False)
class PeakPeriodsResult:
    """Output of :func:`simulate_peak_periods`: one entry per period (axis 0).

    Shares are NaN for a period without arrivals. Waits are times in queue of admitted
    customers (served: until service; abandoned: until abandoning; unserved: until close).
    """

    demand: np.ndarray
    """Demand given per period (units), as passed in."""
    arrivals: np.ndarray
    """Customers that arrived (int)."""
    served: np.ndarray
    """Customers served (throughput, int)."""
    abandoned: np.ndarray
    """Customers that abandoned the queue (int)."""
    unserved: np.ndarray
    """Customers still waiting when the station closed (``late_servers=0``; int)."""
    sla_attainment: np.ndarray
    """Share of arrivals served within ``sla_threshold``."""
    abandon_rate: np.ndarray
    """Share of arrivals that abandoned."""
    mean_wait: np.ndarray
    """Mean wait in queue (time units)."""
    p95_wait: np.ndarray
    """95th percentile of the wait in queue (time units)."""
    utilization: np.ndarray
    """Busy server time / scheduled server time within the period."""
    grid: np.ndarray
    """Times at which the queue is sampled, ``linspace(0, period_length, grid_points)``."""
    queue_length: np.ndarray
    """Customers waiting at each ``grid`` time, shape ``(periods, grid_points)``."""
    seed_entropy: Any
    """Entropy of the root ``SeedSequence``; period ``i`` uses its ``i``-th spawned child."""
    seed_spawn_key: tuple[int, ...]
    """Spawn key of the root ``SeedSequence``."""


@dataclass(frozen=True, eq=False)
class PeakDayResult:
    """Output of :func:`simulate_peak_day`: one period's metrics (see
    :class:`PeakPeriodsResult` for the definitions)."""

    arrivals: int
    """Customers that arrived."""
    served: int
    """Customers served (throughput)."""
    abandoned: int
    """Customers that abandoned."""
    unserved: int
    """Customers still waiting at closing time."""
    sla_attainment: float
    """Share of arrivals served within ``sla_threshold``."""
    abandon_rate: float
    """Share of arrivals that abandoned."""
    mean_wait: float
    """Mean wait in queue (time units)."""
    p95_wait: float
    """95th percentile wait in queue (time units)."""
    utilization: float
    """Busy server time / scheduled server time within the period."""
    grid: np.ndarray
    """Sample times of ``queue_length``."""
    queue_length: np.ndarray
    """Customers waiting at each ``grid`` time."""
    records: np.ndarray | None
    """Per-customer ``RECORD_DTYPE`` rows when ``keep_records=True``."""
    seed_entropy: Any
    """Entropy of the ``SeedSequence`` used."""
    seed_spawn_key: tuple[int, ...]
    """Spawn key of the ``SeedSequence`` used."""


_PERIOD_FIELDS = ("arrivals", "served", "abandoned", "unserved", "sla_attainment",
                  "abandon_rate", "mean_wait", "p95_wait", "utilization")


def _period(args: tuple[_Model, np.random.SeedSequence, float, np.ndarray]) -> tuple:
    """Worker entry point: one peak period -> (metrics tuple, queue curve, records)."""
    m, ss, sla, grid = args
    rec = _simulate(m, ss, 0)
    n = rec.size
    adm = ~rec["blocked"]
    waits = rec["wait"][adm]
    served = int(rec["served"].sum())
    abandoned = int(rec["abandoned"].sum())
    nan = math.nan
    hit = int((rec["served"] & (rec["wait"] <= sla)).sum())
    cap = _capacity_time(m.schedule, m.horizon, 0.0, m.horizon)
    busy = _overlap(rec["start"][rec["served"]], rec["end"][rec["served"]], 0.0, m.horizon)
    a = rec["arrival"][adm]
    q_exit = np.sort(np.where(rec["served"], rec["start"], rec["end"])[adm])
    queue = (np.searchsorted(a, grid, side="right")
             - np.searchsorted(q_exit, grid, side="right"))
    metrics = (
        n, served, abandoned, int(rec["unserved"].sum()),
        hit / n if n else nan, abandoned / n if n else nan,
        float(waits.mean()) if waits.size else nan,
        float(np.percentile(waits, 95)) if waits.size else nan,
        float(busy.sum() / cap) if cap > 0 else nan,
    )
    return metrics, queue, (rec if m.keep_records else None)


def _peak_jobs(demands: Any, servers: Any, profile: Any, service_time_mean: Any,
               period_length: Any, seeds: Any, opts: dict, name: str) -> tuple[list, Any]:
    """Validate and broadcast the peak-period inputs; one ``_period`` job per period.

    ``seeds(n)`` gives the ``n`` period seed sequences; ``opts`` holds the keyword
    arguments of :func:`simulate_peak_periods` (plus ``keep_records``).
    """
    d = _real(name, demands, low=0.0, low_open=False, unit="units")
    if d.ndim != 1:
        raise InputError(f"{name} must be a 1-D array (one entry per period), "
                         f"got shape {d.shape}")
    n = d.size
    length = float(_real("period_length", period_length, low=0.0, low_open=True,
                         unit="time units"))
    s = _servers("servers", servers)
    if s.ndim == 0:
        s = np.full((n, 1), int(s))
    elif s.ndim == 1:
        if s.size != n:
            raise InputError(f"servers as a 1-D array needs one count per period ({n}), got "
                             f"{s.size}; use shape (periods, slots) for per-slot counts")
        s = s[:, None]
    elif s.ndim != 2 or s.shape[0] != n or s.shape[1] == 0:
        raise InputError(f"servers must be a scalar, shape ({n},) or ({n}, slots), "
                         f"got shape {s.shape}")
    p = _real("profile", profile, low=0.0, low_open=False)
    if p.ndim == 1:
        p = np.broadcast_to(p, (n, p.size))
    if p.ndim != 2 or p.shape[0] != n or p.shape[1] == 0:
        raise InputError(f"profile must have shape (slots,) or ({n}, slots), got {p.shape}")
    sums = p.sum(axis=1)
    bad = np.abs(sums - 1.0) > 1e-6
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise InputError(f"profile weights must sum to 1 per period; periods {rows} sum to "
                         f"{_show(sums[bad])}")
    late = s[:, -1]
    if opts["late_servers"] is not None:
        late = np.broadcast_to(_servers("late_servers", opts["late_servers"]), (n,))
    sla = float(_real("sla_threshold", opts["sla_threshold"], low=0.0, low_open=False,
                      unit="time units"))
    grid = np.linspace(0.0, length, _whole("grid_points", opts["grid_points"], 2))
    svc = _service_args(opts["service_dist"], service_time_mean, opts["service_cv"],
                        opts["service_samples"])
    pat_mean = _optional_pos("patience_mean", opts["patience_mean"])
    cap = _optional_pos("max_wait", opts["max_wait"])
    _check_size(float(d.max(initial=0.0)))
    jobs = []
    for i, ss in enumerate(seeds(n)):
        m = _Model(
            horizon=length, warmup=0.0, rate=None, count=float(d[i]),
            poisson_count=bool(opts["poisson_demand"]), profile=np.asarray(p[i], dtype=float),
            **svc, patience_dist="exponential", patience_mean=pat_mean, max_wait=cap,
            queue_capacity=None, schedule=s[i], late_servers=int(late[i]),
            keep_records=bool(opts["keep_records"]),
        )
        jobs.append((m, ss, sla, grid))
    return jobs, grid


def simulate_peak_periods(
    demands: Any,
    servers: Any,
    profile: Any,
    service_time_mean: float | None,
    period_length: float,
    seed: SeedLike,
    *,
    sla_threshold: float,
    max_wait: float | None = None,
    patience_mean: float | None = None,
    late_servers: Any = None,
    service_dist: str = "exponential",
    service_cv: float | None = None,
    service_samples: Any = None,
    poisson_demand: bool = False,
    grid_points: int = 97,
    workers: int = 1,
) -> PeakPeriodsResult:
    """Simulate many peak periods (e.g. one per Monte Carlo path), arrays in, arrays out.

    Period ``i`` has ``demands[i]`` arrivals spread over ``[0, period_length)`` by the
    intraday ``profile`` (a non-homogeneous Poisson process conditioned on its count: each
    arrival falls in slot ``k`` with probability ``profile[k]``, uniformly inside it). A
    fractional demand is rounded up or down at random with the right mean;
    ``poisson_demand=True`` draws the count from ``Poisson(demands[i])`` instead.

    Parameters
    ----------
    demands:
        Shape ``(n,)``: units arriving per period (>= 0).
    servers:
        Servers on duty: scalar, ``(n,)`` (constant per period) or ``(n, slots)`` (per
        equal slot of the period, whole numbers >= 0).
    profile:
        Intraday weights per equal slot, summing to 1: shape ``(slots,)`` shared by all
        periods, or ``(n, slots)``.
    service_time_mean:
        Mean service time (time units, > 0).
    period_length:
        Length of a period (time units, > 0), e.g. 24 hours or 1440 minutes.
    seed:
        Root seed; period ``i`` uses child ``i`` of its ``SeedSequence`` (see
        :func:`peakplan.rng.block_seeds`), for any ``workers``.
    sla_threshold:
        Answer-time target (time units, >= 0) for ``sla_attainment``.
    max_wait:
        Customers leave the queue after waiting this long (time units).
    patience_mean:
        Mean exponential patience (time units); combined with ``max_wait`` as the minimum.
    late_servers:
        Servers after the period ends, finishing the backlog (scalar or ``(n,)``);
        ``None`` keeps the last slot's count; ``0`` closes at ``period_length`` and counts
        those still waiting as ``unserved``.
    service_dist, service_cv, service_samples:
        As in :func:`run_station`.
    poisson_demand:
        Draw the arrival count from a Poisson law with mean ``demands[i]``.
    grid_points:
        Number of sample times of the queue curve (>= 2).
    workers:
        Processes (>= 1); results are identical for any value.
    """
    opts = {"sla_threshold": sla_threshold, "max_wait": max_wait,
            "patience_mean": patience_mean, "late_servers": late_servers,
            "service_dist": service_dist, "service_cv": service_cv,
            "service_samples": service_samples, "poisson_demand": poisson_demand,
            "grid_points": grid_points, "keep_records": False}
    root = seed_sequence(seed)
    jobs, grid = _peak_jobs(demands, servers, profile, service_time_mean, period_length,
                            lambda n: block_seeds(root, 0, n), opts, "demands")
    n_workers = _whole("workers", workers, 1)
    out = _map(_period, jobs, n_workers)
    cols = list(zip(*(metrics for metrics, _, _ in out), strict=True)) if out else \
        [()] * len(_PERIOD_FIELDS)
    arrays = {
        name: np.array(col, dtype=np.int64 if k < 4 else np.float64)
        for k, (name, col) in enumerate(zip(_PERIOD_FIELDS, cols, strict=True))
    }
    queue = np.array([q for _, q, _ in out], dtype=np.int64).reshape(len(jobs), grid.size)
    return PeakPeriodsResult(
        demand=np.array([m.count for m, _, _, _ in jobs]), grid=grid, queue_length=queue, seed_entropy=_entropy(root),
        seed_spawn_key=tuple(root.spawn_key), **arrays,
    )


def simulate_peak_day(
    demand: float,
    servers: Any,
    profile: Any,
    service_time_mean: float | None,
    period_length: float,
    seed: SeedLike,
    *,
    sla_threshold: float,
    max_wait: float | None = None,
    patience_mean: float | None = None,
    late_servers: int | None = None,
    service_dist: str = "exponential",
    service_cv: float | None = None,
    service_samples: Any = None,
    poisson_demand: bool = False,
    grid_points: int = 97,
    keep_records: bool = False,
) -> PeakDayResult:
    """Simulate one peak period (a day): the single-period form of
    :func:`simulate_peak_periods` (same arguments, with ``demand`` a number and
    ``servers`` a number or a per-slot 1-D array), plus optional per-customer records.

    The result equals period ``i`` of ``simulate_peak_periods`` when ``seed`` is that
    call's ``i``-th child seed.
    """
    if np.ndim(demand) != 0:
        raise InputError(f"demand must be a single number, got shape {np.shape(demand)}; "
                         f"use simulate_peak_periods for many periods")
    if np.ndim(servers) > 1:
        raise InputError(f"servers must be a number or a 1-D per-slot array, got shape "
                         f"{np.shape(servers)}")
    opts = {"sla_threshold": sla_threshold, "max_wait": max_wait,
            "patience_mean": patience_mean, "late_servers": late_servers,
            "service_dist": service_dist, "service_cv": service_cv,
            "service_samples": service_samples, "poisson_demand": poisson_demand,
            "grid_points": grid_points, "keep_records": keep_records}
    ss = seed_sequence(seed)
    jobs, grid = _peak_jobs([demand], np.reshape(servers, (1, -1)), profile, service_time_mean,
                            period_length, lambda n: [ss], opts, "demand")
    metrics, queue, rec = _period(jobs[0])
    values = dict(zip(_PERIOD_FIELDS, metrics, strict=True))
    return PeakDayResult(
        grid=grid, queue_length=np.asarray(queue, dtype=np.int64), records=rec,
        seed_entropy=_entropy(ss), seed_spawn_key=tuple(ss.spawn_key), **values,
    )


# --------------------------------------------------------------------------- plan scoring
#: Largest expected number of customers simulated per station-day (else a scaled slice).
MAX_CUSTOMERS = 20_000
#: Largest ``|fluid_gap|`` for which the fluid model counts as agreeing with the DES.
FLUID_TOLERANCE = 0.02
#: Waits count as short next to the day when the pooled p95 wait is at most this share of it
#: (a quarter of the operating day: shorter waits do not move volume between days).
SHORT_WAIT_SHARE = 0.25
#: Days per period kind.
DAYS_PER_PERIOD = {"day": 1, "week": 7}
#: Spawn-key tag of the DES streams (far above any Monte Carlo block index).
_DES_STREAM = 0x44455300
_GRID_POINTS = 97
_DRAW_FIELDS = ("demand", "capacity_factor", "late", "event_hit", "disruption_hit")
_DAY_FIELDS = ("arrivals", "carried", "served", "abandoned", "unserved", "sla", "wait_mean_h",
               "wait_p95_h", "utilization")
_SETTINGS = ("enabled", "hours_per_day", "sla_hours", "sla_target", "max_wait_hours", "top_periods",
             "sampled_periods", "resources")


@dataclass(frozen=True, eq=False)
class WorstDay:
    """The simulated station-day of a plan with the lowest SLA attainment (for a chart)."""

    resource: str
    """Station (resource name)."""
    period: str
    """Period label."""
    path: int
    """Monte Carlo path index."""
    sla: float
    """Share of the day's fresh arrivals served within ``sla_hours``."""
    grid: np.ndarray
    """Hours since opening at which the queue is sampled."""
    queue_length: np.ndarray
    """Customers waiting at each ``grid`` time (the last point just before closing; divided
    by the slice factor when scaled)."""


@dataclass(frozen=True, eq=False)
class PeakService:
    """Output of :func:`peak_service`: the DES view of each plan's peak days."""

    table: Any
    """pandas DataFrame, one row per plan: ``plan``, ``sla_mean``, ``sla_p5``, ``sla_target``,
    ``days_below_target``, ``wait_mean_h``, ``wait_p95_h``, ``abandon_rate``, ``n_days``,
    ``fluid_gap``, ``fluid_ok``, ``scaled``."""
    days: Any
    """pandas DataFrame, one row per simulated station-day: ``plan``, ``resource``, ``period``,
    ``t``, ``path``, ``kind`` (``top``/``sampled``), ``demand`` and ``carried`` (units per day),
    ``servers`` (mean on duty), ``service_h``, ``served`` and ``fluid_served`` (units per day),
    ``gap``, ``sla``, ``wait_mean_h``, ``wait_p95_h``, ``abandon_rate``, ``utilization``,
    ``scale``."""
    worst_day: dict
    """Plan name -> :class:`WorstDay`."""
    notes: tuple[str, ...]
    """Sentences for the report (fluid model under-stating the peak, scaled slices)."""
    settings: dict
    """The DES settings used (``pack.des`` over the defaults)."""
    seed_entropy: Any
    """Entropy of the root ``SeedSequence``."""


def _settings(pack: PlanningPack) -> dict:
    from peakplan.config import DesSettings

    unknown = sorted(set(pack.des) - set(_SETTINGS))
    if unknown:
        raise InputError(f"pack.des has unknown settings {unknown}; known settings are {list(_SETTINGS)}")
    cfg = {**dataclasses.asdict(DesSettings()), **pack.des}
    _real("des.hours_per_day", cfg["hours_per_day"], low=0.0, low_open=True, high=24.0, unit="hours")
    _real("des.sla_hours", cfg["sla_hours"], low=0.0, low_open=True, unit="hours")
    _real("des.sla_target", cfg["sla_target"], low=0.0, low_open=False, high=1.0)
    _optional_pos("des.max_wait_hours", cfg["max_wait_hours"], unit="hours")
    for name in ("top_periods", "sampled_periods"):
        _whole(f"des.{name}", cfg[name], 0)
    return cfg


def _stations(pack: PlanningPack, cfg: dict) -> list[int]:
    """Indices of the simulated resources (explicit names must be loaded by some segment)."""
    load = np.asarray(pack.load, float)
    loaded = load.sum(axis=0) > 0
    if cfg["resources"] == "all":
        return [r for r in range(pack.R) if loaded[r]]
    names = [cfg["resources"]] if isinstance(cfg["resources"], str) else list(cfg["resources"])
    unknown = [n for n in names if n not in pack.resources]
    if unknown:
        raise InputError(f"des.resources: unknown resources {unknown}; resources are {list(pack.resources)}")
    idle = [n for n in names if not loaded[pack.resources.index(n)]]
    if idle:
        raise InputError(f"des.resources: {idle} carry no load (every load-matrix entry is 0), so no "
                         f"customer would arrive; drop them from des.resources")
    return [pack.resources.index(n) for n in names]


def _station_inputs(pack: PlanningPack, stations: list[int]) -> tuple[dict, dict]:
    """Per station: the intraday profile (weights summing to 1) and the service time override."""
    prof_in = pack.extra.get("intraday_profile") or {}
    svc_in = pack.extra.get("service_time") or {}
    profiles, services = {}, {}
    for r in stations:
        name = pack.resources[r]
        if name in prof_in:
            w = _real(f'extra["intraday_profile"]["{name}"]', prof_in[name], low=0.0, low_open=False)
            if w.ndim != 1 or w.size == 0 or not w.sum() > 0:
                raise InputError(f'extra["intraday_profile"]["{name}"] must be a non-empty list of weights '
                                 f"with a positive sum, got {_show(np.atleast_1d(w))}")
            profiles[r] = w / w.sum()
        else:
            profiles[r] = np.ones(1)
        if svc_in.get(name) is not None:
            services[r] = float(_real(f'extra["service_time"]["{name}"]', svc_in[name], low=0.0,
                                      low_open=True, unit="hours per unit"))
    return profiles, services


def station_capacity(pack: PlanningPack, plan: PlanInputs, draws: Draws) -> np.ndarray:
    """``[n, T, R]`` capacity (hours per period) on duty at the stations on each path.

    Regular capacity as the Monte Carlo builds it, ``max(base - released + reserved, 0) x
    availability x disruption`` (a late reserve lever contributes ``min(y[t], y[t-1])``),
    plus every flex lever's cap ``levels[f, t]`` (unshrunk, as in the Monte Carlo).
    """
    n = draws.demand.shape[0]
    nominal = np.broadcast_to(np.asarray(pack.base_capacity, float), (n, pack.T, pack.R)).copy()
    flex = np.zeros((pack.T, pack.R))
    for i, lever in enumerate(pack.levers):
        y = np.asarray(plan.levels[i], float)
        if lever.kind == "release":
            nominal[:, :, lever.resource] -= y[None, :]
        elif lever.kind == "reserve":
            y_late = np.minimum(y, np.concatenate([[0.0], y[:-1]]))
            nominal[:, :, lever.resource] += np.where(draws.late[:, i][:, None], y_late[None, :], y[None, :])
        else:
            flex[:, lever.resource] += y
    return np.maximum(nominal, 0.0) * draws.capacity_factor + flex[None, :, :]


def _pressure(pack: PlanningPack, demand: np.ndarray, cap: np.ndarray, stations: list[int]) -> np.ndarray:
    """``[n, T]`` load over capacity at the most pressed station (``1e6`` for load on no capacity)."""
    need = demand @ np.asarray(pack.load, float)[:, stations]
    c = cap[:, :, stations]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(c > 0, need / c, np.where(need > 0, 1e6, 0.0))
    return u.max(axis=2)


def _select(u: np.ndarray, candidates: np.ndarray, top: int, sampled: int,
            gen: np.random.Generator) -> list[tuple[int, int, str]]:
    """(path, period, kind) pairs from ``u`` (``[n, candidates]``): the top-load periods on their
    median path, then risk-weighted draws without replacement."""
    order = np.argsort(-u.mean(axis=0), kind="stable")[:top]
    w = u.copy()
    pairs = []
    for j in order:
        p = int(np.argmin(np.abs(u[:, j] - np.median(u[:, j]))))
        pairs.append((p, int(candidates[j]), "top"))
        w[p, j] = 0.0
    k = min(sampled, int(np.count_nonzero(w)))
    if k > 0:
        flat = gen.choice(w.size, size=k, replace=False, p=(w / w.sum()).ravel())
        for i in np.sort(flat):
            p, j = divmod(int(i), len(candidates))
            pairs.append((p, int(candidates[j]), "sampled"))
    return pairs


def _block_sizes(n: int) -> list[int]:
    full, rest = divmod(n, BLOCK_PATHS)
    return [BLOCK_PATHS] * full + ([rest] if rest else [])


def _pressures(pack: PlanningPack, plans: dict, stations: list[int], candidates: np.ndarray, n: int,
               root: np.random.SeedSequence) -> dict[str, np.ndarray]:
    """Plan name -> ``[n, candidates]`` load over capacity, drawn block by block (memory flat in ``n``)."""
    out = {name: np.empty((n, len(candidates))) for name in plans}
    sizes = _block_sizes(n)
    lo = 0
    for gen, size in zip(block_generators(root, 0, len(sizes)), sizes, strict=True):
        d = block_draws(pack, gen, size)
        for name, plan in plans.items():
            u = _pressure(pack, d.demand, station_capacity(pack, plan, d), stations)
            out[name][lo:lo + size] = u[:, candidates]
        lo += size
    return out


def _path_draws(pack: PlanningPack, root: np.random.SeedSequence, n: int, paths: list[int]) -> Draws:
    """The draws of ``paths`` (sorted) of an ``n``-path run, redrawn from their blocks only."""
    sizes = _block_sizes(n)
    parts = []
    for k in sorted({p // BLOCK_PATHS for p in paths}):
        d = block_draws(pack, block_generators(root, k, k + 1)[0], sizes[k])
        rows = [p - k * BLOCK_PATHS for p in paths if p // BLOCK_PATHS == k]
        parts.append([getattr(d, f)[rows] for f in _DRAW_FIELDS])
    return Draws(*(np.concatenate([part[i] for part in parts]) for i in range(len(_DRAW_FIELDS))))


def _truncate(pack: PlanningPack, n: int) -> PlanningPack:
    """The pack cut to periods ``0..n-1``."""
    cut = {f: (None if getattr(pack, f) is None else np.asarray(getattr(pack, f))[:n])
           for f in ("demand_mu", "demand_sigma", "base_capacity", "service_window", "peak", "freeze")}
    if pack.committed is not None:
        cut["committed"] = np.asarray(pack.committed)[:, :n]
    events = tuple(dataclasses.replace(e, periods=e.periods[:n],
                                       profile=None if e.profile is None else e.profile[:n]) for e in pack.events)
    stress = tuple(dataclasses.replace(s, periods=None if s.periods is None else s.periods[:n])
                   for s in pack.stress_tests)
    return pack.replace(periods=pack.periods[:n], events=events, stress_tests=stress, **cut)


def _fluid(pack: PlanningPack, plan: PlanInputs, draws: Draws, t: int, paths: np.ndarray,
           segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fluid ``served[t, g]`` and carried-in backlog ``B[t-1, g]`` (``[paths, G]``, zero off ``segments``)."""
    k = len(paths)
    served, carried = np.zeros((k, pack.G)), np.zeros((k, pack.G))
    sub = Draws(demand=draws.demand[paths], capacity_factor=draws.capacity_factor[paths],
                late=draws.late[paths], event_hit=draws.event_hit[paths],
                disruption_hit=draws.disruption_hit[paths])
    packs = {n: _truncate(pack, n) for n in (t + 1, t, t - 1) if n > 0}
    for g in segments:
        onehot = np.zeros(pack.G)
        onehot[g] = 1.0
        pen, back = {}, {}
        for n, pk in packs.items():
            d = Draws(demand=sub.demand[:, :n], capacity_factor=sub.capacity_factor[:, :n], late=sub.late,
                      event_hit=sub.event_hit, disruption_hit=sub.disruption_hit)
            rec = run_recurrence(pk.replace(penalty=onehot, backlog_cost=onehot),
                                 PlanInputs(plan.levels[:, :n], plan.prebuild[:n], plan.fixed_cost), d)
            pen[n], back[n] = rec["cost_penalty"], rec["cost_backlog"]
        zero = np.zeros(k)
        served[:, g] = sub.demand[:, t, g] - (pen[t + 1] - pen.get(t, zero))
        carried[:, g] = back.get(t, zero) - back.get(t - 1, zero)
    return served, carried


def _check_plan(pack: PlanningPack, name: str, plan: PlanInputs) -> None:
    for what, arr, shape in (("levels", plan.levels, (pack.L, pack.T)), ("prebuild", plan.prebuild, (pack.T, pack.G))):
        if np.shape(arr) != shape:
            raise InputError(f"plan {name!r}: {what} has shape {np.shape(arr)}, the pack needs {shape}; "
                             f"build it with peakplan.simulate.mc.plan_inputs(pack, ...)")


def peak_service(pack: PlanningPack, plans: dict[str, PlanInputs], *, n_paths: int, seed: SeedLike,
                 workers: int = 1) -> PeakService:
    """Simulate each plan's riskiest peak days station by station (see the module notes).

    Parameters
    ----------
    pack:
        The planning pack; ``pack.des`` holds the settings (``peakplan.config.DesSettings``).
    plans:
        Plan name -> :class:`~peakplan.simulate.mc.PlanInputs` (include the do-nothing
        ``plan_inputs(pack)`` as ``"baseline"`` to score it too).
    n_paths:
        Monte Carlo paths the (path, period) pairs are chosen from (>= 1).
    seed:
        Root seed: the paths are those of ``simulate(pack, ..., seed=seed)``.
    workers:
        Processes for the station-days (>= 1); results are identical for any value.
    """
    cfg = _settings(pack)
    n = _whole("n_paths", n_paths, 1)
    n_workers = _whole("workers", workers, 1)
    if not plans:
        raise InputError("plans is empty; pass at least one plan, e.g. {'baseline': plan_inputs(pack)}")
    for name, plan in plans.items():
        _check_plan(pack, name, plan)
    stations = _stations(pack, cfg)
    profiles, services = _station_inputs(pack, stations)
    root = seed_sequence(seed)
    if not cfg["enabled"] or not stations:
        return _result(pack, cfg, root, [], {})
    hours, days_per = float(cfg["hours_per_day"]), DAYS_PER_PERIOD[pack.period_kind]
    load = np.asarray(pack.load, float)
    segs = {r: np.flatnonzero(load[:, r] > 0) for r in stations}
    peak = pack.arr("peak").astype(bool)
    candidates = np.flatnonzero(peak) if peak.any() else np.arange(pack.T)
    grid = np.linspace(0.0, hours, _GRID_POINTS)
    pressure = _pressures(pack, plans, stations, candidates, n, root)
    selection = {}
    for name in plans:  # the same selection stream for every plan: common random numbers
        gen = generator(np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, _DES_STREAM, 0)))
        selection[name] = _select(pressure[name], candidates, int(cfg["top_periods"]),
                                  int(cfg["sampled_periods"]), gen)
    chosen = sorted({p for pairs in selection.values() for p, _, _ in pairs})
    if not chosen:  # top_periods = sampled_periods = 0, or nothing loads the stations
        return _result(pack, cfg, root, [], {})
    draws = _path_draws(pack, root, n, chosen)  # row i is path chosen[i]
    row_of = {p: i for i, p in enumerate(chosen)}
    needed = np.unique(np.concatenate([segs[r] for r in stations]))

    rows, jobs = [], []
    for name, plan in plans.items():
        pairs = selection[name]
        cap = station_capacity(pack, plan, draws)
        flows = {}
        for t in sorted({t for _, t, _ in pairs}):
            ps = [p for p, tt, _ in pairs if tt == t]
            served, carried = _fluid(pack, plan, draws, t, np.array([row_of[p] for p in ps]), needed)
            flows.update({(p, t): (served[i], carried[i]) for i, p in enumerate(ps)})
        for p, t, kind in pairs:
            fl_served, fl_carried = flows[(p, t)]
            i = row_of[p]
            for r in stations:
                d = draws.demand[i, t, segs[r]]
                back = fl_carried[segs[r]]
                demand, carried = float(d.sum()) / days_per, float(back.sum()) / days_per
                mix = d + back
                svc = services.get(r) or (float(mix @ load[segs[r], r] / mix.sum()) if mix.sum() > 0
                                          else float(load[segs[r], r].mean()))
                servers = float(cap[i, t, r]) / days_per / hours
                scale = min(1.0, MAX_CUSTOMERS / (demand + carried)) if demand + carried > 0 else 1.0
                ss = np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, _DES_STREAM, 1, p, t, r))
                m = _Model(horizon=hours, warmup=0.0, rate=None, count=demand * scale, poisson_count=False,
                           profile=profiles[r], service_dist="exponential", service_mean=svc, service_cv=None,
                           service_samples=None, patience_dist="exponential", patience_mean=None,
                           max_wait=cfg["max_wait_hours"], queue_capacity=None,
                           schedule=server_schedule(servers * scale), late_servers=0, keep_records=False,
                           initial=math.floor(carried * scale + 0.5))
                jobs.append((m, ss, float(cfg["sla_hours"]), grid))
                rows.append({"plan": name, "resource": pack.resources[r], "period": pack.periods[t], "t": t,
                             "path": p, "kind": kind, "demand": demand, "carried": carried, "servers": servers,
                             "service_h": svc, "fluid_served": float(fl_served[segs[r]].sum()) / days_per,
                             "scale": scale, "_segs": segs[r], "_mix": mix / mix.sum() if mix.sum() > 0 else mix,
                             "_fluid": fl_served[segs[r]] / days_per})
    out = _map(_station_day, jobs, n_workers)
    return _result(pack, cfg, root, rows, {"out": out, "grid": grid})


def _chain_gap(days: Any) -> float:
    """Relative gap between the DES and the fluid throughput of a plan's simulated (path, period) pairs.

    As in the fluid model, a segment is served only as fast as its bottleneck: its DES
    throughput is the least, over the simulated stations it loads, of the station's served
    count times the segment's share of the station's customers; summed over segments and
    pairs and set against the fluid served volume of the same segments.
    """
    des, fluid = 0.0, 0.0
    for _, pair in days.groupby(["path", "t"], sort=False):
        best: dict[int, float] = {}
        flow: dict[int, float] = {}
        for row in pair.to_dict("records"):
            for g, share, f in zip(row["_segs"], row["_mix"], row["_fluid"], strict=True):
                best[g] = min(best.get(g, math.inf), row["served"] * share)
                flow[g] = f
        des += sum(best.values())
        fluid += sum(flow.values())
    return des / fluid - 1.0 if fluid > 0 else math.nan


def _result(pack: PlanningPack, cfg: dict, root: np.random.SeedSequence, rows: list[dict], sim: dict) -> PeakService:
    """Assemble the days and per-plan tables from the station-day outputs."""
    import pandas as pd

    out = sim.get("out", [])
    for row, (metrics, _, _) in zip(rows, out, strict=True):
        v = dict(zip(_DAY_FIELDS, metrics, strict=True))
        k = row["scale"]
        row.update(served=v["served"] / k, sla=v["sla"], wait_mean_h=v["wait_mean_h"], wait_p95_h=v["wait_p95_h"],
                   abandon_rate=v["abandoned"] / max(v["arrivals"] + v["carried"], 1),
                   utilization=v["utilization"], _arrivals=v["arrivals"] + v["carried"], _abandoned=v["abandoned"])
        with np.errstate(divide="ignore", invalid="ignore"):
            row["gap"] = row["served"] / row["fluid_served"] - 1.0 if row["fluid_served"] > 0 else math.nan
    cols = ["plan", "resource", "period", "t", "path", "kind", "demand", "carried", "servers", "service_h", "served",
            "fluid_served", "gap", "sla", "wait_mean_h", "wait_p95_h", "abandon_rate", "utilization", "scale"]
    days = pd.DataFrame(rows, columns=[*cols, "_arrivals", "_abandoned", "_segs", "_mix", "_fluid"])
    hours, target = float(cfg["hours_per_day"]), float(cfg["sla_target"])
    table_rows, worst, notes = [], {}, []
    for name in dict.fromkeys(days["plan"]):
        idx = np.flatnonzero((days["plan"] == name).to_numpy())
        d = days.iloc[idx]
        waits = np.concatenate([out[i][2] for i in idx]).astype(float)
        gap = _chain_gap(d)
        p95 = float(np.percentile(waits, 95)) if waits.size else math.nan
        ok = bool(abs(gap) <= FLUID_TOLERANCE and not p95 > SHORT_WAIT_SHARE * hours)
        sla = d["sla"].to_numpy(float)
        finite = sla[np.isfinite(sla)]
        sla_mean = float(finite.mean()) if finite.size else math.nan
        sla_p5 = float(np.percentile(finite, 5)) if finite.size else math.nan
        table_rows.append({
            "plan": name, "sla_mean": sla_mean, "sla_p5": sla_p5,
            "sla_target": target, "days_below_target": int((sla < target).sum()),
            "wait_mean_h": float(waits.mean()) if waits.size else math.nan, "wait_p95_h": p95,
            "abandon_rate": float(d["_abandoned"].sum() / max(d["_arrivals"].sum(), 1)), "n_days": len(d),
            "fluid_gap": gap, "fluid_ok": ok, "scaled": bool((d["scale"] < 1.0).any()),
        })
        if not ok:
            notes.append(f"plan {name}: the fluid Monte Carlo model under-states the peak: on {len(d)} simulated "
                         f"peak station-days the queue model's throughput is {gap:+.1%} against the fluid volume "
                         f"(tolerance {FLUID_TOLERANCE:.0%}) and the p95 wait is {p95:.2f} h in a {hours:g} h "
                         f"day; SLA within {cfg['sla_hours']:g} h: mean {sla_mean:.1%}, 5th percentile {sla_p5:.1%}")
        if (d["scale"] < 1.0).any():
            notes.append(f"plan {name}: {int((d['scale'] < 1.0).sum())} station-days above {MAX_CUSTOMERS} "
                         f"customers were simulated as a slice of the day at the same utilisation")
        j = idx[int(np.argmin(np.where(np.isnan(sla), np.inf, sla)))]
        row = days.iloc[j]
        worst[name] = WorstDay(resource=row["resource"], period=row["period"], path=int(row["path"]),
                               sla=float(row["sla"]), grid=sim["grid"], queue_length=out[j][1] / row["scale"])
    table = pd.DataFrame(table_rows, columns=["plan", "sla_mean", "sla_p5", "sla_target", "days_below_target",
                                              "wait_mean_h", "wait_p95_h", "abandon_rate", "n_days", "fluid_gap",
                                              "fluid_ok", "scaled"])
    return PeakService(table=table, days=days[cols].reset_index(drop=True), worst_day=worst, notes=tuple(notes),
                       settings=cfg, seed_entropy=_entropy(root))
