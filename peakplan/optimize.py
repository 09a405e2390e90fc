"""Plan A/B/C: a two-stage stochastic LP by sample average approximation (pulp + HiGHS).

First stage (decided now, the same on every path): the level ``y[l, t]`` of every lever in
every period (reserve and release levels, flex caps) and planned pre-build ``pb[t, g]``.
Second stage (per sampled path ``s``): flex used, units served by age, backlog and lost.
The model is built from small ``define_*`` blocks in order; variable names carry the
entity and the attribute (``y__temp_pickers_east__7``) so results map back to inputs.

The second stage is the period recurrence of :mod:`peakplan.simulate.mc` written as an LP:
each period serves units of every age up to ``max_delay`` (``x[s, t, g, a]``), units of age
``max_delay`` not served are lost, and capacity per resource is
``factor[s, t, r] * (base - released + reserved) + flex used``. The LP may allocate shared
capacity optimally where the Monte Carlo applies its stated rule (priority, then pro rata,
FIFO): the out-of-sample Monte Carlo therefore scores every plan under the causal rules and
an in-sample/out-of-sample gap exposes any anticipation.

Service targets are linear: expected fill rate (``expected``), a CVaR surrogate of the
chance constraint "fill >= target on ``level`` of the paths" (``quantile``), and the
Rockafellar-Uryasev CVaR bound on lost units in excess of the allowed share (``cvar``).
"""

from __future__ import annotations

import contextlib
import enum
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pulp

from peakplan.errors import InfeasibleError, InputError, PeakplanError, SolverError, TimeLimitError
from peakplan.pack import PlanningPack, Variant
from peakplan.rng import SeedLike, seed_sequence
from peakplan.simulate import mc

__all__ = ["SolveResult", "SolveStatus", "build_model", "check_plan", "optimize", "solve", "solve_benders", "solve_variant"]


def solve_benders(*args, **kwargs):
    """The L-shaped method; see :func:`peakplan.benders.solve_benders`."""
    from peakplan.benders import solve_benders as _solve

    return _solve(*args, **kwargs)


class SolveStatus(enum.Enum):
    """Outcome of one LP/MIP solve."""

    OPTIMAL = "optimal"
    TIME_LIMIT = "time_limit"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class SolveResult:
    """A solve: status, objective and the first-stage decisions read back."""

    status: SolveStatus
    """Solver outcome."""
    objective: float
    """Expected total cost of the sample (currency); NaN unless a solution exists."""
    levels: np.ndarray
    """``[L, T]`` lever levels."""
    prebuild: np.ndarray
    """``[T, G]`` planned pre-build."""
    seconds: float
    """Wall time of the solve."""
    solver: str
    """Solver name."""
    gap: float = 0.0
    """Relative gap between the solution and the LP relaxation of fixed order costs (a
    bound on the suboptimality from relax-and-fix; 0 without fixed costs)."""


@dataclass
class Model:
    """A built pulp problem with handles on its variables."""

    prob: pulp.LpProblem
    y: dict
    pb: dict
    n_vars: int = 0
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# blocks
# --------------------------------------------------------------------------------------
def _vname(*parts) -> str:
    return "__".join(str(p).replace(" ", "_").replace("-", "_") for p in parts)


def define_first_stage(m: Model, pack: PlanningPack, budget: float | None) -> None:
    """Lever levels ``y[l, t]`` with committed lower bounds, quotas, forbidden levers."""
    committed = pack.arr("committed")
    for i, lv in enumerate(pack.levers):
        for t in range(pack.T):
            lo = float(committed[i, t])
            hi = None if not np.isfinite(lv.quota) else max(lo, float(lv.quota))
            if lv.name in pack.forbidden:
                hi = lo
            m.y[i, t] = m.prob.add_variable(_vname("y", lv.name, t), lowBound=lo, upBound=hi)
    storable = pack.arr("storable").astype(bool)
    for g in np.flatnonzero(storable):
        for t in range(pack.T):
            m.pb[t, g] = m.prob.add_variable(_vname("prebuild", pack.segments[g], t), lowBound=0,
                                         upBound=float(pack.arr("storage_cap")[g]))


def define_lever_rules(m: Model, pack: PlanningPack) -> dict:
    """Lead time, notice, freeze, ramp, minimum term, fixed order costs and tiered costs.

    Returns the deterministic lever cost expression pieces ``{"rent", "orders", "saving"}``.
    """
    prob, y = m.prob, m.y
    committed = pack.arr("committed")
    freeze = pack.arr("freeze").astype(bool)
    rent, orders, saving = [], [], []
    for i, lv in enumerate(pack.levers):
        inc = {}
        for t in range(pack.T):
            prev = y[i, t - 1] if t > 0 else 0.0
            inc[t] = m.prob.add_variable(_vname("inc", lv.name, t), lowBound=0)
            prob += inc[t] >= y[i, t] - prev, _vname("inc_def", lv.name, t)
            fixed_until = lv.notice if lv.kind == "release" else lv.lead_time
            if t < fixed_until:  # too late to change: orders take effect after the lead time
                prob += y[i, t] == float(committed[i, t]), _vname("lead", lv.name, t)
            elif lv.kind == "reserve" and t < lv.notice and t > 0:  # decreases need notice
                prob += y[i, t] >= prev, _vname("notice", lv.name, t)
            if t > 0 and freeze[t]:
                prob += y[i, t] == prev, _vname("freeze", lv.name, t)
            if t > 0 and np.isfinite(lv.ramp):
                prob += y[i, t] - prev <= lv.ramp, _vname("ramp_up", lv.name, t)
                prob += prev - y[i, t] <= lv.ramp, _vname("ramp_dn", lv.name, t)
        if lv.kind == "reserve" and lv.min_term > 1:
            for t in range(pack.T):
                window = [inc[k] for k in range(max(0, t - lv.min_term + 1), t + 1)]
                prob += y[i, t] >= pulp.lpSum(window), _vname("min_term", lv.name, t)
        if lv.fixed_cost > 0:
            big = float(lv.quota) if np.isfinite(lv.quota) else float(pack.base_capacity.max() * 10 + 1e4)
            for t in range(pack.T):
                # order indicator: relaxed to [0, 1] first, then fixed to 0/1 (see solve)
                z = m.prob.add_variable(_vname("order", lv.name, t), lowBound=0, upBound=1)
                prob += inc[t] <= big * z, _vname("order_link", lv.name, t)
                orders.append(lv.fixed_cost * z)
                m.extra.setdefault("orders", []).append((z, inc[t]))
        if lv.kind == "reserve":
            for t in range(pack.T):
                rent.append(_tiered(m, lv, y[i, t], t))
        elif lv.kind == "release":
            saving += [lv.unit_cost * y[i, t] for t in range(pack.T)]
    return {"rent": pulp.lpSum(rent), "orders": pulp.lpSum(orders), "saving": pulp.lpSum(saving)}


def _tiered(m: Model, lv, level, t):
    if not lv.tiers:
        return lv.unit_cost * level
    pieces, lo = [], 0.0
    for k, (upto, price) in enumerate(lv.tiers):
        last = k == len(lv.tiers) - 1
        seg = m.prob.add_variable(_vname("tier", lv.name, t, k), lowBound=0, upBound=None if last else upto - lo)
        pieces.append((seg, price))
        lo = upto
    m.prob += pulp.lpSum(s for s, _ in pieces) == level, _vname("tier_sum", lv.name, t)
    return pulp.lpSum(price * s for s, price in pieces)


def define_second_stage(m: Model, pack: PlanningPack, draws: mc.Draws) -> dict:
    """Per-path recourse: served by age, flex used, backlog, lost, stock; returns per-path costs."""
    prob, y = m.prob, m.y
    S, T, G = draws.demand.shape
    R, K = pack.R, int(pack.max_delay)
    A = np.asarray(pack.load, float)
    base = np.asarray(pack.base_capacity, float)
    window = pack.arr("service_window").astype(bool)
    pen, bc = np.asarray(pack.penalty, float), pack.arr("backlog_cost")
    hold, stock0 = pack.arr("holding_cost"), pack.arr("initial_stock")
    storable = pack.arr("storable").astype(bool)
    flex = [i for i, lv in enumerate(pack.levers) if lv.kind == "flex"]
    reserve = [i for i, lv in enumerate(pack.levers) if lv.kind == "reserve"]
    release = [i for i, lv in enumerate(pack.levers) if lv.kind == "release"]
    path_cost, served_win, lost_win, flex_spend = [], [], [], []
    for s in range(S):
        fx = []
        d = draws.demand[s]
        f = draws.capacity_factor[s]
        cost = []
        queue = {}  # queue[g, a]: expression of units of age a waiting at the start of t
        stock = {g: float(stock0[g]) for g in np.flatnonzero(storable)}
        sw, lw = [], []
        for t in range(T):
            for g in range(G):
                for a in range(K, 0, -1):
                    queue[g, a] = queue.get((g, a - 1), 0.0)
                queue[g, 0] = float(d[t, g])
            served_load = {r: [] for r in range(R)}
            for g in range(G):
                xs = []
                for a in range(K, -1, -1):  # oldest first
                    if isinstance(queue[g, a], float) and queue[g, a] <= 0.0:
                        continue
                    x = m.prob.add_variable(_vname("x", s, t, pack.segments[g], a), lowBound=0)
                    prob += x <= queue[g, a], _vname("avail", s, t, g, a)
                    xs.append(x)
                    if t - a >= 0 and window[t - a]:
                        sw.append(x)
                    queue[g, a] = queue[g, a] - x
                from_cap = pulp.lpSum(xs)
                if g in stock:  # stock serves first and needs no capacity now
                    take = m.prob.add_variable(_vname("from_stock", s, t, g), lowBound=0)
                    cost.append(-1e-5 * take)  # serve from stock first, as the Monte Carlo does
                    prob += take <= stock[g], _vname("stock_avail", s, t, g)
                    prob += take <= pulp.lpSum(xs), _vname("stock_use", s, t, g)
                    stock[g] = stock[g] - take
                    from_cap = from_cap - take
                for r in np.flatnonzero(A[g] > 0):
                    served_load[r].append(A[g, r] * from_cap)
                lost_now = queue[g, K]
                cost.append(pen[g] * lost_now)
                if t - K >= 0 and window[t - K]:
                    lw.append(lost_now)
                if K > 0:
                    cost.append(bc[g] * pulp.lpSum(queue[g, a] for a in range(K)))
            for g in list(stock):
                build = m.prob.add_variable(_vname("build", s, t, g), lowBound=0)
                prob += build <= m.pb[t, g], _vname("build_cap", s, t, g)
                for r in np.flatnonzero(A[g] > 0):
                    served_load[r].append(A[g, r] * build)
                stock[g] = stock[g] + build
                prob += stock[g] <= float(pack.arr("storage_cap")[g]), _vname("room", s, t, g)
                cost.append(float(hold[g]) * stock[g])
            for r in range(R):
                cap = float(f[t, r]) * (float(base[t, r])
                                        + pulp.lpSum(y[i, t] for i in reserve if pack.levers[i].resource == r)
                                        - pulp.lpSum(y[i, t] for i in release if pack.levers[i].resource == r))
                used = []
                for i in flex:
                    if pack.levers[i].resource == r:
                        v = m.prob.add_variable(_vname("flex", s, t, pack.levers[i].name), lowBound=0)
                        prob += v <= y[i, t], _vname("flex_cap", s, t, i)
                        cost.append(pack.levers[i].unit_cost * v)
                        fx.append(pack.levers[i].unit_cost * v)
                        used.append(v)
                if served_load[r]:
                    prob += pulp.lpSum(served_load[r]) <= cap + pulp.lpSum(used), _vname("cap", s, t, r)
        # backlog left at the horizon is charged as lost
        for g in range(G):
            for a in range(K):
                cost.append(pen[g] * queue[g, a])
        path_cost.append(pulp.lpSum(cost))
        served_win.append(pulp.lpSum(sw))
        lost_win.append(pulp.lpSum(lw) + pulp.lpSum(queue[g, a] for g in range(G) for a in range(K)))
        flex_spend.append(pulp.lpSum(fx))
    return {"path_cost": path_cost, "served_win": served_win, "lost_win": lost_win, "flex_spend": flex_spend}


def define_objective(m: Model, pack: PlanningPack, det: dict, stage2: dict) -> pulp.LpAffineExpression:
    """Expected total cost: base capacity + lever costs + mean over paths of the recourse."""
    S = len(stage2["path_cost"])
    base = float((np.asarray(pack.capacity_cost) * pack.base_capacity).sum())
    lever = det["rent"] + det["orders"] - det["saving"]
    expected = pulp.lpSum(stage2["path_cost"]) * (1.0 / S)
    # a negligible price on flex caps and planned builds picks the smallest plan among ties
    tie = 1e-6 * (pulp.lpSum(v for (i, _), v in m.y.items() if pack.levers[i].kind == "flex")
                  + pulp.lpSum(m.pb.values()))
    m.prob += base + lever + expected + tie
    m.extra["lever_cost"] = lever
    return lever


def define_budget(m: Model, pack: PlanningPack, lever_cost, stage2: dict, budget: float | None) -> None:
    """Lever spend (deterministic lever cost + expected flex spend) within the budget."""
    if budget is None:
        return
    S = len(stage2["flex_spend"])
    m.prob += lever_cost + pulp.lpSum(stage2["flex_spend"]) * (1.0 / S) <= budget, "budget"


def define_service(m: Model, pack: PlanningPack, variant: Variant, stage2: dict, d_win: np.ndarray) -> None:
    """The variant's service target as linear constraints.

    - ``expected``: mean over paths of served_window / demand_window >= target;
    - ``quantile`` and ``cvar``: CVaR at ``level`` of the excess lost share
      ``L_s = lost_window_s - (1 - target) * demand_window_s`` is <= 0 (Rockafellar-Uryasev:
      ``eta + sum_s u_s / ((1 - level) S) <= 0``, ``u_s >= L_s - eta``, ``u_s >= 0``). For
      ``quantile`` this is the standard conservative convex surrogate of the chance
      constraint P(fill >= target) >= level.
    """
    if variant.service == "none" or variant.target <= 0:
        return
    S = len(d_win)
    ok = d_win > 0
    if variant.service == "expected":
        m.prob += pulp.lpSum(stage2["served_win"][s] * (1.0 / d_win[s]) for s in range(S) if ok[s]) \
            >= variant.target * ok.sum(), "service_expected"
        return
    level = variant.level if variant.service == "quantile" else max(variant.level, 0.95) if variant.level < 0.95 else variant.level
    eta = m.prob.add_variable("cvar_eta")
    us = []
    for s in range(S):
        u = m.prob.add_variable(_vname("cvar_u", s), lowBound=0)
        m.prob += u >= stage2["lost_win"][s] - (1 - variant.target) * float(d_win[s]) - eta, _vname("cvar_def", s)
        us.append(u)
    m.prob += eta + pulp.lpSum(us) * (1.0 / ((1 - level) * S)) <= 0, "service_cvar"


def build_model(pack: PlanningPack, draws: mc.Draws, variant: Variant, budget: float | None = None) -> Model:
    """The extensive-form SAA model of ``variant`` over ``draws``."""
    m = Model(prob=pulp.LpProblem(_vname("peakplan", pack.name, variant.name), pulp.LpMinimize), y={}, pb={})
    define_first_stage(m, pack, budget)
    det = define_lever_rules(m, pack)
    stage2 = define_second_stage(m, pack, draws)
    lever = define_objective(m, pack, det, stage2)
    define_budget(m, pack, lever, stage2, budget)
    window = pack.arr("service_window").astype(bool)
    d_win = draws.demand[:, window, :].sum(axis=(1, 2))
    define_service(m, pack, variant, stage2, d_win)
    m.extra["stage2"] = stage2
    return m


def _solver(name: str, time_limit: float | None):
    if name == "highs":
        if not pulp.HiGHS().available():
            raise SolverError("HiGHS is not available (pip install highspy); use solver='cbc'")
        # one thread: HiGHS's parallel paths can return a different optimal vertex; plans must be reproducible
        return pulp.HiGHS(msg=False, timeLimit=time_limit, mip_rel_gap=1e-4, log_to_console=False, output_flag=False,
                          threads=1)
    if name == "cbc":
        path = _cbc_path()
        if path is None:
            raise SolverError("CBC is not available (install coinor-cbc, or pulp[cbc]); use solver='highs'")
        # COIN_CMD on that binary: pulp 3.3 deprecates PULP_CBC_CMD, which runs the same bundled one
        return pulp.COIN_CMD(path=path, msg=False, timeLimit=time_limit, gapRel=1e-4, threads=1)
    raise InputError(f"solver must be 'highs' or 'cbc', got {name!r}")


def _cbc_path() -> str | None:
    """A CBC executable: one on PATH, else the one bundled with pulp (None if neither runs)."""
    import shutil

    found = shutil.which("cbc")
    if found:
        return found
    from pulp.apis import coin_api

    bundled = coin_api.COIN_CMD.executableExtension(coin_api.pulp_cbc_path)
    return bundled if os.path.isfile(bundled) and os.access(bundled, os.X_OK) else None


@contextlib.contextmanager
def _quiet_stdout():
    """Silence the solver's banner, which the C library writes straight to file descriptor 1."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # captured stdout (pytest, notebooks)
        yield
        return
    saved = os.dup(fd)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)


class _OutOfTime(Exception):
    """A decomposition's time limit passed inside an iteration (caught by the solver that set it)."""


def _deadline(time_limit: float | None, t0: float) -> float:
    """The ``time.perf_counter()`` reading at which a solve started at ``t0`` must stop (``inf``: never)."""
    return float("inf") if time_limit is None else t0 + float(time_limit)


def _check_time(deadline: float) -> None:
    """Raise :class:`_OutOfTime` once ``deadline`` has passed."""
    if time.perf_counter() > deadline:
        raise _OutOfTime


def _run_highs(h, deadline: float = float("inf")) -> None:
    """Re-solve the highspy model ``h`` quietly in the time left before ``deadline``.

    HiGHS compares ``time_limit`` with its run clock summed over every ``run()`` of the
    object (ERGO-Code/HiGHS#1477), so the limit set is that sum plus the time left.
    Raises :class:`_OutOfTime` if no time is left or HiGHS stopped at the limit.
    """
    if deadline != float("inf"):
        left = deadline - time.perf_counter()
        if left <= 0:
            raise _OutOfTime
        h.setOptionValue("time_limit", float(h.getRunTime() + left))
    with _quiet_stdout():
        h.run()
    if h.getModelStatus() == h.getModelStatus().__class__.kTimeLimit:
        raise _OutOfTime


def _coefficients(expr, n: int) -> tuple[np.ndarray, float]:
    """A pulp expression as ``(coefficient of every column, by its index in the built model; constant)``."""
    expr = pulp.LpAffineExpression(expr)
    coef = np.zeros(n)
    for v, a in expr.items():
        coef[v.index] += a
    return coef, float(expr.constant)


def _orders_in_full(point: np.ndarray, coef: np.ndarray, order_idx: np.ndarray, inc_idx: np.ndarray) -> float:
    """What charging every order that ``point`` places its full fixed cost adds to ``coef @ point``.

    Before relax-and-fix an order indicator ``z`` may be fractional; an order is placed where
    the level rises (``inc > 1e-6``), and then costs its whole fixed cost (``z = 1``).
    """
    return float(coef[order_idx] @ ((point[inc_idx] > 1e-6) - point[order_idx]))


def solve(m: Model, pack: PlanningPack, solver: str = "highs", time_limit: float | None = None) -> SolveResult:
    """Solve, then read back the first stage. Never trusts the status alone (see check).

    Fixed order costs get relax-and-fix: the LP relaxation (order indicators in [0, 1]),
    then the indicators fixed to 0/1 where the relaxation raises a level, and a re-solve in
    the time left. The relaxation's own plan with every order charged in full is a plan too
    (its cost bounds its exact cost from above); the cheaper of the two is returned.

    A solve stopped by ``time_limit`` is ``TIME_LIMIT``; its values are a plan only if they
    are primal feasible: pulp labels a HiGHS run stopped at its limit "Optimal" whenever the
    objective is finite, even at a simplex iterate that is not, so the model status and
    primal solution status are read from HiGHS itself (and for CBC every constraint is
    re-checked). Without a feasible point it comes back as ``TIME_LIMIT`` with a NaN
    objective. The gap of a stopped extensive-form solve is unknown (NaN): no bound is proven.
    """
    t0 = time.perf_counter()
    orders = m.extra.get("orders", [])
    with _quiet_stdout():
        status = m.prob.solve(_solver(solver, time_limit))
    st, feasible = _outcome(m, status, time_limit, time.perf_counter() - t0)
    relaxed_obj, relaxed = None, None
    if orders and st is SolveStatus.OPTIMAL:
        relaxed_obj = float(pulp.value(m.prob.objective))
        charge = 0.0
        for z, inc in orders:
            on = (inc.value() or 0.0) > 1e-6
            charge += m.prob.objective.get(z, 0.0) * (float(on) - (z.value() or 0.0))
            z.lowBound = z.upBound = 1.0 if on else 0.0
        relaxed = (*_read_plan(m, pack), relaxed_obj + charge)
        left = None if time_limit is None else time_limit - (time.perf_counter() - t0)
        if left is not None and left <= 0.01:  # no time left to re-solve: the relaxed plan, charged in full
            st, feasible = SolveStatus.TIME_LIMIT, False
        else:
            with _quiet_stdout():
                status = m.prob.solve(_solver(solver, left))
            st, feasible = _outcome(m, status, left, time.perf_counter() - t0)
    secs = time.perf_counter() - t0
    levels, prebuild, obj = np.zeros((pack.L, pack.T)), np.zeros((pack.T, pack.G)), float("nan")
    if st in (SolveStatus.OPTIMAL, SolveStatus.TIME_LIMIT) and feasible:
        levels, prebuild = _read_plan(m, pack)
        value = pulp.value(m.prob.objective)
        obj = float(value) if value is not None else float("nan")
    if relaxed is not None and not obj <= relaxed[2]:  # the relaxed plan is cheaper, or the only one
        levels, prebuild, obj = relaxed
        if st not in (SolveStatus.OPTIMAL, SolveStatus.TIME_LIMIT):
            st = SolveStatus.OPTIMAL  # the fixed re-solve failed; the relaxed plan stands, its gap from the LP bound
    if st is SolveStatus.TIME_LIMIT and np.isfinite(obj) and relaxed is None:
        gap = float("nan")
    elif relaxed_obj is None or not np.isfinite(obj):
        gap = 0.0
    else:
        gap = max(0.0, (obj - relaxed_obj) / abs(obj))
    return SolveResult(st, obj, levels, prebuild, secs, solver, gap)


def _read_plan(m: Model, pack: PlanningPack) -> tuple[np.ndarray, np.ndarray]:
    """The lever levels ``[L, T]`` and pre-build ``[T, G]`` of the model's current values."""
    levels = np.zeros((pack.L, pack.T))
    prebuild = np.zeros((pack.T, pack.G))
    for (i, t), v in m.y.items():
        levels[i, t] = max(0.0, v.value() or 0.0)
    for (t, g), v in m.pb.items():
        prebuild[t, g] = max(0.0, v.value() or 0.0)
    return np.where(np.abs(levels) < 1e-7, 0.0, levels), prebuild


def _outcome(m: Model, status: int, time_limit: float | None, secs: float) -> tuple[SolveStatus, bool]:
    """The status of the last ``prob.solve`` and whether its values are a feasible solution."""
    h = getattr(m.prob, "solverModel", None)
    if h is not None and hasattr(h, "getModelStatus"):  # HiGHS through highspy: ask it
        ms = h.getModelStatus()
        if ms == ms.__class__.kOptimal:
            return SolveStatus.OPTIMAL, True
        if ms in (ms.__class__.kTimeLimit, ms.__class__.kIterationLimit, ms.__class__.kInterrupt):
            return SolveStatus.TIME_LIMIT, h.getInfo().primal_solution_status == 2  # kSolutionStatusFeasible
    label = pulp.LpStatus[status]
    if label == "Infeasible":
        return SolveStatus.INFEASIBLE, False
    if label == "Unbounded":
        return SolveStatus.UNBOUNDED, False
    stopped = time_limit is not None and secs >= 0.98 * time_limit
    if label == "Optimal" and not stopped:
        return SolveStatus.OPTIMAL, True
    if label in ("Optimal", "Not Solved") or stopped:  # CBC: a time-limited incumbent is labelled "Optimal"
        return SolveStatus.TIME_LIMIT, label == "Optimal" and _satisfied(m.prob)
    return SolveStatus.ERROR, False


def _satisfied(prob: pulp.LpProblem, rtol: float = 1e-6) -> bool:
    """Every variable has a value within its bounds and every constraint holds, to ``rtol`` of its size."""
    for v in prob.variables():
        x = v.value()
        if x is None or (v.lowBound is not None and x < v.lowBound - rtol * max(1.0, abs(v.lowBound))) or \
                (v.upBound is not None and x > v.upBound + rtol * max(1.0, abs(v.upBound))):
            return False
    for c in prob.constraints():
        size = abs(c.constant) + sum(abs(a * (v.value() or 0.0)) for v, a in c.items())
        if not c.valid(rtol * max(1.0, size)):
            return False
    return True


# --------------------------------------------------------------------------------------
# checks, variants, quality
# --------------------------------------------------------------------------------------
def check_plan(pack: PlanningPack, levels: np.ndarray, prebuild: np.ndarray, budget: float | None = None,
               flex_spend: float = 0.0, tol: float = 1e-6) -> None:
    """Re-check a returned solution against every declared constraint; raise SolverError naming it.

    The solver's status is never trusted alone: a constraint that went missing from the
    model shows up here.
    """
    problems = []
    committed = pack.arr("committed")
    freeze = pack.arr("freeze").astype(bool)
    for i, lv in enumerate(pack.levers):
        y = levels[i]
        scale = tol * max(1.0, float(np.abs(y).max()))
        if np.any(y < committed[i] - scale):
            problems.append(f"lever {lv.name}: level below the committed orders")
        if np.isfinite(lv.quota) and np.any(y > max(lv.quota, committed[i].max()) + scale):
            problems.append(f"lever {lv.name}: level {y.max():g} above quota {lv.quota:g}")
        if lv.name in pack.forbidden and np.any(y > committed[i] + scale):
            problems.append(f"lever {lv.name}: forbidden lever used")
        fixed_until = lv.notice if lv.kind == "release" else lv.lead_time
        early = slice(0, min(fixed_until, pack.T))
        if np.any(np.abs(y[early] - committed[i][early]) > scale):
            problems.append(f"lever {lv.name}: changed before its {'notice' if lv.kind == 'release' else 'lead time'} "
                            f"of {fixed_until} period(s)")
        dy = np.diff(y)
        if np.any(np.abs(dy[freeze[1:]]) > scale):
            problems.append(f"lever {lv.name}: level changed inside a freeze window")
        if np.isfinite(lv.ramp) and np.any(np.abs(dy) > lv.ramp + scale):
            problems.append(f"lever {lv.name}: change of {np.abs(dy).max():g} exceeds ramp {lv.ramp:g}")
        if lv.kind == "reserve" and lv.notice > 1 and np.any(dy[: max(0, lv.notice - 1)] < -scale):
            problems.append(f"lever {lv.name}: reduced before its notice of {lv.notice} period(s)")
        if lv.kind == "reserve" and lv.min_term > 1:
            inc = np.maximum(np.diff(np.concatenate([[0.0], y])), 0.0)
            for t in range(pack.T):
                need = inc[max(0, t - lv.min_term + 1): t + 1].sum()
                if y[t] < need - scale:
                    problems.append(f"lever {lv.name}: units released before their minimum term of {lv.min_term}")
                    break
    if np.any(prebuild < -tol):
        problems.append("pre-build: negative quantity")
    if budget is not None:
        spend = mc.lever_fixed_cost(pack, levels) + flex_spend
        if spend > budget + 1e-6 * max(1.0, abs(budget)):
            problems.append(f"budget: lever spend {spend:,.0f} exceeds {budget:,.0f}")
    if problems:
        raise SolverError("the returned plan breaks declared constraints: " + "; ".join(problems))


def _budget(pack: PlanningPack, variant: Variant) -> float | None:
    return variant.budget if variant.budget is not None else pack.budget


METHODS = ("auto", "extensive", "benders")


def resolve_method(pack: PlanningPack, variant: Variant, method: str, solver: str = "highs") -> str:
    """The method ``auto`` stands for: ``benders`` where the chain subproblem applies (and HiGHS is the solver)."""
    return _resolve(pack, variant, method, solver)[0]


def _resolve(pack: PlanningPack, variant: Variant, method: str, solver: str) -> tuple[str, str | None]:
    """``(method, why)``: the method ``method`` stands for and, where ``auto`` falls back to the extensive
    form, why (the reason the chain subproblem does not apply, or the solver)."""
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if method != "auto":
        return method, None
    from peakplan.benders import chain_structure

    structure = chain_structure(pack, variant, _budget(pack, variant))
    if isinstance(structure, str):
        return "extensive", f"the chain subproblem does not apply: {structure}"
    if solver != "highs":
        return "extensive", f"the L-shaped method drives HiGHS, and the solver is {solver}"
    return "benders", None


def solve_variant(pack: PlanningPack, variant: Variant, draws: mc.Draws, *, solver: str = "highs",
                  time_limit: float | None = None, method: str = "extensive",
                  tol: float = 1e-6) -> tuple[SolveResult, Model | None]:
    """Build and solve one variant; raise InfeasibleError with a diagnosis when it cannot be met.

    ``method="extensive"`` solves the extensive form; ``method="benders"`` the L-shaped
    decomposition (:func:`peakplan.benders.solve_benders`: exact chain subproblems where the
    model allows, HiGHS subproblems otherwise; HiGHS only; the model is then ``None``),
    stopped at relative gap ``tol``; ``method="auto"`` picks Benders where the chain
    subproblem applies and the extensive form elsewhere (:func:`resolve_method`).
    """
    t0 = time.perf_counter()
    budget = _budget(pack, variant)
    method = resolve_method(pack, variant, method, solver)  # checks the name
    if method == "benders" and solver != "highs":
        raise InputError(f"method='benders' needs solver='highs' (it drives highspy directly), got {solver!r}")
    m = None
    if method == "benders":
        res, info = solve_benders(pack, draws, variant, budget, time_limit=time_limit, tol=tol)
        flex = info["flex_spend"]
    else:
        m = build_model(pack, draws, variant, budget)
        left = None if time_limit is None else time_limit - (time.perf_counter() - t0)  # the build counts too
        if left is not None and left <= 0.01:
            res = SolveResult(SolveStatus.TIME_LIMIT, float("nan"), np.zeros((pack.L, pack.T)),
                              np.zeros((pack.T, pack.G)), time.perf_counter() - t0, solver)
        else:
            res = solve(m, pack, solver, left)
    if res.status is SolveStatus.INFEASIBLE:
        raise InfeasibleError(
            f"variant {variant.name} ({variant.label}): no plan meets fill {variant.target:.1%} "
            f"({variant.service}{'' if variant.service == 'expected' else f' at {variant.level:.0%}'}) inside the limits",
            diagnose(pack, variant, draws, solver=solver))
    if res.status is SolveStatus.TIME_LIMIT and not np.isfinite(res.objective):
        why = (f"the time limit of {time_limit:g} s passed" if time_limit is not None
               else "the solver stopped at its iteration limit")
        raise TimeLimitError(f"variant {variant.name} ({variant.label}): {why} before a plan that keeps every "
                             f"constraint was found; raise the limit or lower the sample")
    if res.status not in (SolveStatus.OPTIMAL, SolveStatus.TIME_LIMIT):
        raise SolverError(f"variant {variant.name}: solver returned {res.status}")
    if m is not None:
        flex = float(np.mean([pulp.value(e) or 0.0 for e in m.extra["stage2"]["flex_spend"]]))
    check_plan(pack, res.levels, res.prebuild, budget, flex)
    return res, m


def diagnose(pack: PlanningPack, variant: Variant, draws: mc.Draws, *, solver: str = "highs",
             max_paths: int = 30) -> list[str]:
    """Elastic relaxation: which limits must move, and by how much, for the target to be met.

    On (at most ``max_paths`` of) the same sample: drop the budget and report the spend the
    target needs; multiply every quota by 4 and report the levers that then exceed their
    quota and by how much; bisect for the best target reachable inside the current limits.
    """
    out = []
    sub = draws if draws.demand.shape[0] <= max_paths else mc.Draws(
        *(getattr(draws, f)[:max_paths] for f in ("demand", "capacity_factor", "late", "event_hit", "disruption_hit")))
    budget = _budget(pack, variant)
    if budget is not None:
        free = build_model(pack, sub, variant, None)
        r = solve(free, pack, solver)
        if r.status is SolveStatus.OPTIMAL:
            spend = mc.lever_fixed_cost(pack, r.levels) + float(
                np.mean([pulp.value(e) or 0.0 for e in free.extra["stage2"]["flex_spend"]]))
            out.append(f"fill {variant.target:.1%} needs budget +{max(0.0, spend - budget):,.0f} "
                       f"(lever spend {spend:,.0f} against {budget:,.0f})")
    from dataclasses import replace

    roomy = pack.replace(levers=tuple(replace(lv, quota=lv.quota * 4) if np.isfinite(lv.quota) and lv.kind != "release"
                                      else lv for lv in pack.levers))
    r = solve(build_model(roomy, sub, variant, budget), roomy, solver)
    if r.status is SolveStatus.OPTIMAL:
        over = [(lv, float(r.levels[i].max() - lv.quota)) for i, lv in enumerate(pack.levers)
                if np.isfinite(lv.quota) and r.levels[i].max() > lv.quota + 1e-6]
        if over:
            out.append("or quotas: " + ", ".join(f"{lv.name} +{d:,.0f}" for lv, d in over))
    lo, hi = 0.0, variant.target
    for _ in range(7):
        mid = (lo + hi) / 2
        test = Variant(variant.name, variant.label, variant.service, mid, variant.level, variant.budget)
        ok = solve(build_model(pack, sub, test, budget), pack, solver).status is SolveStatus.OPTIMAL
        lo, hi = (mid, hi) if ok else (lo, mid)
    out.append(f"or accept fill {lo:.1%} ({variant.service}) inside the current limits")
    return out


def _mean_path(pack: PlanningPack, draws: mc.Draws) -> mc.Draws:
    """One path of expected demand and capacity factor (for the value of the stochastic solution)."""
    return mc.Draws(demand=draws.demand.mean(axis=0, keepdims=True),
                    capacity_factor=draws.capacity_factor.mean(axis=0, keepdims=True),
                    late=np.zeros((1, pack.L), bool), event_hit=np.zeros((1, len(pack.events)), bool),
                    disruption_hit=np.zeros((1, len(pack.disruptions)), bool))


def optimize(pack: PlanningPack, *, n_samples: int | None = None, seed: SeedLike = None, variants=None,
             method: str | None = None, solver: str | None = None, time_limit: float | None = None, quality: bool = True,
             eval_paths: int | None = None, infeasible: list | None = None) -> dict:
    """Plan A/B/C (or the pack's variants): one SAA solve per variant, checked and scored.

    A variant whose target cannot be met raises :class:`InfeasibleError` (with a
    diagnosis), unless a list is passed as ``infeasible``: then the error is appended there
    and the other variants are still solved.

    ``n_samples`` paths are drawn from ``seed`` for the SAA (default: the pack's
    ``extra["opt_samples"]`` or 100); quality statistics use independent child seeds.
    ``method`` (default: the pack's ``extra["opt_method"]`` or ``auto``) is passed to
    :func:`solve_variant`; each plan records the method that solved it. ``time_limit``
    (default: the pack's ``extra["opt_time_limit"]``, else none) bounds each variant's solve
    in seconds; a plan stopped by it has status ``time_limit`` and its gap.
    """
    from peakplan.plans import Plan

    method = method or pack.extra.get("opt_method") or "auto"
    solver = solver or pack.extra.get("opt_solver") or "highs"
    time_limit = time_limit if time_limit is not None else pack.extra.get("opt_time_limit")
    ss = seed_sequence(pack.seed if seed is None else seed)
    s_opt, s_eval, s_rep = ss.spawn(3)
    S = int(n_samples or pack.extra.get("opt_samples") or 100)
    draws = mc.sample_paths(pack, S, s_opt)
    out: dict = {}
    for variant in (variants or pack.variants):
        try:
            res, _ = solve_variant(pack, variant, draws, solver=solver, time_limit=time_limit, method=method)
        except InfeasibleError as exc:
            if infeasible is None:
                raise
            infeasible.append(exc)
            continue
        used, why = _resolve(pack, variant, method, solver)
        constraints = {"service": variant.service, "target": variant.target, "level": variant.level,
                       "budget": _budget(pack, variant), "forbidden": list(pack.forbidden),
                       "freeze_periods": [pack.periods[t] for t in np.flatnonzero(pack.arr("freeze"))],
                       "max_delay": pack.max_delay, "n_samples": S,
                       "method": used, "solver": solver, "solver_gap": res.gap if np.isfinite(res.gap) else None}
        if why:
            constraints["method_why"] = why
        same = next((k for k, p in out.items() if np.allclose(p.levels, res.levels, atol=1e-6)
                     and np.allclose(p.prebuild, res.prebuild, atol=1e-6)), None)
        plan = Plan(name=variant.name, label=variant.label, variant=variant, levels=res.levels,
                    prebuild=res.prebuild, constraints=constraints, objective=res.objective,
                    status=res.status, solve_seconds=res.seconds, quality={}, identical_to=same)
        if quality and same is not None:
            plan = plan.with_quality(out[same].quality)
        elif quality:
            plan = plan.with_quality(_quality(pack, plan, variant, draws, s_eval, s_rep, S, solver,
                                              eval_paths or 10 * S, method, time_limit))
        out[variant.name] = plan
    return out


def _quality(pack, plan, variant, draws, s_eval, s_rep, S, solver, n_eval, method="auto",
             time_limit: float | None = None) -> dict:
    """Out-of-sample CIs, the SAA optimality-gap estimate (Mak, Morton & Wood 1999) and the VSS.

    The lower bound averages each replication's *proven* bound on its SAA optimum: its
    objective less its solver gap (``gap * max(|objective|, 1)``), i.e. the LP relaxation's
    value where orders carry fixed costs (relax-and-fix's objective is an upper bound, and
    averaging upper bounds would understate the gap) and the L-shaped lower bound otherwise.
    Each extra solve keeps to ``time_limit``; a replication stopped by it is left out of the
    lower bound and counted.
    """
    from peakplan.score import mean_ci

    m = mc.simulate(pack, plan.inputs(pack), n_paths=n_eval, seed=s_eval).metrics
    ub, ub_lo, ub_hi = mean_ci(m["cost"])
    fill = mean_ci(m["fill_rate"])
    # lower bound: mean of M independent SAA optimal values (biased low for minimisation), each by its proven bound
    M = 3
    lbs, stopped, failed = [], 0, []
    for child in s_rep.spawn(M):
        try:
            r, _ = solve_variant(pack, variant, mc.sample_paths(pack, S, child), solver=solver, method=method,
                                 time_limit=time_limit)
        except TimeLimitError:  # stopped before any plan: counted with the stopped ones
            stopped += 1
            continue
        except PeakplanError as exc:  # infeasible on that sample, or a solver failure: said, not hidden
            failed.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
            continue
        if r.status is SolveStatus.OPTIMAL:
            lbs.append(r.objective - (r.gap if np.isfinite(r.gap) else 0.0) * max(abs(r.objective), 1.0))
        else:
            stopped += 1
    out = {"out_of_sample": {"paths": n_eval, "cost_mean": ub, "cost_ci95": [ub_lo, ub_hi],
                             "fill_mean": fill[0], "fill_ci95": [fill[1], fill[2]]},
           "in_sample_objective": plan.objective}
    if len(lbs) >= 2:
        from scipy import stats

        lb = float(np.mean(lbs))
        lb_half = float(stats.t.ppf(0.975, len(lbs) - 1) * np.std(lbs, ddof=1) / np.sqrt(len(lbs)))
        gap = ub - lb
        out["saa_gap"] = {"estimate": gap, "relative": gap / abs(ub) if ub else float("nan"),
                          "ci95_upper": gap + lb_half + (ub_hi - ub), "lower_bound": lb, "replications": len(lbs)}
    if stopped:
        out["saa_replications_stopped_by_time_limit"] = stopped
    if failed:
        out["saa_replications_failed"] = failed
    try:
        mean_res, _ = solve_variant(pack, Variant(variant.name, variant.label, "none", 0.0), _mean_path(pack, draws),
                                    solver=solver, time_limit=time_limit)
        from peakplan.plans import Plan

        mv = Plan(name="mean", label="mean-value", variant=variant, levels=mean_res.levels, prebuild=mean_res.prebuild,
                  constraints={}, objective=mean_res.objective, status=mean_res.status, solve_seconds=0.0)
        mm = mc.simulate(pack, mv.inputs(pack), n_paths=n_eval, seed=s_eval).metrics
        out["vss"] = {"mean_value_plan_cost": float(mm["cost"].mean()), "vss": float(mm["cost"].mean() - ub),
                      "mean_value_plan_fill": float(mm["fill_rate"].mean())}
    except Exception as exc:
        out["vss"] = {"error": str(exc)}
    return out
