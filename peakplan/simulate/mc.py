"""Vectorized Monte Carlo core: arrays in, arrays out.

Model (DESIGN.md, "Models"):

- Demand ``D[p, t, g] = F^-1(z[p, t, g]) * prod_e U[p, e]`` where ``z`` is standard normal,
  AR(1) across periods with coefficient ``phi`` and correlated across segments by the
  Cholesky factor of ``seg_corr``; ``F`` is the lognormal (``exp(mu + sigma z)``) or the
  zero-truncated normal (``max(0, mu + sigma z)``) marginal; ``U`` are event uplifts that
  occur with their probability (one draw per path and event).
- Capacity ``C[p, t, r] = (base - released + reserved) * a[p, t, r] * (1 - depth * hit)``
  with availability ``a ~ N(mean, sd)`` clipped to ``[0, 1]`` and disruptions that hit
  with their probability. A reserve increase arrives one period late with probability
  ``1 - reliability`` (one draw per path and lever). Flex capacity is added unshrunk.
- Each period, the request (backlog + new demand) is served from stock first, then from
  capacity shared by segment priority then pro rata to requested load; each segment is
  limited by its bottleneck resource. Service is FIFO by age; what has waited
  ``max_delay`` periods and is still unserved is lost. Spare capacity then builds planned
  stock for storable segments (up to the storage cap). Flex is used only for what the
  regular capacity cannot serve or build, cheapest flex lever first.

Work runs in chunks of whole *blocks* of :data:`peakplan.rng.BLOCK_PATHS` paths; every
block draws from its own stream spawned from the root ``SeedSequence``, so results are
bit-identical for every chunk size and worker count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from peakplan.pack import PlanningPack
from peakplan.rng import BLOCK_PATHS, SeedLike, block_generators, root_entropy, seed_sequence

__all__ = [
    "ENGINES",
    "TAIL_METRICS",
    "Draws",
    "PlanInputs",
    "SimResult",
    "SimSummary",
    "block_draws",
    "metric_dtype",
    "plan_inputs",
    "sample_paths",
    "simulate",
    "simulate_blocks",
    "summarize",
]


# --------------------------------------------------------------------------------------
# What a plan hands the simulator
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlanInputs:
    """The first-stage decisions the simulator needs, as arrays.

    ``levels[l, t]`` is the active level of lever ``l`` in period ``t`` (units of capacity;
    for flex levers: the usable cap). ``prebuild[t, g]`` is the planned stock build.
    ``fixed_cost`` is the plan's deterministic lever cost (reserve and fixed order costs,
    minus release savings), added to every path.
    """

    levels: np.ndarray
    prebuild: np.ndarray
    fixed_cost: float = 0.0


def plan_inputs(pack: PlanningPack, levels: np.ndarray | None = None,
                prebuild: np.ndarray | None = None) -> PlanInputs:
    """Plan inputs from lever levels and pre-build (``None`` = the do-nothing baseline).

    Committed orders are always included (the level is at least the committed level).
    """
    committed = pack.arr("committed")
    lv = committed.copy() if levels is None else np.maximum(np.asarray(levels, float), committed)
    pb = np.zeros((pack.T, pack.G)) if prebuild is None else np.asarray(prebuild, float)
    return PlanInputs(levels=lv, prebuild=pb, fixed_cost=lever_fixed_cost(pack, lv))


def tiered_cost(lever, q: np.ndarray) -> np.ndarray:
    """Cost of ``q`` units for one period under the lever's convex tiered curve.

    ``tiers = ((u1, c1), (u2, c2), ...)``: the first ``u1`` units cost ``c1`` each, units up
    to ``u2`` cost ``c2`` each, and so on; units beyond the last step cost its price.
    """
    q = np.asarray(q, float)
    if not lever.tiers:
        return lever.unit_cost * q
    cost = np.zeros_like(q)
    lo = 0.0
    for i, (upto, price) in enumerate(lever.tiers):
        hi = np.inf if i == len(lever.tiers) - 1 else upto
        cost += price * np.clip(q - lo, 0.0, hi - lo)
        lo = upto
    return cost


def lever_fixed_cost(pack: PlanningPack, levels: np.ndarray) -> float:
    """Deterministic lever cost of ``levels``: reserve rent, order costs, release savings."""
    total = 0.0
    for i, lever in enumerate(pack.levers):
        y = levels[i]
        increases = np.diff(np.concatenate([[0.0], y])) > 1e-9
        total += lever.fixed_cost * float(increases.sum())
        if lever.kind == "reserve":
            total += float(tiered_cost(lever, y).sum())
        elif lever.kind == "release":
            total -= lever.unit_cost * float(y.sum())
    return total


# --------------------------------------------------------------------------------------
# Draws
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Draws:
    """The random inputs of ``n`` paths, already transformed to model quantities."""

    demand: np.ndarray
    """``[n, T, G]`` demand (units), events included."""
    capacity_factor: np.ndarray
    """``[n, T, R]`` availability x disruption multiplier on capacity."""
    late: np.ndarray
    """``[n, L]`` whether each lever's increases arrive one period late."""
    event_hit: np.ndarray
    """``[n, E]`` whether each event happened."""
    disruption_hit: np.ndarray
    """``[n, D]`` whether each disruption happened."""


def _uplift(gen: np.random.Generator, kind: str, params: tuple[float, ...], n: int) -> np.ndarray:
    if kind == "fixed":
        return np.full(n, params[0])
    if kind == "uniform":
        return gen.uniform(params[0], params[1], n)
    if kind == "triangular":
        lo, mode, hi = params
        if hi <= lo:
            return np.full(n, lo)
        return gen.triangular(lo, mode, hi, n)
    if kind == "lognormal":
        median, p90 = params
        s = np.log(p90 / median) / 1.2815515655446004
        return median * np.exp(s * gen.standard_normal(n))
    if kind == "normal":
        return np.maximum(0.0, gen.normal(params[0], params[1], n))
    raise ValueError(f"unknown uplift distribution {kind!r}")


def block_draws(pack: PlanningPack, gen: np.random.Generator, n: int) -> Draws:
    """Draw ``n`` paths from ``gen`` in the fixed order the seed contract relies on.

    Order: demand normals ``[n, T, G]``; per event an occurrence uniform and an uplift;
    availability normals ``[n, T, R]``; per disruption a uniform; lateness uniforms ``[n, L]``.
    """
    T, G, R = pack.T, pack.G, pack.R
    e = gen.standard_normal((n, T, G))
    chol = np.linalg.cholesky(pack.arr("seg_corr"))
    if G > 1:
        e = e @ chol.T
    phi = pack.ar1
    if phi != 0.0:
        innov = np.sqrt(1.0 - phi * phi)
        z = np.empty_like(e)
        z[:, 0] = e[:, 0]
        for t in range(1, T):
            z[:, t] = phi * z[:, t - 1] + innov * e[:, t]
    else:
        z = e
    if pack.marginal == "lognormal":
        demand = np.exp(pack.demand_mu + pack.demand_sigma * z)
    else:
        demand = np.maximum(0.0, pack.demand_mu + pack.demand_sigma * z)
    event_hit = np.zeros((n, len(pack.events)), dtype=bool)
    for k, ev in enumerate(pack.events):
        occurs = gen.random(n) < ev.probability
        mult = _uplift(gen, ev.uplift[0], ev.uplift[1], n)
        event_hit[:, k] = occurs
        effect = np.where(occurs, mult, 1.0)  # [n]
        prof = np.ones(T) if ev.profile is None else ev.profile
        factor = 1.0 + (effect[:, None] - 1.0) * (prof * ev.periods)[None, :]  # [n, T]
        demand[:, :, ev.segments] *= factor[:, :, None]
    a_mean, a_sd = pack.arr("availability_mean"), pack.arr("availability_sd")
    avail_z = gen.standard_normal((n, T, R))
    factor = np.clip(a_mean + a_sd * avail_z, 0.0, 1.0)
    dis_hit = np.zeros((n, len(pack.disruptions)), dtype=bool)
    for k, d in enumerate(pack.disruptions):
        hit = gen.random(n) < d.probability
        dis_hit[:, k] = hit
        sl = slice(d.start, min(T, d.start + d.duration))
        mult = np.where(hit, 1.0 - d.depth, 1.0)[:, None, None]
        factor[:, sl, d.resources] *= mult
    rel = np.array([lv.reliability for lv in pack.levers])
    late = gen.random((n, pack.L)) >= rel[None, :] if pack.L else np.zeros((n, 0), bool)
    return Draws(demand=demand, capacity_factor=factor, late=late, event_hit=event_hit,
                 disruption_hit=dis_hit)


def _concat(draws: list[Draws]) -> Draws:
    if len(draws) == 1:
        return draws[0]
    return Draws(*(np.concatenate([getattr(d, f) for d in draws]) for f in
                   ("demand", "capacity_factor", "late", "event_hit", "disruption_hit")))


def sample_paths(pack: PlanningPack, n_paths: int, seed: SeedLike) -> Draws:
    """Draw ``n_paths`` paths exactly as :func:`simulate` does (for the optimizer's SAA)."""
    blocks = _blocks(n_paths)
    gens = block_generators(seed, 0, len(blocks))
    return _concat([block_draws(pack, g, b) for g, b in zip(gens, blocks, strict=True)])


def _blocks(n_paths: int) -> list[int]:
    full, rest = divmod(n_paths, BLOCK_PATHS)
    return [BLOCK_PATHS] * full + ([rest] if rest else [])


# --------------------------------------------------------------------------------------
# The recurrence
# --------------------------------------------------------------------------------------
def metric_dtype(pack: PlanningPack) -> np.dtype:
    """Fixed-field record of one path's metrics."""
    names = [
        ("demand", "f8"), ("demand_window", "f8"), ("served", "f8"), ("served_window", "f8"),
        ("lost", "f8"), ("backlog_end", "f8"), ("fill_rate", "f8"), ("worst_period_service", "f8"),
        ("cost", "f8"), ("cost_base", "f8"), ("cost_levers", "f8"), ("cost_flex", "f8"),
        ("cost_penalty", "f8"), ("cost_backlog", "f8"), ("cost_holding", "f8"),
        ("util_peak", "f8"), ("util_offpeak", "f8"),
        ("event_hits", "i4"), ("disruption_hits", "i4"),
    ]
    for r in pack.resources:
        names += [(f"util_peak__{r}", "f8"), (f"util_offpeak__{r}", "f8")]
    return np.dtype(names)


@dataclass(frozen=True)
class _Static:
    """Per-pack arrays the recurrence needs, computed once per simulate call."""

    regular: np.ndarray   # [n?, T, R] nominal regular capacity (before factor) per path later
    flex_caps: np.ndarray  # [F, T] usable cap of each flex lever
    flex_res: np.ndarray   # [F] resource index
    flex_cost: np.ndarray  # [F] unit cost
    reserve_idx: np.ndarray  # indices of reserve levers
    release_idx: np.ndarray
    classes: list[np.ndarray] = field(default_factory=list)


def _static(pack: PlanningPack, plan: PlanInputs) -> _Static:
    idx = {k: np.array([i for i, lv in enumerate(pack.levers) if lv.kind == k], dtype=int)
           for k in ("reserve", "flex", "release")}
    flex = idx["flex"]
    order = flex[np.argsort([pack.levers[i].unit_cost for i in flex], kind="stable")] if len(flex) else flex
    prio = np.asarray(pack.priority)
    classes = [np.flatnonzero(prio == p) for p in np.unique(prio)]
    return _Static(
        regular=np.asarray(pack.base_capacity, float),
        flex_caps=plan.levels[order] if len(order) else np.zeros((0, pack.T)),
        flex_res=np.array([pack.levers[i].resource for i in order], dtype=int),
        flex_cost=np.array([pack.levers[i].unit_cost for i in order], dtype=float),
        reserve_idx=idx["reserve"],
        release_idx=idx["release"],
        classes=classes,
    )


def _regular_capacity(pack: PlanningPack, plan: PlanInputs, st: _Static, draws: Draws) -> np.ndarray:
    """``[n, T, R]`` regular capacity after levers, lateness and shocks."""
    n = draws.demand.shape[0]
    nominal = np.broadcast_to(st.regular, (n, pack.T, pack.R)).copy()
    for i in st.release_idx:
        nominal[:, :, pack.levers[i].resource] -= plan.levels[i][None, :]
    for i in st.reserve_idx:
        y = plan.levels[i]
        r = pack.levers[i].resource
        if pack.levers[i].reliability < 1.0:
            y_late = np.minimum(y, np.concatenate([[0.0], y[:-1]]))
            nominal[:, :, r] += np.where(draws.late[:, i][:, None], y_late[None, :], y[None, :])
        else:
            nominal[:, :, r] += y[None, :]
    return np.maximum(nominal, 0.0) * draws.capacity_factor


def run_recurrence(pack: PlanningPack, plan: PlanInputs, draws: Draws) -> np.ndarray:
    """Run the period recurrence on ``draws`` and return one metric record per path."""
    st = _static(pack, plan)
    D = draws.demand
    n, T, G = D.shape
    R = pack.R
    A = np.asarray(pack.load, float)
    K = int(pack.max_delay)
    regular = _regular_capacity(pack, plan, st, draws)  # [n, T, R]
    flex_total = np.zeros((T, R))
    for f in range(len(st.flex_res)):
        flex_total[:, st.flex_res[f]] += st.flex_caps[f]
    window = pack.arr("service_window").astype(bool)
    peak = pack.arr("peak").astype(bool)
    storable = pack.arr("storable").astype(bool)
    hold_c = pack.arr("holding_cost")
    room_cap = pack.arr("storage_cap")
    back_c = pack.arr("backlog_cost")
    pen = np.asarray(pack.penalty, float)
    build_segs = np.flatnonzero(storable & (plan.prebuild.sum(axis=0) > 0))

    stock = np.broadcast_to(pack.arr("initial_stock").astype(float), (n, G)).copy()
    B = np.zeros((n, G, K))  # B[:, :, a-1]: units that have waited a periods
    served_tot = np.zeros(n)
    served_win = np.zeros(n)
    lost_tot = np.zeros(n)
    cost_flex = np.zeros(n)
    cost_back = np.zeros(n)
    cost_hold = np.zeros(n)
    used_pk = np.zeros((n, R))
    cap_pk = np.zeros((n, R))
    used_op = np.zeros((n, R))
    cap_op = np.zeros((n, R))
    worst = np.full(n, np.inf)
    lost_pen = np.zeros(n)

    for t in range(T):
        d = D[:, t, :]
        req = d + B.sum(axis=2)
        # 1. stock first
        from_stock = np.minimum(stock, req)
        stock -= from_stock
        rest = req - from_stock
        # 2. capacity by priority class, pro rata within a class, bottleneck per segment
        reg = regular[:, t, :]
        avail = reg + flex_total[t][None, :]
        served_cap = np.zeros((n, G))
        for cls in st.classes:
            need = rest[:, cls] @ A[cls]  # [n, R]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(need > 0, np.minimum(1.0, avail / need), 1.0)
            Acls = A[cls]  # [g, R]
            frac = np.ones((n, len(cls)))
            for j in range(len(cls)):
                rs = Acls[j] > 0
                if rs.any():
                    frac[:, j] = ratio[:, rs].min(axis=1)
            s = rest[:, cls] * frac
            served_cap[:, cls] = s
            avail = np.maximum(avail - s @ Acls, 0.0)
        served = from_stock + served_cap
        # 3. FIFO by age: oldest backlog first, then new demand
        left = served.copy()
        newB = np.zeros_like(B)
        win_served = np.zeros(n)
        for a in range(K, 0, -1):
            take = np.minimum(B[:, :, a - 1], left)
            left -= take
            if t - a >= 0 and window[t - a]:
                win_served += take.sum(axis=1)
            remain = B[:, :, a - 1] - take
            if a == K:
                lost_now = remain
            else:
                newB[:, :, a] = remain
        take = np.minimum(d, left)
        if window[t]:
            win_served += take.sum(axis=1)
        remain_new = d - take
        if K == 0:
            lost_now = remain_new
        else:
            newB[:, :, 0] = remain_new
        B = newB
        lost_tot += lost_now.sum(axis=1)
        lost_pen += lost_now @ pen
        served_tot += served.sum(axis=1)
        served_win += win_served
        cost_back += B.sum(axis=2) @ back_c
        tot_req = req.sum(axis=1)
        if window[t]:
            with np.errstate(divide="ignore", invalid="ignore"):
                svc = np.where(tot_req > 0, served.sum(axis=1) / tot_req, np.inf)
            worst = np.minimum(worst, svc)
        # 4. pre-build for storable segments with spare capacity
        for g in build_segs:
            plan_b = plan.prebuild[t, g]
            if plan_b <= 0:
                continue
            rs = A[g] > 0
            can = np.min(avail[:, rs] / A[g, rs], axis=1) if rs.any() else np.full(n, np.inf)
            b = np.minimum(np.minimum(plan_b, room_cap[g] - stock[:, g]), can)
            b = np.maximum(b, 0.0)
            stock[:, g] += b
            avail = np.maximum(avail - b[:, None] * A[g][None, :], 0.0)
        cost_hold += stock @ hold_c
        # 5. flex usage (cheapest first) and utilization
        total_cap = reg + flex_total[t][None, :]
        used = total_cap - avail
        over = np.maximum(used - reg, 0.0)  # [n, R]
        for f in range(len(st.flex_res)):
            r = st.flex_res[f]
            u = np.minimum(over[:, r], st.flex_caps[f, t])
            over[:, r] -= u
            cost_flex += u * st.flex_cost[f]
        flex_used = np.maximum(used - reg, 0.0)
        in_place = reg + flex_used
        if peak[t]:
            used_pk += used
            cap_pk += in_place
        else:
            used_op += used
            cap_op += in_place

    backlog_end = B.sum(axis=(1, 2))
    demand_tot = D.sum(axis=(1, 2))
    demand_win = D[:, window, :].sum(axis=(1, 2))
    cost_pen = lost_pen + (B.sum(axis=2) @ pen)
    return _records(pack, plan, demand_tot=demand_tot, demand_win=demand_win, served_tot=served_tot,
                    served_win=served_win, lost_tot=lost_tot, backlog_end=backlog_end, worst=worst,
                    cost_flex=cost_flex, cost_pen=cost_pen, cost_back=cost_back, cost_hold=cost_hold,
                    used_pk=used_pk, cap_pk=cap_pk, used_op=used_op, cap_op=cap_op,
                    event_hits=draws.event_hit.sum(axis=1), disruption_hits=draws.disruption_hit.sum(axis=1))


def _records(pack: PlanningPack, plan: PlanInputs, *, demand_tot, demand_win, served_tot, served_win,
             lost_tot, backlog_end, worst, cost_flex, cost_pen, cost_back, cost_hold, used_pk, cap_pk,
             used_op, cap_op, event_hits, disruption_hits, out: np.ndarray | None = None) -> np.ndarray:
    """Per-path accumulators -> metric records (shared by the numpy and numba engines).

    ``out``, if given, is the record array to fill (every field is written).
    """
    n = len(demand_tot)
    cost_base = float((np.asarray(pack.capacity_cost) * pack.base_capacity).sum())
    out = np.zeros(n, dtype=metric_dtype(pack)) if out is None else out
    out["demand"] = demand_tot
    out["demand_window"] = demand_win
    out["served"] = served_tot
    out["served_window"] = served_win
    out["lost"] = lost_tot
    out["backlog_end"] = backlog_end
    with np.errstate(divide="ignore", invalid="ignore"):
        out["fill_rate"] = np.where(demand_win > 0, served_win / demand_win, 1.0)
        out["util_peak"] = np.where(cap_pk.sum(1) > 0, used_pk.sum(1) / cap_pk.sum(1), np.nan)
        out["util_offpeak"] = np.where(cap_op.sum(1) > 0, used_op.sum(1) / cap_op.sum(1), np.nan)
        for j, r in enumerate(pack.resources):
            out[f"util_peak__{r}"] = np.where(cap_pk[:, j] > 0, used_pk[:, j] / cap_pk[:, j], np.nan)
            out[f"util_offpeak__{r}"] = np.where(cap_op[:, j] > 0, used_op[:, j] / cap_op[:, j], np.nan)
    out["worst_period_service"] = np.where(np.isfinite(worst), worst, 1.0)
    out["cost_base"] = cost_base
    out["cost_levers"] = plan.fixed_cost
    out["cost_flex"] = cost_flex
    out["cost_penalty"] = cost_pen
    out["cost_backlog"] = cost_back
    out["cost_holding"] = cost_hold
    out["cost"] = cost_base + plan.fixed_cost + cost_flex + cost_pen + cost_back + cost_hold
    out["event_hits"] = event_hits
    out["disruption_hits"] = disruption_hits
    return out


def _kernel_records(pack: PlanningPack, plan: PlanInputs, acc: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Metric records from the numba kernel's accumulators ``acc[column, path]`` (``kernel.ACC_COLUMNS``)."""
    R = pack.R
    u = acc[14:]
    cost_pen = acc[8] + acc[11]
    return _records(pack, plan, demand_tot=acc[0], demand_win=acc[1], served_tot=acc[2],
                    served_win=acc[3], lost_tot=acc[4], backlog_end=acc[5], worst=acc[6],
                    cost_flex=acc[7], cost_pen=cost_pen, cost_back=acc[9],
                    cost_hold=acc[10], used_pk=u[:R].T, cap_pk=u[R:2 * R].T, used_op=u[2 * R:3 * R].T,
                    cap_op=u[3 * R:].T, event_hits=acc[12], disruption_hits=acc[13], out=out)


#: Tail metrics of the aggregates-only mode: (field, +1 if high is bad, -1 if low is bad).
TAIL_METRICS = (("cost", 1.0), ("lost", 1.0), ("fill_rate", -1.0))


@dataclass(frozen=True)
class SimSummary:
    """Aggregates of one simulation, computed in one streaming pass (``keep_paths=False``).

    Means, standard deviations, minima and maxima are over all paths for every metric
    field. For the tail metrics (:data:`TAIL_METRICS`) ``var[i, j]`` and ``cvar[i, j]`` are
    the Rockafellar-Uryasev VaR and CVaR at ``levels[j]`` of the *loss* (``cost``, ``lost``,
    and ``-fill_rate`` reported back as a fill rate: the fill quantile at ``1 - level``
    and the mean fill of the worst ``1 - level`` share), exact as on the full sample
    (:func:`peakplan.score.var`/:func:`peakplan.score.cvar`), because only the worst
    ``ceil(n (1 - min(levels))) + 1`` values of each can matter and exactly those are kept.
    """

    n_paths: int
    """Number of paths."""
    fields: tuple[str, ...]
    """Metric fields, in :func:`metric_dtype` order."""
    mean: np.ndarray
    """``[fields]`` mean over paths (NaN-skipping for utilisation)."""
    std: np.ndarray
    """``[fields]`` standard deviation over paths (``ddof=0``)."""
    min: np.ndarray
    """``[fields]`` minimum."""
    max: np.ndarray
    """``[fields]`` maximum."""
    tail_fields: tuple[str, ...]
    """Fields with exact tail figures (rows of ``var``/``cvar``)."""
    levels: tuple[float, ...]
    """Confidence levels (columns of ``var``/``cvar``)."""
    var: np.ndarray
    """``[tail_fields, levels]`` value-at-risk."""
    cvar: np.ndarray
    """``[tail_fields, levels]`` conditional value-at-risk."""
    p_breach: float
    """Share of paths whose fill rate is below the pack's service target."""

    def stat(self, field: str, what: str = "mean") -> float:
        """One aggregate: ``what`` in mean, std, min, max."""
        return float(getattr(self, what)[self.fields.index(field)])

    def risk(self, field: str, level: float, what: str = "cvar") -> float:
        """VaR or CVaR of a tail field at ``level`` (one of :attr:`levels`)."""
        return float(getattr(self, what)[self.tail_fields.index(field), self.levels.index(level)])


class _Streaming:
    """Streaming aggregates over chunks of metric records (memory flat in the path count)."""

    def __init__(self, dtype: np.dtype, n_total: int, levels: tuple[float, ...], target: float):
        self.fields = dtype.names
        self.n_total = n_total
        self.levels = tuple(float(a) for a in levels)
        self.target = target
        k = len(self.fields)
        self.n = 0
        self.cnt = np.zeros(k)
        self.sum = np.zeros(k)
        self.sumsq = np.zeros(k)
        self.lo = np.full(k, np.inf)
        self.hi = np.full(k, -np.inf)
        self.breach = 0
        # worst values to keep: those at or above VaR at the lowest level; one preallocated
        # buffer per tail metric (no per-chunk reallocation), compacted to the top `keep`
        # with an in-place partition when full
        self.keep = n_total - max(int(np.ceil(min(self.levels) * n_total - 1e-12)) - 1, 0)
        cap = self.keep + max(self.keep // 4, 16_384)
        self.buf = [np.empty(cap) for _ in TAIL_METRICS]
        self.size = [0 for _ in TAIL_METRICS]
        self.thr = [-np.inf for _ in TAIL_METRICS]

    def add(self, rec: np.ndarray) -> None:
        self.n += len(rec)
        for j, f in enumerate(self.fields):
            x = rec[f] if rec.dtype[f].kind == "f" else rec[f].astype(float)
            s = float(x.sum())
            if np.isfinite(s):
                cnt, sq, lo, hi = len(x), float(np.square(x).sum()), x.min(), x.max()
            else:  # NaN (utilisation without capacity) or inf: skip them
                xs = x[np.isfinite(x)]
                if not xs.size:
                    continue
                cnt, s, sq, lo, hi = len(xs), float(xs.sum()), float(np.square(xs).sum()), xs.min(), xs.max()
            self.cnt[j] += cnt
            self.sum[j] += s
            self.sumsq[j] += sq
            self.lo[j] = min(self.lo[j], lo)
            self.hi[j] = max(self.hi[j], hi)
        self.breach += int(np.count_nonzero(rec["fill_rate"] < self.target - 1e-12))
        for i, (f, sign) in enumerate(TAIL_METRICS):
            loss = sign * rec[f]
            self._push(i, loss[loss > self.thr[i]] if self.thr[i] > -np.inf else loss)

    def _push(self, i: int, cand: np.ndarray) -> None:
        buf, size = self.buf[i], self.size[i]
        if size + len(cand) > len(buf):
            size = self._compact(i)
        if size + len(cand) > len(buf):  # a chunk larger than the slack: merge directly
            merged = np.concatenate([buf[:size], cand])
            top = np.partition(merged, len(merged) - self.keep)[len(merged) - self.keep:]
            buf[:self.keep] = top
            self.size[i] = self.keep
            self.thr[i] = float(top.min())
            return
        buf[size:size + len(cand)] = cand
        self.size[i] = size + len(cand)

    def _compact(self, i: int) -> int:
        """Keep the top ``keep`` values at the front of the buffer; returns the new size."""
        buf, size = self.buf[i], self.size[i]
        if size > self.keep:
            part = buf[:size]
            part.partition(size - self.keep)
            buf[:self.keep] = part[size - self.keep:].copy()
            self.size[i] = self.keep
            self.thr[i] = float(buf[:self.keep].min())
        return self.size[i]

    def _tail(self, i: int) -> np.ndarray:
        self._compact(i)
        return self.buf[i][:self.size[i]]

    def result(self) -> SimSummary:
        n = self.n
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = self.sum / self.cnt
            std = np.sqrt(np.maximum(self.sumsq / self.cnt - mean * mean, 0.0))
        var = np.empty((len(TAIL_METRICS), len(self.levels)))
        cvar = np.empty_like(var)
        for i, (_, sign) in enumerate(TAIL_METRICS):
            top = np.sort(self._tail(i))  # ascending; the last `keep` of all n
            for j, a in enumerate(self.levels):
                k = max(int(np.ceil(a * n - 1e-12)) - 1, 0)  # index of VaR among all n, ascending
                t = top[k - (n - len(top))]
                excess = np.maximum(top - t, 0.0).sum() / n
                var[i, j] = sign * t
                cvar[i, j] = sign * (t + excess / (1.0 - a))
        return SimSummary(n_paths=n, fields=tuple(self.fields), mean=mean, std=std, min=self.lo,
                          max=self.hi, tail_fields=tuple(f for f, _ in TAIL_METRICS), levels=self.levels,
                          var=var, cvar=cvar, p_breach=self.breach / n)


def summarize(pack: PlanningPack, metrics: np.ndarray, levels: tuple[float, ...] = (0.95, 0.99)) -> SimSummary:
    """The :class:`SimSummary` of full per-path ``metrics`` (what ``keep_paths=False`` streams)."""
    agg = _Streaming(metrics.dtype, len(metrics), levels, pack.service_target)
    agg.add(metrics)
    return agg.result()


@dataclass(frozen=True)
class SimResult:
    """Per-path metrics of one simulation."""

    metrics: np.ndarray
    """Structured array, one record per path (see :func:`metric_dtype`); empty when the
    run kept aggregates only (``keep_paths=False``)."""
    seed: int
    """Root seed entropy the paths were drawn from."""
    n_paths: int
    """Number of paths."""
    chunk_size: int
    """Paths per chunk used (does not change the numbers)."""
    summary: SimSummary | None = None
    """Streaming aggregates (``keep_paths=False`` only)."""
    engine: str = "numpy"
    """Engine that produced the numbers (``numpy`` reference or ``numba`` kernel)."""

    def to_frame(self):
        """The per-path metrics as a pandas DataFrame (one row per path)."""
        import pandas as pd

        df = pd.DataFrame(self.metrics)
        df.insert(0, "path", np.arange(len(self.metrics)))
        return df


def simulate_blocks(pack: PlanningPack, plan: PlanInputs, seed: SeedLike, start: int,
                    stop: int, n_paths: int) -> np.ndarray:
    """Simulate blocks ``start..stop-1`` of an ``n_paths`` run (one chunk, numpy reference)."""
    sizes = _blocks(n_paths)[start:stop]
    gens = block_generators(seed, start, stop)
    draws = _concat([block_draws(pack, g, b) for g, b in zip(gens, sizes, strict=True)])
    return run_recurrence(pack, plan, draws)


#: Engines of :func:`simulate`: the fused numba kernel (default) and the numpy reference.
ENGINES = ("numba", "numpy")


def simulate(pack: PlanningPack, plan: PlanInputs | None = None, n_paths: int | None = None,
             seed: SeedLike = None, chunk_size: int | None = None, progress=None, *,
             engine: str = "numba", threads: int | None = None, keep_paths: bool = True,
             levels: tuple[float, ...] = (0.95, 0.99), dtype: str = "float64") -> SimResult:
    """Simulate ``n_paths`` paths of ``pack`` under ``plan`` (``None`` = do-nothing baseline).

    ``chunk_size`` bounds memory (rounded up to whole blocks of 1,000 paths) and never
    changes the numbers. ``progress``, if given, is called with the number of paths done.

    ``engine``: ``"numba"`` (fused compiled kernel, :mod:`peakplan.simulate.kernel`) or
    ``"numpy"`` (the reference). Both draw the same numbers; their metrics agree to
    floating-point rounding. ``threads`` (numba only; default ``PEAKPLAN_THREADS`` or the
    usable cores) never changes the numbers. ``keep_paths=False`` keeps no per-path rows:
    ``metrics`` is empty and ``summary`` holds the streaming aggregates, with exact VaR and
    CVaR at ``levels``; memory then stays flat in ``n_paths``.

    ``dtype`` (numba only): ``"float64"`` (default) or ``"float32"``, the working type of the
    kernel's transforms and recurrence. The draws are float64 from the same ``Generator``
    stream either way (cast afterwards, so every event, disruption and lateness outcome is
    the float64 run's); per-path metrics are accumulated in float64. float32 moves the
    mean fill rate, cost and CVaR by far less than their Monte Carlo standard errors
    (``tests/test_mc_kernel.py``, ``benchmarks/README.md``).
    """
    n = int(pack.n_paths if n_paths is None else n_paths)
    if n <= 0:
        raise ValueError(f"n_paths must be positive, got {n}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    if dtype != "float64" and engine != "numba":
        raise ValueError(f"dtype={dtype!r} needs engine='numba' (the numpy reference is float64 only)")
    seed = pack.seed if seed is None else seed
    ss = seed_sequence(seed)
    plan = plan if plan is not None else plan_inputs(pack)
    chunk = int(pack.chunk_size if chunk_size is None else chunk_size)
    if chunk <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk}")
    per = max(1, -(-chunk // BLOCK_PATHS))
    sizes = _blocks(n)
    nblocks = len(sizes)
    rec_dtype = metric_dtype(pack)
    out = np.empty(n if keep_paths else 0, dtype=rec_dtype)
    agg = None if keep_paths else _Streaming(rec_dtype, n, levels, pack.service_target)
    chunks = [(b0, min(nblocks, b0 + per)) for b0 in range(0, nblocks, per)]
    done = 0

    scratch = np.empty(0, dtype=rec_dtype)

    def emit(make, m: int) -> None:
        """Records of the next ``m`` paths: ``make(dst)`` fills ``dst`` and returns it."""
        nonlocal done, scratch
        if agg is None:
            make(out[done:done + m])
        else:
            if len(scratch) < m:
                scratch = np.empty(m, dtype=rec_dtype)  # reused chunk after chunk
            agg.add(make(scratch[:m]))
        done += m
        if progress is not None:
            progress(done)

    if engine == "numpy":
        for b0, b1 in chunks:
            rec = simulate_blocks(pack, plan, ss, b0, b1, n)
            emit(lambda dst, rec=rec: _copy_into(rec, dst), len(rec))
    else:
        _simulate_numba(pack, plan, ss, sizes, chunks, threads, emit, dtype)
    return SimResult(metrics=out, seed=root_entropy(ss), n_paths=n, chunk_size=per * BLOCK_PATHS,
                     summary=None if agg is None else agg.result(), engine=engine)


def _copy_into(rec: np.ndarray, dst: np.ndarray) -> np.ndarray:
    dst[...] = rec
    return dst


def _simulate_numba(pack: PlanningPack, plan: PlanInputs, ss: np.random.SeedSequence, sizes: list[int],
                    chunks: list[tuple[int, int]], threads: int | None, emit, dtype: str = "float64") -> None:
    """Run ``chunks`` through the numba kernel; turn chunk ``k`` into records while ``k+1`` runs."""
    from concurrent.futures import ThreadPoolExecutor

    from peakplan.simulate import kernel

    kp = kernel.kernel_params(pack, plan, _static(pack, plan), dtype)
    nthreads = kernel.default_threads() if threads is None else max(1, int(threads))
    rows = max(sum(sizes[b0:b1]) for b0, b1 in chunks)
    bufs = [np.empty((kp.n_columns, rows)) for _ in range(2 if nthreads > 1 else 1)]
    if nthreads == 1:
        for b0, b1 in chunks:
            m = sum(sizes[b0:b1])
            kernel.run_blocks(kp, block_generators(ss, b0, b1), sizes[b0:b1], bufs[0][:, :m])
            emit(lambda dst, m=m: _kernel_records(pack, plan, bufs[0][:, :m], dst), m)
        return
    with ThreadPoolExecutor(nthreads) as pool:
        pending = None  # (futures, accumulators) of the chunk in flight
        for k, (b0, b1) in enumerate(chunks):
            m = sum(sizes[b0:b1])
            acc = bufs[k % 2][:, :m]
            futs = kernel.submit_blocks(pool, nthreads, kp, block_generators(ss, b0, b1), sizes[b0:b1], acc)
            if pending is not None:
                _finish(pack, plan, *pending, emit)
            pending = (futs, acc)
        _finish(pack, plan, *pending, emit)


def _finish(pack: PlanningPack, plan: PlanInputs, futures, acc: np.ndarray, emit) -> None:
    for fu in futures:
        fu.result()
    emit(lambda dst: _kernel_records(pack, plan, acc, dst), acc.shape[1])
