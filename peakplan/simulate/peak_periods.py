"""Peak periods, arrays in and arrays out: the discrete-event station over a day's demand.

:func:`simulate_peak_periods` (many periods, e.g. one per Monte Carlo path) and
:func:`simulate_peak_day` (one period, optionally with per-customer records): a period's
demand spread over an intraday profile, servers per slot; SLA attainment, waits and the queue
curve, on the event loop of :mod:`peakplan.simulate.des`. Plan scoring built on the same
loop (:func:`~peakplan.simulate.peak.peak_service`) is in :mod:`peakplan.simulate.peak`;
the names here are also importable from there and from :mod:`peakplan.simulate.des`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from peakplan.errors import InputError
from peakplan.queueing import _real, _servers, _show
from peakplan.rng import SeedLike, block_seeds, seed_sequence
from peakplan.simulate.des import (
    _check_size,
    _entropy,
    _map,
    _Model,
    _optional_pos,
    _service_args,
    _simulate,
    _whole,
)
from peakplan.simulate.des_estimators import _capacity_time, _overlap

__all__ = [
    "PeakDayResult",
    "PeakPeriodsResult",
    "simulate_peak_day",
    "simulate_peak_periods",
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
