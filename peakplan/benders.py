"""L-shaped (Benders) decomposition of the SAA model of :mod:`peakplan.optimize`.

The master problem is the first stage exactly as the extensive form states it (the same
``define_first_stage`` / ``define_lever_rules`` blocks, pulp-built, solved by HiGHS through
highspy and grown row by row); the recourse enters through cuts. Two subproblem oracles:

- **chains** (:func:`solve_benders_chains`): where every segment has a resource of its own,
  ``max_delay`` is 0 or 1, nothing is storable and the target is an expected fill (or
  none), each path's second stage is one small LP per segment, solved exactly and with
  verified duals by :func:`peakplan.recourse.solve_chains`. Fast: this is the method behind
  the scale figures in ``benchmarks/README.md``.
- **lp** (:func:`_solve_benders_lp`): any pack. Every path's LP (built by
  ``define_second_stage``) is re-solved by HiGHS with a warm basis; the coupling quantities
  are master variables. Exact but slow; it exists so that ``method="benders"`` is defined
  everywhere and for cross-checks.

:func:`solve_benders` picks between them; :func:`chain_structure` says why a pack is not
eligible for chains.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pulp

from peakplan.errors import SolverError
from peakplan.optimize import (
    Model,
    SolveResult,
    SolveStatus,
    _quiet_stdout,
    _solver,
    _vname,
    define_first_stage,
    define_lever_rules,
    define_second_stage,
    define_service,
)
from peakplan.pack import PlanningPack, Variant
from peakplan.simulate import mc

__all__ = ["solve_benders"]


# --------------------------------------------------------------------------------------
_FIRST_STAGE_ROWS = ("cap", "flex_cap", "build_cap", "link")


@dataclass
class _Sub:
    """The second stage of every path with the first stage fixed, held in one HiGHS model.

    With the first stage fixed the LP separates into one block per path, so the optimal
    row duals of the joint LP are optimal duals of every block: ``dQ_s/dy = -sum_rows(s)
    pi_row * a_row,y`` (``a`` the row's coefficient on the fixed first-stage column).
    """

    highs: object
    fixed_cols: np.ndarray
    """Column index in HiGHS of every first-stage copy, in master order."""
    grad: object
    """Sparse ``[n_rows_linked, n_fixed]`` coefficients of the fixed columns."""
    row_index: np.ndarray
    row_path: np.ndarray
    col_path: np.ndarray
    cost: np.ndarray
    const: np.ndarray
    slack_cols: np.ndarray


def _stage2_links(pack: PlanningPack, variant: Variant, budget: float | None) -> list[str]:
    """Second-stage quantities the master must see per path: ``served``, ``lost``, ``flex``."""
    links = []
    if variant.service == "expected" and variant.target > 0:
        links.append("served")
    elif variant.service in ("quantile", "cvar") and variant.target > 0:
        links.append("lost")
    if budget is not None and any(lv.kind == "flex" for lv in pack.levers):
        links.append("flex")
    return links


def _build_sub(pack: PlanningPack, draws: mc.Draws, links: list[str], solver_opts: pulp.HiGHS, big_m: float) -> tuple:
    import scipy.sparse as sp

    m = Model(prob=pulp.LpProblem("peakplan_stage2", pulp.LpMinimize), y={}, pb={})
    fixed = []
    for i, lv in enumerate(pack.levers):
        for t in range(pack.T):
            m.y[i, t] = m.prob.add_variable(_vname("y", lv.name, t), lowBound=0, upBound=0)
            fixed.append(m.y[i, t])
    for g in np.flatnonzero(pack.arr("storable").astype(bool)):
        for t in range(pack.T):
            m.pb[t, g] = m.prob.add_variable(_vname("prebuild", pack.segments[g], t), lowBound=0, upBound=0)
            fixed.append(m.pb[t, g])
    stage2 = define_second_stage(m, pack, draws)
    S = len(stage2["path_cost"])
    slacks, link_vars = [], {}
    for k in links:
        for s in range(S):
            z = m.prob.add_variable(_vname("link", k, s), lowBound=0, upBound=0)
            e = m.prob.add_variable(_vname("elastic", k, s), lowBound=0)
            slacks.append(e)
            fixed.append(z)
            link_vars[k, s] = z
            if k == "served":
                m.prob += stage2["served_win"][s] + e >= z, _vname("link", s, k)
            elif k == "lost":
                m.prob += stage2["lost_win"][s] - e <= z, _vname("link", s, k)
            else:
                m.prob += stage2["flex_spend"][s] - e <= z, _vname("link", s, k)
    m.prob += pulp.lpSum(stage2["path_cost"]) + big_m * pulp.lpSum(slacks)
    solver_opts.createAndConfigureSolver(m.prob)
    solver_opts.buildSolverModel(m.prob)
    h = m.prob.solverModel
    h.setOptionValue("presolve", "off")  # re-solves change bounds only: keep the warm basis
    fixed_idx = {v.name: j for j, v in enumerate(fixed)}
    rows, cols, vals, row_ids, row_path = [], [], [], [], []
    for con in m.prob.constraints():
        name = con.name
        head = name.split("__", 2)
        if head[0] not in _FIRST_STAGE_ROWS:
            continue
        k = len(row_ids)
        hit = False
        for var, a in con.items():
            j = fixed_idx.get(var.name)
            if j is not None and a != 0:
                rows.append(k)
                cols.append(j)
                vals.append(a)
                hit = True
        if hit:
            row_ids.append(con.index)
            row_path.append(int(head[1]))
    grad = sp.csr_matrix((vals, (rows, cols)), shape=(len(row_ids), len(fixed)))
    variables = m.prob.variables()
    col_path = np.full(len(variables), -1, int)
    cost = np.zeros(len(variables))
    obj = m.prob.objective
    for v in variables:
        parts = v.name.split("__")
        if parts[0] in ("x", "from_stock", "build", "flex") and len(parts) > 1:
            col_path[v.index] = int(parts[1])
        elif parts[0] == "elastic":
            col_path[v.index] = int(parts[2])
        cost[v.index] = obj.get(v, 0.0)
    const = np.array([float(pc.constant) for pc in stage2["path_cost"]])
    sub = _Sub(h, np.array([v.index for v in fixed]), grad, np.array(row_ids), np.array(row_path), col_path,
               cost, const, np.array([e.index for e in slacks], int))
    return sub, fixed, link_vars


def _solve_sub(sub: _Sub, values: np.ndarray, S: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-path optimal cost ``Q_s`` and subgradients ``[S, n_fixed]`` at first stage ``values``."""
    import scipy.sparse as sp

    h = sub.highs
    n = len(sub.fixed_cols)
    h.changeColsBounds(n, sub.fixed_cols.astype(np.int32), values, values)
    with _quiet_stdout():
        h.run()
    if h.getModelStatus() != h.getModelStatus().__class__.kOptimal:
        raise SolverError(f"second stage: HiGHS returned {h.modelStatusToString(h.getModelStatus())}")
    sol = h.getSolution()
    x = np.asarray(sol.col_value)
    pi = np.asarray(sol.row_dual)[sub.row_index]
    q = np.bincount(sub.col_path[sub.col_path >= 0], (sub.cost * x)[sub.col_path >= 0], minlength=S) + sub.const
    # dQ_s/dy = -sum over the path's rows of pi * a
    P = sp.csr_matrix((pi, (sub.row_path, np.arange(len(pi)))), shape=(S, len(pi)))
    g = -(P @ sub.grad).toarray()
    slack = float(x[sub.slack_cols].sum()) if len(sub.slack_cols) else 0.0
    return q, g, slack


def _solve_benders_lp(pack: PlanningPack, draws: mc.Draws, variant: Variant, budget: float | None = None, *,
                      time_limit: float | None = None, tol: float = 1e-7, max_iter: int = 500) -> tuple[SolveResult, dict]:
    """Multi-cut L-shaped method (Van Slyke & Wets 1969; Birge & Louveaux 1988) for the SAA model.

    Master: the first stage (``define_first_stage``, ``define_lever_rules``), one cost
    variable ``theta_s`` per path, and per path the second-stage quantities the coupling
    constraints need (served or lost units in the service window, flex spend for the
    budget) as first-stage *link* variables, on which the service and budget constraints
    are stated exactly as in the extensive form. Subproblem: every path's recourse with
    the first stage and the links fixed; the link rows are elastic at a large price, so it
    is always feasible and its cuts act as feasibility cuts. Optimality cuts
    ``theta_s >= Q_s(x^k) + g_s^k (x - x^k)`` come from the optimal row duals.

    Stops when ``(UB - LB) / |UB| <= tol``; the reported objective is the upper bound (the
    exact SAA cost of the returned plan), ``gap`` the final relative gap. Fixed order costs
    get the extensive form's relax-and-fix treatment.

    Status: the general fallback, exact and slow. It equals the extensive form within 1e-6
    relative on the newsvendor, Sailco and random tiny instances, but plain multi-cut
    L-shaped with HiGHS re-solving the joint LP of all paths tails off on large packs (T=52,
    R=8, S=10: relative gap ~2e-4 after 300 iterations). Packs the chain oracle accepts go to
    :func:`solve_benders_chains` instead. Returns the result and an info dict (iterations,
    bounds, elastic slack, expected flex spend as bounded by its link).
    """
    t0 = time.perf_counter()
    links = _stage2_links(pack, variant, budget)
    scale = float(max(np.max(pack.penalty), max((lv.unit_cost for lv in pack.levers), default=0.0), 1.0))
    window = pack.arr("service_window").astype(bool)
    d_win = draws.demand[:, window, :].sum(axis=(1, 2))
    big_m = min(1e3 * scale, 1e7)  # above the coupling duals in practice, small enough for clean cuts
    for _ in range(3):  # an elastic price below the coupling duals shows as slack: raise it and retry
        res, info = _benders(pack, draws, variant, budget, links, d_win, big_m, t0, time_limit, tol, max_iter)
        if info["slack"] <= 1e-6 * max(1.0, float(d_win.sum())) or res.status is not SolveStatus.OPTIMAL:
            break
        big_m *= 100.0
    if info["slack"] > 1e-6 * max(1.0, float(d_win.sum())) and res.status is SolveStatus.OPTIMAL:
        res = SolveResult(SolveStatus.INFEASIBLE, res.objective, res.levels, res.prebuild, res.seconds, res.solver,
                          res.gap)
    return res, info


def _benders(pack, draws, variant, budget, links, d_win, big_m, t0, time_limit, tol, max_iter):
    S = draws.demand.shape[0]
    opts = _solver("highs", None)
    sub, _, _ = _build_sub(pack, draws, links, opts, big_m)

    m = Model(prob=pulp.LpProblem(_vname("master", pack.name, variant.name), pulp.LpMinimize), y={}, pb={})
    define_first_stage(m, pack, budget)
    det = define_lever_rules(m, pack)
    stock_room = float(pack.arr("initial_stock").sum() + pack.arr("storage_cap").sum() * pack.T)
    theta = [m.prob.add_variable(_vname("theta", s), lowBound=-1e-5 * stock_room - 1.0) for s in range(S)]
    link = {}
    for k in links:
        for s in range(S):
            hi = float(d_win[s]) if k in ("served", "lost") else None
            link[k, s] = m.prob.add_variable(_vname("link", k, s), lowBound=0, upBound=hi)
    base = float((np.asarray(pack.capacity_cost) * pack.base_capacity).sum())
    lever = det["rent"] + det["orders"] - det["saving"]
    tie = 1e-6 * (pulp.lpSum(v for (i, _), v in m.y.items() if pack.levers[i].kind == "flex") + pulp.lpSum(m.pb.values()))
    m.prob += base + lever + pulp.lpSum(theta) * (1.0 / S) + tie
    if "flex" in links:
        m.prob += lever + pulp.lpSum(link["flex", s] for s in range(S)) * (1.0 / S) <= budget, "budget"
    zeros = [0.0] * S
    served = [link.get(("served", s), zeros[s]) for s in range(S)]
    lost = [link.get(("lost", s), zeros[s]) for s in range(S)]
    define_service(m, pack, variant, {"served_win": served, "lost_win": lost}, d_win)
    if budget is not None and "flex" not in links:
        m.prob += lever <= budget, "budget"
    first = [m.y[i, t] for i in range(pack.L) for t in range(pack.T)]
    first += [m.pb[t, g] for g in np.flatnonzero(pack.arr("storable").astype(bool)) for t in range(pack.T)]
    first += [link[k, s] for k in links for s in range(S)]
    opts.createAndConfigureSolver(m.prob)
    opts.buildSolverModel(m.prob)
    h = m.prob.solverModel
    first_idx = np.array([v.index for v in first])
    offset = float(m.prob.objective.constant)  # pulp does not pass the constant to HiGHS
    theta_idx = np.array([v.index for v in theta])
    orders = m.extra.get("orders", [])
    order_idx = np.array([z.index for z, _ in orders], int)
    inc_idx = np.array([inc.index for _, inc in orders], int)
    lb, ub, best, best_slack, it, status = -np.inf, np.inf, None, 0.0, 0, SolveStatus.OPTIMAL
    fixed_orders = not orders
    relaxed_obj = None
    while True:
        it += 1
        with _quiet_stdout():
            h.run()
        mst = h.getModelStatus()
        if mst not in (mst.__class__.kOptimal, mst.__class__.kInfeasible):  # retry without the warm start
            h.clearSolver()
            with _quiet_stdout():
                h.run()
            mst = h.getModelStatus()
        if mst == mst.__class__.kInfeasible:
            status = SolveStatus.INFEASIBLE
            break
        if mst != mst.__class__.kOptimal:
            status = SolveStatus.UNBOUNDED if mst == mst.__class__.kUnbounded else SolveStatus.ERROR
            break
        col = np.asarray(h.getSolution().col_value)
        lb = h.getInfo().objective_function_value + offset
        x = col[first_idx]
        q, g, slack = _solve_sub(sub, x, S)
        first_cost = lb - col[theta_idx].sum() / S
        value = first_cost + q.mean()
        if value < ub:
            ub, best, best_slack = value, col.copy(), slack
        gap = (ub - lb) / max(abs(ub), 1.0)
        timed_out = time_limit is not None and time.perf_counter() - t0 > time_limit
        if gap <= tol or it >= max_iter or timed_out:
            if not fixed_orders and not timed_out:
                relaxed_obj = lb
                on = best[inc_idx] > 1e-6
                for zi, flag in zip(order_idx, on, strict=True):
                    h.changeColBounds(int(zi), float(flag), float(flag))
                fixed_orders, ub = True, np.inf
                continue
            if timed_out or gap > tol:
                status = SolveStatus.TIME_LIMIT
            break
        # multi-cut: theta_s - g_s x >= q_s - g_s x^k, one row per path whose cut is not yet met
        viol = q > col[theta_idx] + 1e-9 * np.maximum(1.0, np.abs(q))
        rhs = q - g @ x
        for s in np.flatnonzero(viol):
            nz = np.flatnonzero(np.abs(g[s]) > 1e-12)
            idx = np.concatenate([[theta_idx[s]], first_idx[nz]]).astype(np.int32)
            val = np.concatenate([[1.0], -g[s, nz]])
            h.addRow(float(rhs[s]), np.inf, len(idx), idx, val)
    secs = time.perf_counter() - t0
    levels = np.zeros((pack.L, pack.T))
    prebuild = np.zeros((pack.T, pack.G))
    obj = float("nan")
    if best is not None and status in (SolveStatus.OPTIMAL, SolveStatus.TIME_LIMIT):
        for (i, t), v in m.y.items():
            levels[i, t] = max(0.0, best[v.index])
        for (t, g_), v in m.pb.items():
            prebuild[t, g_] = max(0.0, best[v.index])
        obj = ub
    levels = np.where(np.abs(levels) < 1e-7, 0.0, levels)
    gap_out = max(0.0, (ub - lb) / max(abs(ub), 1.0)) if np.isfinite(ub) else float("nan")
    if relaxed_obj is not None and np.isfinite(obj):
        gap_out = max(gap_out, (obj - relaxed_obj) / max(abs(obj), 1.0))
    flex_spend = 0.0
    if best is not None and "flex" in links:
        flex_spend = float(np.mean([best[link["flex", s].index] for s in range(S)]))
    info = {"iterations": it, "lower_bound": lb, "upper_bound": ub, "flex_spend": flex_spend, "links": links,
            "slack": best_slack, "elastic_price": big_m}
    return SolveResult(status, obj, levels, prebuild, secs, "highs-benders", gap_out), info


# --------------------------------------------------------------------------------------
# chain decomposition: exact DP subproblems, per-segment cuts, in-out stabilisation
# --------------------------------------------------------------------------------------
def chain_structure(pack: PlanningPack, variant: Variant, budget: float | None) -> dict | str:
    """How the second stage splits into single-resource chains, or why it does not (a string)."""
    A = np.asarray(pack.load, float)
    if int(pack.max_delay) not in (0, 1):
        return f"max_delay is {pack.max_delay} (chains need 0 or 1)"
    if pack.arr("storable").astype(bool).any():
        return "a segment is storable (pre-build links periods through stock)"
    if variant.service in ("quantile", "cvar") and variant.target > 0:
        return f"service '{variant.service}' couples the segments of a path (CVaR of the path's lost units)"
    flex = [i for i, lv in enumerate(pack.levers) if lv.kind == "flex"]
    if budget is not None and flex:
        return "a budget with flex levers couples the paths through the expected flex spend"
    res_of = np.full(pack.G, -1)
    for g in range(pack.G):
        on = np.flatnonzero(A[g] > 0)
        if len(on) != 1:
            return f"segment {pack.segments[g]} loads {len(on)} resources (chains need exactly 1)"
        res_of[g] = on[0]
    if len(set(res_of.tolist())) != pack.G:
        return "a resource serves several segments (shared capacity)"
    for r in range(pack.R):
        if sum(1 for i in flex if pack.levers[i].resource == r) > 1:
            return f"resource {pack.resources[r]} has more than one flex lever"
    return {"resource": res_of, "load": A[np.arange(pack.G), res_of]}


class ChainOracle:
    """Per-segment recourse of every path with the first stage fixed, by :func:`peakplan.recourse.solve_chains`.

    For segment ``g`` and a multiplier ``lam >= 0`` on the window service it returns, per
    cluster ``k`` of paths, the Lagrangian value ``Lambda_gk(y; lam) = (1/S) sum_{s in k}
    Q_sg(y; lam) - lam sum_{s in k} w_s served_sg`` (``w_s = 1 / demand in the window`` of
    path ``s``, 0 for paths without window demand; ``Q_sg(y; lam)`` the chain cost with the
    loss weight of window arrivals raised by ``lam S w_s``), its subgradient in the levels of
    the segment's levers, the weighted window service and the true mean cost.
    """

    def __init__(self, pack: PlanningPack, draws: mc.Draws, structure: dict, clusters: int = 1):
        self.pack = pack
        S, T, G = draws.demand.shape
        self.S, self.T, self.G = S, T, G
        self.res = structure["resource"]
        self.load = structure["load"]
        self.window = pack.arr("service_window").astype(bool)
        d_win = draws.demand[:, self.window, :].sum(axis=(1, 2))
        self.w = np.where(d_win > 0, 1.0 / np.where(d_win > 0, d_win, 1.0), 0.0)
        self.n_ok = int((d_win > 0).sum())
        K = int(max(1, min(clusters, S)))
        self.starts = np.linspace(0, S, K + 1).astype(int)[:-1]
        self.K = K
        self.demand = [np.ascontiguousarray(draws.demand[:, :, g]) for g in range(G)]
        self.factor = [np.ascontiguousarray(draws.capacity_factor[:, :, self.res[g]] / self.load[g]) for g in range(G)]
        self.dwin_path = np.stack([self.w * self.demand[g][:, self.window].sum(axis=1) for g in range(G)])  # [G, S]
        self.dwin = np.add.reduceat(self.dwin_path, self.starts, axis=1)  # [G, K]
        levers = pack.levers
        self.sign = np.array([1.0 if lv.kind == "reserve" else -1.0 if lv.kind == "release" else 0.0 for lv in levers])
        self.cap_levers = [np.array([i for i, lv in enumerate(levers) if lv.resource == self.res[g]
                                     and lv.kind in ("reserve", "release")], int) for g in range(G)]
        self.flex_lever = [next((i for i, lv in enumerate(levers) if lv.resource == self.res[g] and lv.kind == "flex"),
                                -1) for g in range(G)]
        self.levers_of = [np.concatenate([self.cap_levers[g], [self.flex_lever[g]] if self.flex_lever[g] >= 0 else []])
                          .astype(int) for g in range(G)]
        self.base = np.asarray(pack.base_capacity, float)
        self.pen = np.asarray(pack.penalty, float)
        self.bc = pack.arr("backlog_cost")
        self.max_delay = int(pack.max_delay)
        self.calls = 0
        self.fallbacks = 0

    def lam_scale(self) -> float:
        """A multiplier of the order of the penalty (where the search starts)."""
        return float(self.pen.max()) * float(np.mean(1.0 / self.w[self.w > 0])) / self.S

    def evaluate(self, g: int, levels: np.ndarray, lam: float, feasibility: bool = False) -> dict:
        """Segment ``g`` at ``levels``; ``feasibility=True`` minimises only the weighted window loss.

        With ``feasibility`` the chains price nothing but lost window units (weight
        ``S w_s``; flex and backlog free): ``cost = dwin - most servable`` per cluster, and
        ``grad`` is its subgradient.
        """
        from peakplan.recourse import solve_chains

        S, T = self.S, self.T
        r, a = self.res[g], self.load[g]
        cap_idx, fi = self.cap_levers[g], self.flex_lever[g]
        level = self.base[:, r] + (self.sign[cap_idx, None] * levels[cap_idx]).sum(axis=0)
        c = np.maximum(self.factor[g] * level[None, :], 0.0)
        if fi >= 0:
            F = np.broadcast_to(np.maximum(levels[fi], 0.0) / a, (S, T))
            u = self.pack.levers[fi].unit_cost * a
        else:
            F, u = np.zeros((S, T)), 0.0
        if feasibility:
            extra = S * self.w[:, None] * self.window[None, :]
            L, u, bc = extra, 0.0, 0.0
        else:
            extra = (lam * S) * self.w[:, None] * self.window[None, :]
            L, bc = self.pen[g] + extra, float(self.bc[g])
        out = solve_chains(self.demand[g], c, F, u, bc, L, self.max_delay)
        self.calls += 1
        self.fallbacks += out["fallback"]
        loss = out["loss"]
        k0 = self.starts
        served_path = self.dwin_path[g] - self.w * loss[:, self.window].sum(axis=1)
        served = np.add.reduceat(served_path, k0)
        cost_path = out["cost"]
        lag = np.add.reduceat(cost_path, k0) / S - lam * self.dwin[g]
        true = lag.copy() if feasibility else np.add.reduceat(cost_path - (extra * loss).sum(axis=1), k0) / S
        grad = np.zeros((self.K, len(self.levers_of[g]), T))
        if len(cap_idx):
            gp = -np.add.reduceat(out["p"] * self.factor[g], k0, axis=0) / S  # [K, T]: d/d(capacity level)
            grad[:, :len(cap_idx)] = self.sign[cap_idx][None, :, None] * gp[:, None, :]
        if fi >= 0:
            grad[:, -1] = -np.add.reduceat(out["q"], k0, axis=0) / (S * a)
        return {"g": g, "lam": lam, "lag": lag, "served": served, "cost": true, "grad": grad}


def _recourse_value(oracle: ChainOracle, levels: np.ndarray, need: float | None, lam0: float, atol: float,
                    max_steps: int = 40) -> dict:
    """Exact recourse cost at ``levels`` under the coupled target ``sum served >= need`` (or none).

    One multiplier for all segments: ``h(lam) = sum_gk Lambda_gk(y; lam) + lam * need`` is
    concave; its maximum is the constrained recourse cost (LP duality). The search brackets
    the maximum from the last multiplier, then intersects tangents until the bound they give
    is within ``atol``. ``value`` is the cost of a feasible second stage (the bracket's
    convex combination; ``inf`` when the target cannot be met at ``levels``), ``evals``
    the evaluations whose cuts the master receives and ``feasibility`` the segments'
    most-servable evaluations when the target is out of reach.
    """
    G = oracle.G
    e0 = [oracle.evaluate(g, levels, 0.0) for g in range(G)]
    if need is None:
        return {"value": float(sum(e["cost"].sum() for e in e0)), "lam": 0.0, "evals": e0, "feasibility": None}
    need_ok = need - 1e-9 * max(1.0, abs(need))

    def total(es):
        lam = es[0]["lam"]
        return (float(sum(e["lag"].sum() for e in es)) + lam * need, float(sum(e["served"].sum() for e in es)),
                float(sum(e["cost"].sum() for e in es)))

    f_lo, s_lo, c_lo = total(e0)
    if s_lo >= need_ok:
        return {"value": c_lo, "lam": 0.0, "evals": e0, "feasibility": None}
    fz = [oracle.evaluate(g, levels, 0.0, feasibility=True) for g in range(G)]
    if float(sum((oracle.dwin[g] - fz[g]["cost"]).sum() for g in range(G))) < need_ok:
        return {"value": np.inf, "lam": lam0, "evals": e0, "feasibility": fz}
    lo = e0
    lam = lam0 if lam0 > 0 else oracle.lam_scale()
    hi = None
    for _ in range(60):
        es = [oracle.evaluate(g, levels, lam) for g in range(G)]
        f, sv, c = total(es)
        if sv >= need_ok:
            hi, f_hi, s_hi, c_hi = es, f, sv, c
            break
        lo, f_lo, s_lo, c_lo = es, f, sv, c
        lam *= 8.0
    if hi is None:
        raise SolverError("recourse: the service target is reachable but no finite multiplier reaches it")
    for _ in range(max_steps):
        g_lo, g_hi = need - s_lo, need - s_hi
        m_lo, m_hi = lo[0]["lam"], hi[0]["lam"]
        if g_lo - g_hi <= 0:
            break
        lam = (f_hi - f_lo + g_lo * m_lo - g_hi * m_hi) / (g_lo - g_hi)
        top = f_lo + g_lo * (lam - m_lo)
        if top - max(f_lo, f_hi) <= atol or not m_lo < lam < m_hi:
            break
        es = [oracle.evaluate(g, levels, lam) for g in range(G)]
        f, sv, c = total(es)
        if sv >= need_ok:
            hi, f_hi, s_hi, c_hi = es, f, sv, c
        else:
            lo, f_lo, s_lo, c_lo = es, f, sv, c
    span = s_hi - s_lo
    alpha = 1.0 if span <= 0 else min(1.0, max(0.0, (need - s_lo) / span))
    evals = hi + (lo if lo is not e0 else [])
    return {"value": alpha * c_hi + (1 - alpha) * c_lo, "lam": hi[0]["lam"], "evals": e0 + evals, "feasibility": fz}


def solve_benders_chains(pack: PlanningPack, draws: mc.Draws, variant: Variant, budget: float | None,
                         structure: dict, *, time_limit: float | None = None, tol: float = 1e-6,
                         max_iter: int = 1000, alpha: float = 0.5, clusters: int | None = None,
                         start: np.ndarray | None = None, ramp: int = 2000,
                         trace: list | None = None) -> tuple[SolveResult, dict]:
    """L-shaped method with exact chain subproblems, cuts per (segment, cluster of paths), in-out stabilisation.

    Master: the first stage (``define_first_stage``, ``define_lever_rules``) and, per
    segment ``g`` and cluster ``k`` of paths, a cost ``theta_gk`` (the cluster's share of
    the mean recourse) and, for an expected fill target, a service share ``sigma_gk`` with
    ``sum sigma_gk >= target * n``. At a point ``y^k`` the recourse is evaluated exactly
    (:func:`_recourse_value`: one multiplier ``lam`` for the coupled target, found by a
    concave line search), and every evaluation gives cuts valid for all ``y``::

        theta_gk - lam sigma_gk >= Lambda_gk(y^k; lam) + grad_gk (y - y^k)

    Summed over ``(g, k)`` at the search's multiplier they support the recourse value
    function at ``y^k``, so the master's optimum is a lower bound that converges (Kelley);
    where the target is out of reach at ``y^k`` a feasibility cut on the most servable
    window demand is added instead. Query points are in-out combinations ``alpha * core +
    (1 - alpha) * master`` (Ben-Ameur & Neto 2007; Fischetti, Ljubic & Sinnl 2017), the core
    being the best plan so far; when a query's cuts do not cut off the master's point the
    master's point is evaluated too. LB = master optimum; UB = exact SAA cost of the core;
    stops at ``(UB - LB) / |UB| <= tol``.

    ``clusters`` (default 8, or 32 from 5,000 paths) sets how finely the cuts are
    disaggregated. ``start`` (lever levels) is evaluated first and becomes the first core;
    from ``ramp`` paths on, the start is the solution of the first eighth of the paths
    (solved the same way at ``max(tol, 1e-3)``), which saves most early iterations.
    """
    t0 = time.perf_counter()
    G = pack.G
    S = draws.demand.shape[0]
    if start is None and ramp and ramp <= S:
        sub = mc.Draws(*(getattr(draws, f)[: S // 8] for f in ("demand", "capacity_factor", "late", "event_hit",
                                                                 "disruption_hit")))
        first, _ = solve_benders_chains(pack, sub, variant, budget, structure, tol=max(tol, 1e-3), alpha=alpha,
                                        ramp=ramp, time_limit=time_limit)
        if first.status is SolveStatus.OPTIMAL:
            start = first.levels
    if clusters is None:
        clusters = 8 if S < 5000 else 32
    oracle = ChainOracle(pack, draws, structure, clusters)
    K = oracle.K
    with_service = variant.service == "expected" and variant.target > 0 and oracle.n_ok > 0
    need = variant.target * oracle.n_ok if with_service else None
    m = Model(prob=pulp.LpProblem(_vname("master", pack.name, variant.name), pulp.LpMinimize), y={}, pb={})
    define_first_stage(m, pack, budget)
    det = define_lever_rules(m, pack)
    theta = {(g, k): m.prob.add_variable(_vname("theta", pack.segments[g], k), lowBound=0)
             for g in range(G) for k in range(K)}
    sigma = {(g, k): m.prob.add_variable(_vname("sigma", pack.segments[g], k), lowBound=0,
                                         upBound=float(oracle.dwin[g, k]))
             for g in range(G) for k in range(K)} if with_service else {}
    base = float((np.asarray(pack.capacity_cost) * pack.base_capacity).sum())
    lever = det["rent"] + det["orders"] - det["saving"]
    tie_vars = [v for (i, _), v in m.y.items() if pack.levers[i].kind == "flex"]
    m.prob += base + lever + pulp.lpSum(theta.values()) + 1e-6 * pulp.lpSum(tie_vars)
    if with_service:
        m.prob += pulp.lpSum(sigma.values()) >= need, "service_expected"
    if budget is not None:
        m.prob += lever <= budget, "budget"
    opts = _solver("highs", None)
    opts.createAndConfigureSolver(m.prob)
    opts.buildSolverModel(m.prob)
    h = m.prob.solverModel
    offset = float(m.prob.objective.constant)  # pulp does not pass the constant to HiGHS
    y_idx = np.array([[m.y[i, t].index for t in range(pack.T)] for i in range(pack.L)], int)
    th_idx = np.array([[theta[g, k].index for k in range(K)] for g in range(G)], int)
    sg_idx = np.array([[sigma[g, k].index for k in range(K)] for g in range(G)], int) if with_service else None
    cost_vec = np.asarray(h.getLp().col_cost_)
    orders = m.extra.get("orders", [])
    order_idx = np.array([z.index for z, _ in orders], int)
    inc_idx = np.array([inc.index for _, inc in orders], int)
    lev_cols = [y_idx[oracle.levers_of[g]].ravel() for g in range(G)]
    lam = 0.0
    lb, ub, core, it, status, relaxed_obj = -np.inf, np.inf, None, 0, SolveStatus.OPTIMAL, None
    fixed_orders = not len(orders)
    n_cuts = 0

    def master():
        with _quiet_stdout():
            h.run()
        st = h.getModelStatus()
        if st != st.__class__.kOptimal:  # numerical trouble on a warm start: solve from scratch
            h.clearSolver()
            with _quiet_stdout():
                h.run()
            st = h.getModelStatus()
        if st != st.__class__.kOptimal:
            return None, h.modelStatusToString(st)
        return np.asarray(h.getSolution().col_value), h.getInfo().objective_function_value + offset

    def cut_rows(col, res):
        """Cuts ``(index, values, lower)`` from an evaluation at ``col``."""
        rows = []
        for e in res["evals"]:
            g = e["g"]
            yg = col[lev_cols[g]]
            for k in range(K):
                gr = e["grad"][k].ravel()
                nz = np.flatnonzero(np.abs(gr) > 1e-12)
                idx = np.concatenate([[th_idx[g, k]], lev_cols[g][nz]])
                val = np.concatenate([[1.0], -gr[nz]])
                if with_service and e["lam"] > 0:
                    idx = np.append(idx, sg_idx[g, k])
                    val = np.append(val, -e["lam"])
                rows.append((idx, val, float(e["lag"][k] - gr @ yg)))
        if res["feasibility"] is not None and with_service:
            # per (segment, cluster): sigma_gk <= most servable_gk(y) <= dwin_gk - cost_gk - grad_gk (y - y^k)
            for e in res["feasibility"]:
                g = e["g"]
                yg = col[lev_cols[g]]
                for k in range(K):
                    gr = e["grad"][k].ravel()
                    nz = np.flatnonzero(np.abs(gr) > 1e-12)
                    idx = np.concatenate([[sg_idx[g, k]], lev_cols[g][nz]])
                    val = np.concatenate([[-1.0], -gr[nz]])
                    rows.append((idx, val, float(-(oracle.dwin[g, k] - e["cost"][k] + gr @ yg))))
        return rows

    def violated(rows, col):
        return any(float(val @ col[idx]) < lo - 1e-9 * max(1.0, abs(lo)) for idx, val, lo in rows)

    def evaluate(col):
        nonlocal lam
        atol = 1e-3 * tol * max(1.0, abs(lb) if np.isfinite(lb) else 0.0)
        res = oracle_value(col, atol)
        if np.isfinite(res["value"]):
            lam = res["lam"]
        first = float(cost_vec @ col) + offset - float(col[th_idx].sum())
        return cut_rows(col, res), first + res["value"]

    def oracle_value(col, atol):
        return _recourse_value(oracle, col[y_idx], need, lam, atol)

    if with_service:
        # a first core inside the feasible region: the master's most capacity (every reserve and flex
        # lever as high and every release as low as its rules allow), where the target is most reachable
        base_cost = np.asarray(h.getLp().col_cost_).copy()
        push = np.zeros(len(base_cost))
        for i, lv in enumerate(pack.levers):
            push[y_idx[i]] = 1.0 if lv.kind == "release" else -1.0
        h.changeColsCost(len(push), np.arange(len(push), dtype=np.int32), push)
        col, _ = master()
        h.changeColsCost(len(base_cost), np.arange(len(base_cost), dtype=np.int32), base_cost)
        if col is not None:
            rows, value = evaluate(col)
            if value < ub:
                ub, core = value, col.copy()
            for idx, v, lo in rows:
                h.addRow(lo, np.inf, len(idx), idx.astype(np.int32), v)
            n_cuts += len(rows)
    if start is not None:  # a full first-stage column at the start levels: the master with y fixed there
        lo_b, hi_b = np.asarray(h.getLp().col_lower_), np.asarray(h.getLp().col_upper_)
        flat = y_idx.ravel().astype(np.int32)
        fix = np.clip(np.asarray(start, float).ravel(), lo_b[flat], hi_b[flat])
        h.changeColsBounds(len(flat), flat, fix, fix)
        col, _ = master()
        h.changeColsBounds(len(flat), flat, lo_b[flat], hi_b[flat])
        if col is not None:
            rows, value = evaluate(col)
            if value < ub:
                ub, core = value, col.copy()
            for idx, v, lo in rows:
                h.addRow(lo, np.inf, len(idx), idx.astype(np.int32), v)
            n_cuts += len(rows)
    while True:
        it += 1
        col, val = master()
        if col is None:
            status = SolveStatus.INFEASIBLE if "nfeasible" in val else SolveStatus.ERROR
            break
        lb = val
        q = col if core is None else alpha * core + (1 - alpha) * col
        rows, value = evaluate(q)
        if value < ub:
            ub, core = value, q.copy()
        if q is not col and not violated(rows, col):
            rows2, value2 = evaluate(col)
            if value2 < ub:
                ub, core = value2, col.copy()
            rows += rows2
        for idx, v, lo in rows:
            h.addRow(lo, np.inf, len(idx), idx.astype(np.int32), v)
        n_cuts += len(rows)
        gap = (ub - lb) / max(abs(ub), 1.0)
        if trace is not None:
            trace.append((it, time.perf_counter() - t0, lb, ub, oracle.calls))
        timed_out = time_limit is not None and time.perf_counter() - t0 > time_limit
        if gap <= tol or it >= max_iter or timed_out:
            if not fixed_orders and not timed_out and core is not None:
                relaxed_obj = lb
                on = core[inc_idx] > 1e-6
                for zi, flag in zip(order_idx, on, strict=True):
                    h.changeColBounds(int(zi), float(flag), float(flag))
                fixed_orders, ub, core = True, np.inf, None
                continue
            if timed_out or gap > tol:
                status = SolveStatus.TIME_LIMIT
            break
    secs = time.perf_counter() - t0
    levels = np.zeros((pack.L, pack.T))
    obj = float("nan")
    if core is not None and np.isfinite(ub) and status in (SolveStatus.OPTIMAL, SolveStatus.TIME_LIMIT):
        levels = np.maximum(core[y_idx], 0.0)
        obj = ub
    elif status is SolveStatus.OPTIMAL:  # no point met the target: the master converged on an unreachable one
        status = SolveStatus.INFEASIBLE
    levels = np.where(np.abs(levels) < 1e-7, 0.0, levels)
    gap_out = max(0.0, (ub - lb) / max(abs(ub), 1.0)) if np.isfinite(ub) else float("nan")
    if relaxed_obj is not None and np.isfinite(obj):
        gap_out = max(gap_out, (obj - relaxed_obj) / max(abs(obj), 1.0))
    info = {"iterations": it, "lower_bound": lb, "upper_bound": ub, "flex_spend": 0.0, "links": [],
            "subproblem": "chains", "oracle_calls": oracle.calls, "lp_fallbacks": oracle.fallbacks, "cuts": n_cuts,
            "clusters": K, "multiplier": lam, "slack": 0.0}
    return SolveResult(status, obj, levels, np.zeros((pack.T, pack.G)), secs, "highs-benders", gap_out), info


def solve_benders(pack: PlanningPack, draws: mc.Draws, variant: Variant, budget: float | None = None, *,
                  time_limit: float | None = None, tol: float = 1e-7, max_iter: int = 1000,
                  subproblem: str = "auto") -> tuple[SolveResult, dict]:
    """L-shaped method for the SAA model: chain subproblems where the model allows, else HiGHS.

    ``subproblem="chains"`` (exact DP per single-resource segment, :func:`solve_benders_chains`)
    is used when :func:`chain_structure` accepts the pack and variant; otherwise, or with
    ``subproblem="lp"``, every path's LP is solved by HiGHS (:func:`_solve_benders_lp`).
    """
    if subproblem not in ("auto", "chains", "lp"):
        raise ValueError(f"subproblem must be 'auto', 'chains' or 'lp', got {subproblem!r}")
    structure = chain_structure(pack, variant, budget) if subproblem != "lp" else "asked for the LP subproblem"
    if isinstance(structure, dict):
        return solve_benders_chains(pack, draws, variant, budget, structure, time_limit=time_limit, tol=tol,
                                    max_iter=max_iter)
    if subproblem == "chains":
        raise ValueError(f"the chain subproblem does not apply: {structure}")
    res, info = _solve_benders_lp(pack, draws, variant, budget, time_limit=time_limit, tol=tol, max_iter=max_iter)
    info["subproblem"] = "lp"
    info["why_not_chains"] = structure
    return res, info
