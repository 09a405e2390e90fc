"""Peak periods: the discrete-event station inside peak days, and plan scoring with it.

Two layers, both on the event loop of :mod:`peakplan.simulate.des`:

* :func:`simulate_peak_day` / :func:`simulate_peak_periods` - arrays in, arrays out: a
  day's demand spread over an intraday profile, servers per slot; SLA attainment, waits,
  the queue curve. They live in :mod:`peakplan.simulate.peak_periods` and are re-exported
  here.
* :func:`peak_service` (this module) - the plan-level model (DESIGN.md, "Discrete-event
  core"): for each plan, which Monte Carlo (path, period) pairs to simulate, the station-day
  each becomes, and the check of the DES throughput against the Monte Carlo fluid model.

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
from peakplan.queueing import _real, _show
from peakplan.rng import BLOCK_PATHS, SeedLike, block_generators, generator, seed_sequence
from peakplan.simulate.des import (
    SLOTS,
    _entropy,
    _map,
    _Model,
    _optional_pos,
    _station_day,
    _whole,
    server_schedule,
)
from peakplan.simulate.mc import Draws, PlanInputs, block_draws, run_recurrence
from peakplan.simulate.peak_periods import (
    PeakDayResult,
    PeakPeriodsResult,
    simulate_peak_day,
    simulate_peak_periods,
)

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
