"""L-shaped (Benders) decomposition of the SAA model of :mod:`peakplan.optimize`.

The master problem is the first stage exactly as the extensive form states it (the same
``define_first_stage`` / ``define_lever_rules`` blocks, pulp-built, solved by HiGHS through
highspy and grown row by row); the recourse enters through cuts. Two subproblem oracles:

- **chains** (:func:`solve_benders_chains`): where each segment has resources of its own
  (several in series, e.g. pickers then packers) or shares one resource, loading only that
  one, with other segments (storable or not), each path's
  second stage is one small LP per chain (a segment, or the segments sharing a resource; any
  ``max_delay``), solved exactly and with verified duals by
  :func:`peakplan.recourse.solve_chains` (:func:`peakplan.recourse_stock.solve_stock_chains`
  for pre-build, whose planned builds are first-stage columns of the cuts too). Every service form is covered: an expected fill
  through one multiplier per point, the quantile and CVaR bounds through a price per chain
  on its lost window units; a budget shared with flex spend through flex-spend shares in the
  master and a multiplier on flex spend. Fast: this is the method behind the scale figures
  in ``benchmarks/README.md``.
- **lp** (:func:`peakplan.benders_lp.solve_benders_lp`): any pack. Every path's LP (built by
  ``define_second_stage``) is re-solved by HiGHS with a warm basis; the coupling quantities
  are master variables. Exact but slow; it exists so that ``method="benders"`` is defined
  everywhere and for cross-checks.

:func:`solve_benders` picks between them; :func:`chain_structure` says why a pack is not
eligible for chains.
"""

from __future__ import annotations

import time

import numpy as np
import pulp

from peakplan.errors import SolverError
from peakplan.optimize import (
    Model,
    SolveResult,
    SolveStatus,
    _check_time,
    _coefficients,
    _deadline,
    _orders_in_full,
    _OutOfTime,
    _run_highs,
    _solver,
    _vname,
    define_first_stage,
    define_lever_rules,
)
from peakplan.pack import PlanningPack, Variant
from peakplan.simulate import mc

__all__ = ["solve_benders"]


# --------------------------------------------------------------------------------------
# chain decomposition: exact DP subproblems, per-segment cuts, in-out stabilisation
# --------------------------------------------------------------------------------------
def chain_structure(pack: PlanningPack, variant: Variant, budget: float | None) -> dict | str:
    """How the second stage splits into chains, or why it does not (a string).

    A chain is one segment on resources of its own (several in series: every unit served
    needs capacity on each), or several segments sharing one resource, each loading only
    that one (one stream of arrivals per segment; with ``max_delay`` >= 1 their backlog
    costs per unit of the resource must be equal). A storable segment (pre-build) is a chain
    on resources of its own, or one or more of the segments sharing a resource (a stock each).
    Returns per chain its ``segments``, their
    ``stream_loads`` (units of capacity a unit of each takes: 1 for a segment on resources of
    its own, whose capacity is counted in its units), its ``resources``, their ``loads`` (1
    for a shared resource) and its name (``names``: the segments' joined by ``+``).
    """
    A = np.asarray(pack.load, float)
    flex = [i for i, lv in enumerate(pack.levers) if lv.kind == "flex"]
    for r in range(pack.R):
        if sum(1 for i in flex if pack.levers[i].resource == r) > 1:
            return f"resource {pack.resources[r]} has more than one flex lever"
    res = [np.flatnonzero(A[g] > 0) for g in range(pack.G)]
    for g in range(pack.G):
        if not len(res[g]):
            return f"segment {pack.segments[g]} loads no resource"
    bc = pack.arr("backlog_cost")
    out: dict = {"segments": [], "stream_loads": [], "resources": [], "loads": [], "names": []}
    done = np.zeros(pack.G, bool)
    for g in range(pack.G):
        if done[g]:
            continue
        group, frontier = {g}, [g]  # the segments linked to g through shared resources
        while frontier:
            h = frontier.pop()
            for r in res[h]:
                for k in np.flatnonzero(A[:, r] > 0):
                    if int(k) not in group:
                        group.add(int(k))
                        frontier.append(int(k))
        segs = sorted(group)
        done[segs] = True
        names = [pack.segments[k] for k in segs]
        if len(segs) == 1:
            out["segments"].append(np.array(segs))
            out["stream_loads"].append(np.ones(1))
            out["resources"].append(res[g])
            out["loads"].append(A[g, res[g]])
            out["names"].append(names[0])
            continue
        shared = {int(r) for k in segs for r in res[k]}
        if len(shared) > 1 or any(len(res[k]) > 1 for k in segs):
            return (f"segments {', '.join(names)} share resources {', '.join(pack.resources[r] for r in sorted(shared))}"
                    " and some load more than one (shared capacity: chains take segments on one shared resource, or "
                    "on resources of their own)")
        r = shared.pop()
        sl = A[segs, r]
        per_unit = bc[segs] / sl
        if int(pack.max_delay) > 0 and np.ptp(per_unit) > 1e-12 * max(1.0, float(np.abs(per_unit).max())):
            return (f"segments {', '.join(names)} share resource {pack.resources[r]} with different backlog costs per "
                    f"unit of it ({', '.join(f'{x:g}' for x in per_unit)})")
        out["segments"].append(np.array(segs))
        out["stream_loads"].append(sl)
        out["resources"].append(np.array([r]))
        out["loads"].append(np.ones(1))
        out["names"].append("+".join(names))
    return out


def _stock_segments(pack: PlanningPack, structure: dict) -> np.ndarray:
    """Per storable chain (in chain order), its storable segment: the order of the planned builds' rows."""
    storable = pack.arr("storable").astype(bool)
    return np.array([int(k) for segs in structure["segments"] for k in segs if storable[k]], int)


#: storable chains keep each path's last flows and prices (:class:`peakplan.recourse_stock.WarmStarts`,
#: about 6 kB a chain at T=52) while all of them stay under this many bytes: 8 resources at
#: S=10,000 hold about 0.5 GB
WARM_BYTES = 2 * 2**30


class _CutPool:
    """The cuts a master holds, to leave out repeats.

    A cut whose columns and coefficients repeat one already there (to 1e-10 of its largest
    coefficient, up to a positive factor) and whose lower side is no higher (to 1e-9, in units
    of that coefficient) adds nothing. Warm-started chains
    (:class:`peakplan.recourse_stock.WarmStarts`) return the same duals at the same flows up to
    rounding, and such near-parallel copies stall HiGHS: the pre-build network at S=50 to a
    1e-7 gap took 364 s with them and 13 s without. Used only where chains start warm.
    """

    def __init__(self):
        self.top = {}  # columns and rounded coefficients -> the highest lower side added with them

    def fresh(self, rows: list) -> list:
        """The cuts ``(index, values, lower)`` of ``rows`` that are not repeats, now in the pool."""
        out = []
        for idx, val, lo in rows:
            sc = float(np.abs(val).max(initial=0.0)) or 1.0
            key = (np.asarray(idx).tobytes(), np.rint(np.asarray(val) * (1e10 / sc)).tobytes())
            top = self.top.get(key)  # compared per unit of the largest coefficient
            if top is not None and lo / sc <= top + 1e-9 * max(1.0, abs(top)):
                continue
            self.top[key] = lo / sc if top is None else max(top, lo / sc)
            out.append((idx, val, lo))
        return out


class ChainOracle:
    """Per-chain recourse of every path with the first stage fixed, by :mod:`peakplan.recourse`.

    A chain ``g`` is a segment on resources of its own or segments sharing one resource
    (:func:`chain_structure`). For chain ``g`` and a multiplier ``lam >= 0`` on the window
    service it returns, per cluster ``k`` of paths, the Lagrangian value ``Lambda_gk(y; lam) = (1/S) sum_{s in k}
    Q_sg(y; lam) - lam sum_{s in k} w_s served_sg`` (``w_s = 1 / demand in the window`` of
    path ``s``, 0 for paths without window demand; ``Q_sg(y; lam)`` the chain cost with the
    loss weight of window arrivals raised by ``lam S w_s``), its subgradient in the levels of
    the chain's levers, the weighted window service and the true mean cost. A segment's
    ``J`` resources enter the chain in series: capacity and flex caps ``[S, T, J]`` in units
    of the segment. Segments sharing a resource enter as streams of arrivals ``[S, T, M]``
    counted in units of the resource (demand times load; loss weights and backlog cost per
    unit of it); lost and served units are reported in units of the segments. A chain with
    storable segments (:mod:`peakplan.recourse_stock`; alone, or sharing a resource with
    others, storable or not) has one more first-stage input per storable segment, its planned
    builds ``pb[:, g]``: row ``L + k`` of the ``levels`` the oracle takes (``k``-th storable
    segment in :func:`_stock_segments` order), last among the chain's levers; its duals ``p``
    carry the build caps' duals as the last columns.
    """

    def __init__(self, pack: PlanningPack, draws: mc.Draws, structure: dict, clusters: int = 1):
        self.pack = pack
        S, T, _ = draws.demand.shape
        G = len(structure["resources"])
        self.S, self.T, self.G = S, T, G
        self.res = structure["resources"]
        self.load = structure["loads"]
        self.segs = structure["segments"]
        self.sl = [np.asarray(x, float) for x in structure["stream_loads"]]  # capacity units per unit of each stream
        self.window = pack.arr("service_window").astype(bool)
        d_win = draws.demand[:, self.window, :].sum(axis=(1, 2))
        self.w = np.where(d_win > 0, 1.0 / np.where(d_win > 0, d_win, 1.0), 0.0)
        self.n_ok = int((d_win > 0).sum())
        K = int(max(1, min(clusters, S)))
        self.starts = np.linspace(0, S, K + 1).astype(int)[:-1]
        self.K = K
        self.demand = [np.ascontiguousarray(draws.demand[:, :, self.segs[g]] * self.sl[g]) for g in range(G)]
        self.factor = [np.ascontiguousarray(draws.capacity_factor[:, :, self.res[g]] / self.load[g]) for g in range(G)]
        self.dwin_path = np.stack([self.w * draws.demand[:, self.window][:, :, self.segs[g]].sum(axis=(1, 2))
                                   for g in range(G)])  # [G, S], in units of the segments
        self.dwin = np.add.reduceat(self.dwin_path, self.starts, axis=1)  # [G, K]
        levers = pack.levers
        self.sign = np.array([1.0 if lv.kind == "reserve" else -1.0 if lv.kind == "release" else 0.0 for lv in levers])
        # per chain: its capacity levers and the position of their resource; one flex lever (or -1) per resource
        self.cap_levers, self.cap_pos, self.flex_lever = [], [], []
        for g in range(G):
            pos = {int(r): j for j, r in enumerate(self.res[g])}
            cap = [(i, pos[lv.resource]) for i, lv in enumerate(levers)
                   if lv.resource in pos and lv.kind in ("reserve", "release")]
            self.cap_levers.append(np.array([i for i, _ in cap], int))
            self.cap_pos.append(np.array([j for _, j in cap], int))
            self.flex_lever.append(np.array([next((i for i, lv in enumerate(levers) if lv.resource == r
                                                   and lv.kind == "flex"), -1) for r in self.res[g]], int))
        self.flex_on = [np.flatnonzero(f >= 0) for f in self.flex_lever]
        # storable segments (alone on their resources, or among the streams sharing one): per chain, their
        # streams and the rows of their planned builds after the L levers (in the order of stock_segments)
        storable = pack.arr("storable").astype(bool)
        self.stock_segments = _stock_segments(pack, structure)
        self.stock_m = [np.flatnonzero(storable[self.segs[g]]) for g in range(G)]
        first_row = np.cumsum([0] + [len(m) for m in self.stock_m])
        self.stock_rows = [pack.L + np.arange(first_row[g], first_row[g + 1]) for g in range(G)]
        self.levers_of = [np.concatenate([self.cap_levers[g], self.flex_lever[g][self.flex_on[g]],
                                          self.stock_rows[g]]).astype(int) for g in range(G)]
        self.room, self.hold, self.stock0 = (pack.arr(k).astype(float) for k in ("storage_cap", "holding_cost",
                                                                                   "initial_stock"))
        self.unit = [np.array([levers[i].unit_cost * a if i >= 0 else 0.0
                               for i, a in zip(self.flex_lever[g], self.load[g], strict=True)]) for g in range(G)]
        self.base = np.asarray(pack.base_capacity, float)
        # per chain: each stream's penalty and the backlog cost, per unit of capacity
        self.pen = [np.asarray(pack.penalty, float)[self.segs[g]] / self.sl[g] for g in range(G)]
        self.bc = [float((pack.arr("backlog_cost")[self.segs[g]] / self.sl[g]).max()) for g in range(G)]
        self.max_delay = int(pack.max_delay)
        # weight of each arrival's lost units in the path's lost window units (CVaR targets): lost
        # units of window arrivals, and everything still waiting at the horizon (the last max_delay
        # periods' arrivals, as in define_second_stage)
        self.lost_w = self.window.astype(float)
        if self.max_delay > 0:
            self.lost_w[-self.max_delay:] = 1.0
        # prices of the chains: ``wc`` on the true cost's penalties, backlog and flex, plus ``mu``
        # more on flex spend (a budget's multiplier); wc = 0, mu = 1 prices flex spend alone
        self.wc, self.mu = 1.0, 0.0
        self.calls = 0
        self.fallbacks = 0
        self.warm = {}  # per storable chain: each path's last flows and prices (recourse_stock.WarmStarts)
        self.stock_solves = [0, 0]  # storable chains solved, of them from a warm start
        self.deadline = float("inf")
        """Every call checks this ``time.perf_counter()`` reading first (:class:`peakplan.optimize._OutOfTime`)."""

    def prices(self, wc: float, mu) -> None:
        """Price the chains' objective ``wc * true cost + mu * flex spend`` from now on (``mu`` a number or per path)."""
        self.wc = float(wc)
        self.mu = float(mu) if np.ndim(mu) == 0 else np.asarray(mu, float)

    def _unit(self, g: int, idx) -> np.ndarray:
        """Flex prices of chain g on the paths ``idx`` under :meth:`prices`: ``[J]`` or, with a price per path, ``[n, J]``."""
        if np.ndim(self.mu) == 0:
            return self.unit[g] * (self.wc + self.mu)
        mu = self.mu if idx is None else self.mu[idx]
        return self.unit[g][None, :] * (self.wc + mu[:, None])

    def mu_k(self) -> np.ndarray:
        """The flex-spend multiplier of each cluster (``[K]``; constant within a cluster by construction)."""
        return np.full(self.K, self.mu) if np.ndim(self.mu) == 0 else self.mu[self.starts]

    def _true(self, g: int, out: dict, idx) -> tuple[np.ndarray, np.ndarray]:
        """Per chain: the flex spend and the true cost (penalties, backlog, flex at list price, holding) of the
        flows ``out``."""
        spend = (out["flex"] @ self.unit[g]).sum(axis=1)
        true = out["loss"].sum(axis=1) @ self.pen[g] + spend + self.bc[g] * out["backlog"]
        if len(self.stock_m[g]):
            from peakplan.recourse_stock import STOCK_FIRST

            true = true + out["stock"] @ self.hold[self.segs[g][self.stock_m[g]]] - STOCK_FIRST * out["take"].sum(axis=1)
        return spend, true

    def _inputs(self, g: int, levels: np.ndarray, idx) -> tuple:
        """Capacity ``[n, T, J]``, flex caps ``[n, T, J]`` and flex prices ``[J]`` of chain g on the paths ``idx``."""
        res, cap_idx, pos = self.res[g], self.cap_levers[g], self.cap_pos[g]
        level = self.base[:, res].copy()  # [T, J]
        np.add.at(level.T, pos, self.sign[cap_idx, None] * levels[cap_idx])
        factor = self.factor[g] if idx is None else self.factor[g][idx]
        c = np.maximum(factor * level[None], 0.0)
        F = np.zeros((1, self.T, len(res)))
        on = self.flex_on[g]
        F[0][:, on] = (np.maximum(levels[self.flex_lever[g][on]], 0.0) / self.load[g][on, None]).T
        return c, np.broadcast_to(F, c.shape), self._unit(g, idx)

    def _warm(self, g: int, K: int, P: int, M2: int, J: int):
        """Chain ``g``'s warm starts, made on first use while all of them together stay under
        :data:`WARM_BYTES` (else None: every solve from zero flows)."""
        from peakplan.recourse_stock import WarmStarts

        if g not in self.warm:
            held = sum(w.nbytes for w in self.warm.values() if w is not None)
            fits = held + WarmStarts.size(self.S, self.T, K, P, M2, J) <= WARM_BYTES
            self.warm[g] = WarmStarts(self.S, self.T, K, P, M2, J) if fits else None
        return self.warm[g]

    def adopt(self, warm: dict) -> None:
        """Take the warm starts ``warm`` (chain -> WarmStarts or None) of a solve on the first paths of these."""
        for g, w in warm.items():
            mine = None if w is None else self._warm(g, *w.key[1:])
            if mine is not None and w.key == mine.key and len(w.have) <= len(mine.have):
                n = len(w.have)
                mine.flows[:n], mine.prices[:n], mine.have[:n] = w.flows, w.prices, w.have

    def _solve(self, g: int, d, c, F, u, bc, L, levels, wc: float, idx=None) -> dict:
        """Chain ``g``'s LPs: ``d``, ``L`` ``[n, T, M]``; the DP for one stream and ``max_delay`` 0 or 1, else
        successive shortest paths; a storable chain's min-cost flow, its holding cost priced ``wc``, with its
        build caps' duals as the last columns of ``p`` (the storable streams' builds, room and stock counted in
        units of capacity inside, ``stock`` and ``take`` reported ``[n, P]`` in units of their segments).
        ``loss`` comes back ``[n, T, M]`` in units of capacity."""
        from peakplan.recourse import solve_chains, solve_flows

        if len(self.stock_m[g]):
            from peakplan.recourse_stock import STOCK_FIRST, solve_stock_chains

            m = self.stock_m[g]
            k, a = self.segs[g][m], self.sl[g][m]  # a unit of a storable segment takes a of capacity
            rest = [i for i in range(d.shape[2]) if i not in m]  # the streams that cannot be stored
            out = solve_stock_chains(d[:, :, m], c, F, u, bc, L[:, :, m], self.max_delay,
                                     a * np.maximum(levels[self.stock_rows[g]], 0.0).T, a * self.room[k],
                                     a * self.stock0[k], wc * self.hold[k] / a, wc * STOCK_FIRST / a,
                                     d2=d[:, :, rest] if rest else None, L2=L[:, :, rest] if rest else None,
                                     warm=self._warm(g, self.max_delay, len(m), len(rest), c.shape[2]), slots=idx)
            self.stock_solves[0] += len(d)
            self.stock_solves[1] += out["warm"]
            loss = np.zeros(d.shape)
            loss[:, :, m] = out["loss"]
            if rest:
                loss[:, :, rest] = out["loss2"]
            out["loss"] = loss
            out["stock"], out["take"] = out["stock"] / a, out["take"] / a
            out["p"] = np.concatenate([out["p"], a * out["pb_dual"]], axis=2)
            return out
        if d.shape[2] == 1 and self.max_delay <= 1:
            out = solve_chains(d[:, :, 0], c, F, u, bc, L[:, :, 0], self.max_delay)
            out["loss"] = out["loss"][:, :, None]
            return out
        return solve_flows(d, c, F, u, bc, L, self.max_delay)

    def _lost(self, g: int, loss: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Per chain, the lost units ``loss`` ``[n, T, M]`` (units of capacity) in units of the segments, weighted
        by arrival ``weight`` ``[T]``."""
        return (loss @ (1.0 / self.sl[g])) @ weight

    def _grad(self, g: int, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        """``[K, nlev, T]``: per cluster, the sums of dQ/d(levels of g's levers) / S, from duals ``[S, T, J]``
        (``J + P`` for a chain of ``P`` storable segments: their build caps' last)."""
        S, T = self.S, self.T
        cap_idx, pos, on = self.cap_levers[g], self.cap_pos[g], self.flex_on[g]
        grad = np.zeros((self.K, len(self.levers_of[g]), T))
        J, P = len(self.res[g]), len(self.stock_m[g])
        if P:
            grad[:, -P:] = -np.moveaxis(np.add.reduceat(p[:, :, J:], self.starts, axis=0), 2, 1) / S
            p = p[:, :, :J]
        if len(cap_idx):
            gp = -np.add.reduceat(p * self.factor[g], self.starts, axis=0) / S  # [K, T, J]: d/d(capacity level)
            grad[:, :len(cap_idx)] = self.sign[cap_idx][None, :, None] * np.moveaxis(gp[:, :, pos], 2, 1)
        if len(on):
            gq = -np.add.reduceat(q[:, :, on], self.starts, axis=0) / (S * self.load[g][on])  # [K, T, nf]
            grad[:, len(cap_idx):len(cap_idx) + len(on)] = np.moveaxis(gq, 2, 1)
        return grad

    def chains(self, g: int, levels: np.ndarray, nu: np.ndarray, idx: np.ndarray,
               feasibility: bool = False) -> dict:
        """Segment ``g``'s chains of the paths ``idx``, lost window units priced ``nu`` each (per path).

        Returns per path: ``q`` (the priced objective, see :meth:`prices`, with the lost-unit
        price), ``lost`` (lost window units), ``cost`` (the priced objective without it),
        ``spend`` and ``true`` (flex spend and true cost of the flows), and the duals ``p``,
        ``qf`` (``[n, T, J]``). ``feasibility=True`` prices nothing but lost window units (flex
        and backlog free): ``q = lost`` is the fewest lost window units the plan allows.
        """
        _check_time(self.deadline)
        n = len(idx)
        c, F, u = self._inputs(g, levels, idx)
        per = 1.0 / self.sl[g][None, None, :]  # a lost unit of capacity is this many units of the segment
        if feasibility:
            L, u, bc = np.broadcast_to(self.lost_w[None, :, None] * per, (n, self.T, len(self.sl[g]))), 0.0, 0.0
        else:
            L = self.wc * self.pen[g][None, None, :] + nu[:, None, None] * self.lost_w[None, :, None] * per
            bc = self.wc * self.bc[g]
        out = self._solve(g, self.demand[g][idx], c, F, u, bc, L, levels, 0.0 if feasibility else self.wc, idx)
        self.calls += n / self.S
        self.fallbacks += out["fallback"]
        lost = self._lost(g, out["loss"], self.lost_w)
        cost = out["cost"] if feasibility else out["cost"] - nu * lost
        spend, true = self._true(g, out, idx)
        return {"q": out["cost"], "lost": lost, "cost": cost, "spend": spend, "true": true,
                "p": out["p"], "qf": out["q"]}

    def chain_grad(self, g: int, p: np.ndarray, qf: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Per chain ``idx``, dQ/d(levels of g's levers) from its duals: ``[n, nlev, T]``."""
        cap_idx, pos, on = self.cap_levers[g], self.cap_pos[g], self.flex_on[g]
        grad = np.zeros((len(idx), len(self.levers_of[g]), self.T))
        J, P = len(self.res[g]), len(self.stock_m[g])
        if P:
            grad[:, -P:] = -np.moveaxis(p[:, :, J:], 2, 1)
            p = p[:, :, :J]
        if len(cap_idx):
            gp = -(p * self.factor[g][idx])[:, :, pos]  # [n, T, ncap]
            grad[:, :len(cap_idx)] = self.sign[cap_idx][None, :, None] * np.moveaxis(gp, 2, 1)
        if len(on):
            grad[:, len(cap_idx):len(cap_idx) + len(on)] = np.moveaxis(-qf[:, :, on] / self.load[g][on], 2, 1)
        return grad

    def path_grad(self, g: int, p: np.ndarray, qf: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Per-(cluster) sums over the paths ``idx`` of dQ/d(levels of g's levers), divided by S: ``[K, nlev, T]``."""
        shape = (self.S, *p.shape[1:])
        full_p, full_q = np.zeros(shape), np.zeros(shape)
        full_p[idx], full_q[idx] = p, qf
        return self._grad(g, full_p, full_q)

    def lam_scale(self) -> float:
        """A multiplier of the order of the penalty (where the search starts)."""
        return float(np.max(self.pack.penalty)) * float(np.mean(1.0 / self.w[self.w > 0])) / self.S

    def evaluate(self, g: int, levels: np.ndarray, lam: float, feasibility: bool = False) -> dict:
        """Segment ``g`` at ``levels``; ``feasibility=True`` minimises only the weighted window loss.

        With ``feasibility`` the chains price nothing but lost window units (weight
        ``S w_s``; flex and backlog free): ``cost = dwin - most servable`` per cluster, and
        ``grad`` is its subgradient. Otherwise ``cost`` is the priced objective (see
        :meth:`prices`) and ``spend`` and ``true`` the flex spend and true cost, per cluster
        and divided by S.
        """
        _check_time(self.deadline)
        S = self.S
        c, F, u = self._inputs(g, levels, None)
        per = 1.0 / self.sl[g][None, None, :]
        # lost window units priced lam S w_s more (S w_s with feasibility): per arrival ``x w_s window_t per_m``
        x = 1.0 if feasibility else lam
        L = self.wc * self.pen[g][None, None, :] if not feasibility else np.zeros((1, 1, len(self.sl[g])))
        if x > 0:
            L = L + (x * S) * self.w[:, None, None] * self.window[None, :, None] * per
        if feasibility:
            u, bc = 0.0, 0.0
        else:
            bc = self.wc * self.bc[g]
        out = self._solve(g, self.demand[g], c, F, u, bc, np.ascontiguousarray(np.broadcast_to(
            L, self.demand[g].shape)), levels, 0.0 if feasibility else self.wc)
        self.calls += 1
        self.fallbacks += out["fallback"]
        k0 = self.starts
        lost_win = self.w * self._lost(g, out["loss"], self.window.astype(float))  # weighted lost window units
        served_path = self.dwin_path[g] - lost_win
        served = np.add.reduceat(served_path, k0)
        cost_path = out["cost"]
        lag = np.add.reduceat(cost_path, k0) / S - lam * self.dwin[g]
        true = lag.copy() if feasibility else np.add.reduceat(cost_path - (x * S) * lost_win, k0) / S
        grad = self._grad(g, out["p"], out["q"])
        spend, true_path = self._true(g, out, None)
        return {"g": g, "lam": lam, "lag": lag, "served": served, "cost": true, "grad": grad,
                "spend": np.add.reduceat(spend, k0) / S, "true": np.add.reduceat(true_path, k0) / S,
                "wc": self.wc, "mu": self.mu_k()}


#: the budget multiplier's search stops within this share of the current gap ``UB - LB`` (and
#: never looser than the solve's own accuracy): an inexact oracle (de Oliveira & Sagastizabal 2014)
#: whose cuts are still valid and whose second stage is still feasible. Budget case, S=1,000:
#: plan B 45 -> 25 s, C 51 -> 30 s. Only this outer search: loosening the per-chain price
#: searches too made plan C stall (its lower bound stopped rising: shallower cuts).
INEXACT = 0.1


def _one(value) -> np.ndarray:
    """``value`` as a one-item object array: the payload of a search over a single price."""
    out = np.empty(1, object)
    out[0] = value
    return out


def _concave_search(at, x0: np.ndarray, tol: np.ndarray, atol: float, lo0: dict, *, cap: float = np.inf,
                    max_bracket: int = 60, max_steps: int = 40, ends: tuple | None = None) -> dict:
    """Maximise concave functions ``h_i(x)``, ``x >= 0``, of several items ``i`` at once.

    Each ``h_i`` is a Lagrangian in a price ``x`` on one constraint (a service target, a
    chain's lost-unit allowance, a budget): its supergradient ``slope_i(x)`` is the
    constraint's use minus its right-hand side, positive while the price is too low, and the
    item *fits* at ``x`` when ``slope_i(x) <= tol_i``. ``lo0`` holds every item's evaluation
    at ``x = 0``, where none fits. The search raises each price from ``x0`` by 8x until it
    fits (a price that reaches ``cap`` without fitting gets ``hi["x"] = inf``; one that never
    fits keeps ``nan``), then intersects the tangents at the bracket's ends until the bound
    they give is within ``atol`` of the best value.

    ``at(x, sel)`` evaluates the items ``sel`` at prices ``x`` and returns a dict of arrays
    indexed like ``sel``: ``h``, ``slope`` and any payload. Returns the bracket's ends ``lo``
    (does not fit) and ``hi`` (fits), and ``best``, the evaluation with the largest ``h``
    (all with their prices ``x``); ``ends`` limits the payload kept at the ends.
    """
    keys = tuple(lo0) if ends is None else ("h", "slope", *ends)
    n = len(x0)
    lo = {"x": np.zeros(n), **{k: lo0[k].copy() for k in keys}}
    hi = {"x": np.full(n, np.nan), **{k: lo0[k].copy() for k in keys}}
    best = {"x": np.zeros(n), **{k: v.copy() for k, v in lo0.items()}}

    def record(sel, x, r):
        fits = r["slope"] <= tol[sel]
        for side, mask in ((hi, fits), (lo, ~fits)):
            side["x"][sel[mask]] = x[mask]
            for k in keys:
                side[k][sel[mask]] = r[k][mask]
        better = r["h"] > best["h"][sel]
        best["x"][sel[better]] = x[better]
        for k, v in r.items():
            best[k][sel[better]] = v[better]
        return fits

    trial = np.minimum(np.asarray(x0, float), cap)
    for _ in range(max_bracket):  # bracket: raise each price until its item fits
        sel = np.flatnonzero(np.isnan(hi["x"]))
        if not len(sel):
            break
        fits = record(sel, trial[sel], at(trial[sel], sel))
        out = sel[~fits]
        hi["x"][out[trial[out] >= cap]] = np.inf  # no upper end below the cap
        trial[out] = np.minimum(trial[out] * 8.0, cap)
    for _ in range(max_steps):  # tangent intersections inside each bracket
        span = lo["slope"] - hi["slope"]
        with np.errstate(divide="ignore", invalid="ignore"):
            x = (hi["h"] - lo["h"] + lo["slope"] * lo["x"] - hi["slope"] * hi["x"]) / span
            top = lo["h"] + lo["slope"] * (x - lo["x"])
        todo = (np.isfinite(hi["x"]) & (span > 0) & (top - np.maximum(lo["h"], hi["h"]) > atol)
                & (lo["x"] < x) & (x < hi["x"]))
        sel = np.flatnonzero(todo)
        if not len(sel):
            break
        record(sel, x[sel], at(x[sel], sel))
    return {"lo": lo, "hi": hi, "best": best}


def _recourse_value(oracle: ChainOracle, levels: np.ndarray, need: float | None, lam0: float, atol: float,
                    max_steps: int = 40) -> dict:
    """Exact recourse cost at ``levels`` under the coupled target ``sum served >= need`` (or none).

    One multiplier for all segments: ``h(lam) = sum_gk Lambda_gk(y; lam) + lam * need`` is
    concave; its maximum is the constrained recourse cost (LP duality). The search brackets
    the maximum from the last multiplier, then intersects tangents until the bound they give
    is within ``atol``. ``value`` is the cost of a feasible second stage (the bracket's
    convex combination; ``inf`` when the target cannot be met at ``levels``) under the
    oracle's prices (:meth:`ChainOracle.prices`), ``spend`` and ``true`` that second
    stage's flex spend and true cost, ``evals`` the evaluations whose cuts the master
    receives and ``feasibility`` the segments' most-servable evaluations when the target is
    out of reach.
    """
    G = oracle.G
    e0 = [oracle.evaluate(g, levels, 0.0) for g in range(G)]

    def sums(es):
        return float(sum(e["spend"].sum() for e in es)), float(sum(e["true"].sum() for e in es))

    if need is None:
        return {"value": float(sum(e["cost"].sum() for e in e0)), "lam": 0.0, "evals": e0, "feasibility": None,
                **dict(zip(("spend", "true"), sums(e0), strict=True))}
    need_ok = need - 1e-9 * max(1.0, abs(need))

    def total(es):
        lam = es[0]["lam"]
        return (float(sum(e["lag"].sum() for e in es)) + lam * need, float(sum(e["served"].sum() for e in es)),
                float(sum(e["cost"].sum() for e in es)))

    if total(e0)[1] >= need_ok:
        return {"value": total(e0)[2], "lam": 0.0, "evals": e0, "feasibility": None,
                **dict(zip(("spend", "true"), sums(e0), strict=True))}
    fz = [oracle.evaluate(g, levels, 0.0, feasibility=True) for g in range(G)]
    if float(sum((oracle.dwin[g] - fz[g]["cost"]).sum() for g in range(G))) < need_ok:
        return {"value": np.inf, "lam": lam0, "evals": e0, "feasibility": fz, "spend": np.inf, "true": np.inf}
    f0, s0, c0 = total(e0)

    def at(x, sel):
        es = [oracle.evaluate(g, levels, float(x[0])) for g in range(G)]
        f, sv, c = total(es)
        return {"h": np.array([f]), "slope": np.array([need - sv]), "c": np.array([c]), "es": _one(es)}

    lo0 = {"h": np.array([f0]), "slope": np.array([need - s0]), "c": np.array([c0]), "es": _one(e0)}
    out = _concave_search(at, np.array([lam0 if lam0 > 0 else oracle.lam_scale()]), np.array([need - need_ok]),
                          atol, lo0, max_steps=max_steps)
    lo, hi = out["lo"], out["hi"]
    if not np.isfinite(hi["x"][0]):
        raise SolverError("recourse: the service target is reachable but no finite multiplier reaches it")
    s_lo, s_hi = need - float(lo["slope"][0]), need - float(hi["slope"][0])
    span = s_hi - s_lo
    alpha = 1.0 if span <= 0 else min(1.0, max(0.0, (need - s_lo) / span))
    es_lo, es_hi = lo["es"][0], hi["es"][0]
    evals = es_hi + (es_lo if es_lo is not e0 else [])
    (sp_hi, tr_hi), (sp_lo, tr_lo) = sums(es_hi), sums(es_lo)
    return {"value": alpha * float(hi["c"][0]) + (1 - alpha) * float(lo["c"][0]), "lam": float(hi["x"][0]),
            "evals": e0 + evals, "feasibility": fz,
            "spend": alpha * sp_hi + (1 - alpha) * sp_lo, "true": alpha * tr_hi + (1 - alpha) * tr_lo}


def _separate_lost(oracle: ChainOracle, g: int, levels: np.ndarray, ell: np.ndarray, nu0: np.ndarray,
                   atol: float, max_steps: int = 40) -> dict:
    """Per chain of segment ``g``, the deepest cut at the master's lost-unit allowance ``ell`` (``[S]``).

    ``phi_s(nu) = Q_s(y; nu) - nu ell_s`` (``Q_s`` the chain's cost with lost window units
    priced ``nu``) is concave with slope ``lost_s(nu) - ell_s``; its maximum is the chain's
    cheapest cost with at most ``ell_s`` lost window units (LP duality). All chains are
    searched at once: bracket from the last price, then intersect tangents. Chains that
    cannot keep to ``ell_s`` even at any price get a feasibility cut instead
    (``ell_s >= fewest lost_s(y)``). Returns, per path: the price ``nu``, ``Q`` and duals
    at it, the cheapest true cost within ``ell`` (``inf`` where infeasible), and the
    feasibility data; ``spend`` and ``true`` are the flex spend and true cost of the second
    stage whose priced cost is ``ub`` (under :meth:`ChainOracle.prices`).
    """
    S = oracle.S
    every = np.arange(S)
    tol_l = 1e-7 * np.maximum(1.0, np.abs(ell))  # HiGHS's primal feasibility tolerance
    e = oracle.chains(g, levels, np.zeros(S), every)
    best = {"nu": np.zeros(S), "Q": e["q"].copy(), "p": e["p"].copy(), "qf": e["qf"].copy()}
    ub, spend, true = e["cost"].copy(), e["spend"].copy(), e["true"].copy()
    active = np.flatnonzero(e["lost"] > ell + tol_l)
    out = {"best": best, "ub": ub, "spend": spend, "true": true, "infeasible": np.zeros(S, bool), "fz": None,
           "cost0": e["cost"], "lost0": e["lost"], "spend0": e["spend"], "true0": e["true"]}
    if not len(active):
        return out
    fz = oracle.chains(g, levels, np.zeros(len(active)), active, feasibility=True)
    bad = fz["lost"] > ell[active] + tol_l[active]
    if bad.any():
        out["infeasible"][active[bad]] = True
        ub[active[bad]] = spend[active[bad]] = true[active[bad]] = np.inf
        out["fz"] = {"idx": active[bad], "lost": fz["lost"][bad], "p": fz["p"][bad], "qf": fz["qf"][bad]}
    idx = active[~bad]
    if not len(idx):
        return out
    el = ell[idx]
    fields = ("q", "lost", "cost", "spend", "true")

    def at(x, sel):
        r = oracle.chains(g, levels, x, idx[sel])
        return {"h": r["q"] - x * el[sel], "slope": r["lost"] - el[sel], "p": r["p"], "qf": r["qf"],
                **{f: r[f] for f in fields}}

    lo0 = {"h": e["q"][idx], "slope": e["lost"][idx] - el, "p": e["p"][idx], "qf": e["qf"][idx],
           **{f: e[f][idx] for f in fields}}
    nu = np.where(nu0[idx] > 0, nu0[idx], float(np.max(oracle.pack.penalty[oracle.segs[g]])))
    found = _concave_search(at, nu, tol_l[idx], atol, lo0, max_steps=max_steps, ends=fields)
    lo, hi, top = found["lo"], found["hi"], found["best"]
    if not np.isfinite(hi["x"]).all():
        raise SolverError("recourse: a lost-unit allowance is reachable but no finite price reaches it")
    best["nu"][idx], best["Q"][idx], best["p"][idx], best["qf"][idx] = top["x"], top["q"], top["p"], top["qf"]
    span = lo["lost"] - hi["lost"]
    alpha = np.where(span > 0, np.clip((lo["lost"] - el) / np.where(span > 0, span, 1.0), 0.0, 1.0), 1.0)
    ub[idx] = alpha * hi["cost"] + (1 - alpha) * lo["cost"]
    spend[idx] = alpha * hi["spend"] + (1 - alpha) * lo["spend"]
    true[idx] = alpha * hi["true"] + (1 - alpha) * lo["true"]
    return out


def _cvar_excess(excess: np.ndarray, level: float) -> float:
    """``min_eta eta + mean((excess - eta)^+) / (1 - level)``: the sample CVaR (Rockafellar-Uryasev) of ``excess``."""
    x = np.sort(np.asarray(excess, float))
    n = len(x)
    tail = np.cumsum(x[::-1])[::-1]  # tail[j] = sum of x[j:]
    above = np.append(tail[1:], 0.0) - x * (n - 1 - np.arange(n))  # sum over i > j of (x_i - x_j)
    return float(np.min(x + above / ((1 - level) * n)))


def _keeps_bound(lost: np.ndarray, kappa: np.ndarray, level: float) -> bool:
    """Whether the paths' lost window units ``lost`` keep to ``CVaR(lost - kappa) <= 0`` (to 1e-9 of the largest allowance)."""
    return _cvar_excess(lost - kappa, level) <= 1e-9 * max(1.0, float(kappa.max(initial=0.0)))


def _uniform_split(oracle: ChainOracle, levels: np.ndarray, kappa: np.ndarray, level: float,
                   steps: int = 12) -> dict | None:
    """A feasible second stage at ``levels`` for a quantile or CVaR target, found without the master's split.

    Every chain's lost window units are priced the same ``nu``, the least (by bracketing, then
    ``steps`` bisections) at which the paths' lost units keep to the Rockafellar-Uryasev bound
    ``CVaR(sum_g lost_sg - kappa_s) <= 0``. Returns that price ``nu``, the mean priced cost
    ``cost``, flex spend ``spend`` and true cost ``true`` of the second stage (under
    :meth:`ChainOracle.prices`) and its lost window units per path ``lost``; None when even the
    fewest lost units break the bound. Not the cheapest split, but a valid upper bound where
    the master's split asks some chain for fewer lost units than it can reach. Twelve steps
    leave ``nu`` within 0.2 % of the least price; four (within 50 %) gave costs loose enough to
    stall plan C of the budget case again (S=50: 132 iterations against 49 with twelve).
    """
    S, G = oracle.S, oracle.G
    every = np.arange(S)
    fewest = sum(oracle.chains(g, levels, np.zeros(S), every, feasibility=True)["lost"] for g in range(G))
    if not _keeps_bound(fewest, kappa, level):
        return None

    def run(nu):
        rs = [oracle.chains(g, levels, np.full(S, nu), every) for g in range(G)]
        return _keeps_bound(sum(r["lost"] for r in rs), kappa, level), rs

    lo, hi, good = 0.0, float(np.max(oracle.pack.penalty)), None
    for _ in range(40):
        fits, rs = run(hi)
        if fits:
            good = rs
            break
        lo, hi = hi, hi * 8.0
    if good is None:
        return None
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        fits, rs = run(mid)
        if fits:
            hi, good = mid, rs
        else:
            lo = mid
    return {"nu": hi, "lost": sum(r["lost"] for r in good),
            **{f: float(sum(r[f].sum() for r in good)) / S for f in ("cost", "spend", "true")}}


def _add_cvar_rows(h, S: int, G: int, kappa: np.ndarray, level: float) -> np.ndarray:
    """Add every chain's lost window units ``ell_sg`` and the Rockafellar-Uryasev rows to the master ``h``.

    As :func:`peakplan.optimize.define_service` states them: ``u_s >= sum_g ell_sg - kappa_s
    - eta``, ``eta + sum_s u_s / ((1 - level) S) <= 0``. Added in bulk through highspy (one
    column per chain: building them through pulp cost seconds at 10,000 paths). Returns the
    column index of ``ell_sg`` (``[S, G]``).
    """
    n0 = h.getNumCol()
    n_ell = S * G
    inf = np.inf
    h.addCols(n_ell + S + 1, np.zeros(n_ell + S + 1), np.concatenate([np.zeros(n_ell + S), [-inf]]),
              np.full(n_ell + S + 1, inf), 0, np.zeros(n_ell + S + 1, np.int32), np.zeros(0, np.int32),
              np.zeros(0))
    ell_idx = n0 + np.arange(n_ell).reshape(S, G)
    u_idx = n0 + n_ell + np.arange(S)
    eta = n0 + n_ell + S
    # row s: u_s - sum_g ell_sg + eta >= -kappa_s
    idx = np.concatenate([u_idx[:, None], ell_idx, np.full((S, 1), eta)], axis=1)
    val = np.concatenate([np.ones((S, 1)), -np.ones((S, G)), np.ones((S, 1))], axis=1)
    h.addRows(S, -np.asarray(kappa, float), np.full(S, inf), S * (G + 2), np.arange(S, dtype=np.int32) * (G + 2),
              idx.ravel().astype(np.int32), val.ravel())
    h.addRow(-inf, 0.0, S + 1, np.append(u_idx, eta).astype(np.int32),
             np.append(np.full(S, 1.0 / ((1 - level) * S)), 1.0))
    return ell_idx


def solve_benders_chains(pack: PlanningPack, draws: mc.Draws, variant: Variant, budget: float | None,
                         structure: dict, *, time_limit: float | None = None, tol: float = 1e-6,
                         max_iter: int = 1000, alpha: float | None = None, clusters: int | None = None,
                         start: np.ndarray | None = None, ramp: int = 1000,
                         trace: list | None = None, reach: bool = False,
                         warm: dict | None = None) -> tuple[SolveResult, dict]:
    """L-shaped method with exact chain subproblems, cuts per (segment, cluster of paths), in-out stabilisation.

    ``warm`` (a dict, filled on return) receives the storable chains' warm starts
    (:class:`peakplan.recourse_stock.WarmStarts` per chain): the full sample's oracle takes those of
    its first eighth of the paths from the sub-sample's solve, whose last point is near the start.

    Master: the first stage (``define_first_stage``, ``define_lever_rules``) and, per
    segment ``g`` and cluster ``k`` of paths, a cost ``theta_gk`` (the cluster's share of
    the mean recourse) and, for an expected fill target, a service share ``sigma_gk`` with
    ``sum sigma_gk >= target * n``; for a quantile or CVaR target, every chain's lost window
    units ``ell_sg`` with the extensive form's Rockafellar-Uryasev rows on ``sum_g ell_sg``,
    and cuts ``theta_gk + (1/S) sum_s nu_s ell_sg >= ...`` whose per-chain prices ``nu_s``
    come from :func:`_separate_lost` (plus feasibility cuts ``ell_sg >= fewest lost``). For an
    expected fill, at a point ``y^k`` the recourse is evaluated exactly
    (:func:`_recourse_value`: one multiplier ``lam`` for the coupled target, found by a
    concave line search), and every evaluation gives cuts valid for all ``y``::

        theta_gk - lam sigma_gk >= Lambda_gk(y^k; lam) + grad_gk (y - y^k)

    Summed over ``(g, k)`` at the search's multiplier they support the recourse value
    function at ``y^k``, so the master's optimum is a lower bound that converges (Kelley);
    where the target is out of reach at ``y^k`` a feasibility cut on the most servable
    window demand is added instead. Query points are in-out combinations ``alpha * core +
    (1 - alpha) * master`` (Ben-Ameur & Neto 2007; Fischetti, Ljubic & Sinnl 2017), the core
    being the best plan so far (``alpha`` 0.9 when a feasible ``start`` is the first core,
    0.5 otherwise: at 10,000 paths, plan B took 7 iterations from the sub-sample's plan at
    0.8 against 11 at 0.5, while a binding CVaR, whose start is infeasible, took 32 at 0.8
    against 15 at 0.5; 0.9 against 0.8, on the series network, plan B at S=10,000: 8
    iterations and 18.8 s against 14 and 35 s); when a query's cuts do not cut off the master's point the
    master's point is evaluated too. LB = master optimum; UB = the cost of a feasible
    second stage at the core (its exact SAA cost for an expected fill; for a CVaR target the
    cheaper of the master's split of lost units and the cost-only second stage when that
    keeps to the bound); stops at ``(UB - LB) / |UB| <= tol``. The objective reported is the
    UB, so the plan never costs more than it says.

    A budget shared with flex spend adds per (segment, cluster) a flex-spend share
    ``phi_gk`` to the master's budget row (made elastic: an excess costs ``big_m`` = 1e3,
    then 1e6 if the best plan still needs one, and an excess at 1e6 means the budget cannot
    be met) and a multiplier ``mu`` on flex spend to the recourse (a concave search, as for
    ``lam``); cuts then read ``theta_gk + mu phi_gk - lam sigma_gk >= ...``.

    ``clusters`` (default 8, or 32 from 5,000 paths, times ``8 // G`` below 8 segments, and
    times 4 where chains are min-cost flows: streams sharing a resource, ``max_delay`` >= 2,
    pre-build) sets how finely the cuts are disaggregated. ``start`` (lever levels) is evaluated first
    and becomes the first core if it is feasible and the best point;
    from ``ramp`` paths on, the start is the solution of the first eighth of the paths
    (solved the same way at ``max(tol, 1e-3)``, in at most a quarter of the time limit; a
    plan it stopped at is a start too), which saves most early iterations.

    ``reach=True`` (a budget shared with flex spend, with a service target) solves the phase-one
    problem instead: the least budget excess, ``min (lever spend + least expected flex spend that
    meets the target - budget)^+``, with the target's cuts at prices ``wc = 0, mu = 1`` (flex spend
    only). Its master optimum is a lower bound on that excess: INFEASIBLE once it is positive,
    OPTIMAL once a point needs no excess. Every coefficient is in units of spend, so it stays well
    scaled where the cost phase's multipliers do not: when the cost phase's master fails (a target
    out of the budget's reach drives the target's multiplier to 1e7 and more next to the excess's
    price) or stops at ``max_iter`` without a plan, this decides whether the budget can be met.
    """
    t0 = time.perf_counter()
    deadline = _deadline(time_limit, t0)
    G = len(structure["resources"])  # chains: segments, or segments sharing a resource
    S = draws.demand.shape[0]
    if reach:
        start, ramp = None, 0
    sub_warm = {}
    if start is None and ramp and ramp <= S:
        sub = mc.Draws(*(getattr(draws, f)[: S // 8] for f in ("demand", "capacity_factor", "late", "event_hit",
                                                                 "disruption_hit")))
        # a quarter of the time limit at most: the full sample needs the rest
        first, _ = solve_benders_chains(pack, sub, variant, budget, structure, tol=max(tol, 1e-3), alpha=alpha,
                                        ramp=ramp, time_limit=None if time_limit is None else
                                        0.25 * max(0.0, deadline - time.perf_counter()), warm=sub_warm)
        if first.status in (SolveStatus.OPTIMAL, SolveStatus.TIME_LIMIT) and np.isfinite(first.objective):
            start = np.vstack([first.levels, first.prebuild[:, _stock_segments(pack, structure)].T])
    # a chain pass is dear where chains are min-cost flows (streams sharing a resource, max_delay 2 and
    # more, pre-build)
    heavy = (pack.max_delay >= 2 or any(len(seg) > 1 for seg in structure["segments"])
             or bool(pack.arr("storable").astype(bool).any()))
    if clusters is None:
        # about 64 cost columns (256 from 5,000 paths), four times that where a chain pass is dear: finer
        # cuts cost master time and save passes (shared network: 7 iterations instead of 10 at S=1,000, 5-6
        # instead of 8-9 at 10,000; on the synthetic network, cheap one-stream DP chains, binding targets
        # took longer)
        clusters = (8 if S < 5000 else 32) * max(1, 8 // G) * (4 if heavy else 1)
    oracle = ChainOracle(pack, draws, structure, clusters)
    oracle.deadline = deadline
    if warm is not None:
        oracle.warm = warm  # filled as the chains are first solved
    oracle.adopt(sub_warm)  # the sub-sample's paths are the first eighth of these
    del sub_warm
    K = oracle.K
    with_budget = budget is not None and any(len(f) for f in oracle.flex_on)
    with_service = variant.service == "expected" and variant.target > 0 and oracle.n_ok > 0
    need = variant.target * oracle.n_ok if with_service else None
    m = Model(prob=pulp.LpProblem(_vname("master", pack.name, variant.name), pulp.LpMinimize), y={}, pb={})
    define_first_stage(m, pack, budget)
    det = define_lever_rules(m, pack)
    theta = {(g, k): m.prob.add_variable(_vname("theta", structure["names"][g], k), lowBound=0)
             for g in range(G) for k in range(K)}
    sigma = {(g, k): m.prob.add_variable(_vname("sigma", structure["names"][g], k), lowBound=0,
                                         upBound=float(oracle.dwin[g, k]))
             for g in range(G) for k in range(K)} if with_service else {}
    phi = {(g, k): m.prob.add_variable(_vname("phi", structure["names"][g], k), lowBound=0)
           for g in range(G) for k in range(K)} if with_budget else {}
    with_cvar = variant.service in ("quantile", "cvar") and variant.target > 0
    if with_cvar:  # R-U CVaR of the paths' lost window units beyond the allowed share, as in define_service
        level = variant.level if variant.service == "quantile" else max(variant.level, 0.95)
        d_win = draws.demand[:, oracle.window, :].sum(axis=(1, 2))
        kappa = (1 - variant.target) * d_win
    base = float((np.asarray(pack.capacity_cost) * pack.base_capacity).sum())
    lever = det["rent"] + det["orders"] - det["saving"]
    tie_vars = [v for (i, _), v in m.y.items() if pack.levers[i].kind == "flex"] + list(m.pb.values())
    m.prob += base + lever + pulp.lpSum(theta.values()) + 1e-6 * pulp.lpSum(tie_vars)
    if with_service:
        m.prob += pulp.lpSum(sigma.values()) >= need, "service_expected"
    excess = None
    if with_budget:
        # the expected flex spend's shares phi_gk count against the budget; the budget is elastic
        # (an excess at price big_m), so that every point has a finite cost and the in-out search a
        # core; big_m goes from 1e3 to 1e6 if the best plan still needs an excess (an exact penalty
        # wherever the budget's multiplier is below it)
        excess = m.prob.add_variable("budget_excess", lowBound=0)
        m.prob += lever + pulp.lpSum(phi.values()) - excess <= budget, "budget"
    elif budget is not None:
        m.prob += lever <= budget, "budget"
    opts = _solver("highs", None)
    opts.createAndConfigureSolver(m.prob)
    opts.buildSolverModel(m.prob)
    h = m.prob.solverModel
    offset = float(m.prob.objective.constant)  # pulp does not pass the constant to HiGHS
    # first-stage rows the oracle sees: the levers' levels, then the storable chains' planned builds
    y_idx = np.array([[m.y[i, t].index for t in range(pack.T)] for i in range(pack.L)]
                     + [[m.pb[t, g].index for t in range(pack.T)] for g in oracle.stock_segments], int)
    n_lev = pack.L
    th_idx = np.array([[theta[g, k].index for k in range(K)] for g in range(G)], int)
    sg_idx = np.array([[sigma[g, k].index for k in range(K)] for g in range(G)], int) if with_service else None
    ph_idx = np.array([[phi[g, k].index for k in range(K)] for g in range(G)], int) if with_budget else None
    ell_idx = _add_cvar_rows(h, S, G, kappa, level) if with_cvar else None
    cost_vec = np.asarray(h.getLp().col_cost_)
    lev_vec, lev_const = _coefficients(lever, len(cost_vec))
    big_m = 1e3
    budget_tol = 1e-9 * max(1.0, abs(budget)) if with_budget else 0.0  # spend this far over the budget still fits
    z_idx = excess.index if with_budget else None
    if with_budget:
        h.changeColCost(z_idx, big_m)
        cost_vec[z_idx] = 0.0  # the excess is priced from the second stage's spend, not the master's column
    if reach:
        if not with_budget or not (with_service or with_cvar):
            raise ValueError("reach=True needs a budget shared with flex spend and a service target")
        n_col = len(cost_vec)
        h.changeColsCost(n_col, np.arange(n_col, dtype=np.int32), np.zeros(n_col))
        h.changeColCost(z_idx, 1.0)  # phase one: the budget's excess alone
        offset = 0.0
        reach_tol = 1e-6 * max(1.0, abs(budget))  # an excess this small is rounding
    orders = m.extra.get("orders", [])
    order_idx = np.array([z.index for z, _ in orders], int)
    inc_idx = np.array([inc.index for _, inc in orders], int)
    lev_cols = [y_idx[oracle.levers_of[g]].ravel() for g in range(G)]
    nu_prev = np.zeros((S, G))
    lam = 0.0
    lam_f, mu_prev = 0.0, 1.0  # the last multipliers of the budget's searches
    ub_spend, ub_over = 0.0, 0.0
    lb, ub, core, it, status, relaxed_obj = -np.inf, np.inf, None, 0, SolveStatus.OPTIMAL, None
    best = None  # the cheapest point so far; the core is that point too, unless it is over the budget
    fixed_orders = not len(orders)
    n_cuts = 0

    def search_atol(share: float = INEXACT) -> float:
        """How close a multiplier search must come to its maximum: ``1e-3 tol |LB|``, or ``share`` of the gap."""
        exact = 1e-3 * tol * max(1.0, abs(lb) if np.isfinite(lb) else 0.0)
        return max(exact, share * (ub - lb)) if np.isfinite(lb) and np.isfinite(ub) else exact

    most_iter = [0]  # the most simplex iterations a master solve has taken

    def master():
        # a warm start that runs to twice the most iterations yet has lost its way (pre-build at
        # S=50 to 1e-7: one ran 11 s to a solve error where a solve from scratch took 0.5 s): stop it there
        h.setOptionValue("simplex_iteration_limit", int(max(10_000, 2 * most_iter[0])))
        try:
            _run_highs(h, deadline)
        finally:
            h.setOptionValue("simplex_iteration_limit", 2**31 - 1)
        st = h.getModelStatus()
        if st != st.__class__.kOptimal:  # numerical trouble on a warm start: solve from scratch
            h.clearSolver()
            _run_highs(h, deadline)
            st = h.getModelStatus()
        most_iter[0] = max(most_iter[0], int(h.getInfo().simplex_iteration_count))
        if st != st.__class__.kOptimal and st != st.__class__.kInfeasible:
            # still unknown (a budget's excess priced at 1e6 next to the cuts): interior point, then simplex again
            h.clearSolver()
            h.setOptionValue("solver", "ipm")
            try:
                _run_highs(h, deadline)
            finally:
                h.setOptionValue("solver", "simplex")
            st = h.getModelStatus()
        if st != st.__class__.kOptimal:
            return None, h.modelStatusToString(st)
        return np.asarray(h.getSolution().col_value), h.getInfo().objective_function_value + offset

    def cut_row(g, gr, cols, coefs):
        """A cut's columns and coefficients: ``cols``/``coefs`` then ``-gr`` on chain g's lever levels."""
        nz = np.flatnonzero(np.abs(gr) > 1e-12)
        return (np.concatenate([np.asarray(cols, int), lev_cols[g][nz]]),
                np.concatenate([np.asarray(coefs, float), -gr[nz]]))

    def priced(g, k, wc, mu):
        """The columns and coefficients a cut's left side starts with under prices ``(wc, mu)``."""
        cols, coefs = [], []
        if wc > 0:
            cols.append(th_idx[g, k])
            coefs.append(wc)
        if mu > 0 and with_budget:
            cols.append(ph_idx[g, k])
            coefs.append(mu)
        return cols, coefs

    def cut_rows(col, res):
        """Cuts ``(index, values, lower)`` from an evaluation at ``col``."""
        rows = []
        for e in res["evals"]:
            g = e["g"]
            yg = col[lev_cols[g]]
            for k in range(K):
                gr = e["grad"][k].ravel()
                cols, coefs = priced(g, k, e["wc"], e["mu"][k])
                if with_service and e["lam"] > 0:
                    cols.append(sg_idx[g, k])
                    coefs.append(-e["lam"])
                idx, val = cut_row(g, gr, cols, coefs)
                rows.append((idx, val, float(e["lag"][k] - gr @ yg)))
        if res["feasibility"] is not None and with_service:
            # per (segment, cluster): sigma_gk <= most servable_gk(y) <= dwin_gk - cost_gk - grad_gk (y - y^k)
            for e in res["feasibility"]:
                g = e["g"]
                yg = col[lev_cols[g]]
                for k in range(K):
                    gr = e["grad"][k].ravel()
                    idx, val = cut_row(g, gr, [sg_idx[g, k]], [-1.0])
                    rows.append((idx, val, float(-(oracle.dwin[g, k] - e["cost"][k] + gr @ yg))))
        return rows

    # only where chains start warm: elsewhere a repeat is exact, and leaving it out changed the master's
    # vertices for the worse (binding CVaR at S=20,000: 6 -> 14 iterations, 29 -> 46 s)
    pool = _CutPool() if len(oracle.stock_segments) else None

    def add_rows(rows):
        """Add cuts ``(index, values, lower)`` to the master in one call, less repeats where chains start warm
        (:class:`_CutPool`); returns how many went in."""
        if pool is not None:
            rows = pool.fresh(rows)
        if not rows:
            return 0
        starts = np.cumsum([0] + [len(idx) for idx, _, _ in rows[:-1]]).astype(np.int32)
        h.addRows(len(rows), np.array([lo for _, _, lo in rows]), np.full(len(rows), np.inf),
                  int(sum(len(idx) for idx, _, _ in rows)), starts,
                  np.concatenate([idx for idx, _, _ in rows]).astype(np.int32),
                  np.concatenate([v for _, v, _ in rows]).astype(float))
        return len(rows)

    def violated(rows, col):
        return any(float(val @ col[idx]) < lo - 1e-9 * max(1.0, abs(lo)) for idx, val, lo in rows)

    def inner_cvar(col, atol):
        """Every chain's cheapest second stage within the master's lost-unit allowances, and its cuts."""
        levels, allow = col[y_idx], np.maximum(col[ell_idx], 0.0)  # HiGHS may return -1e-9 for 0
        wc, mu = oracle.wc, oracle.mu
        rows, total, spend, true = [], 0.0, 0.0, 0.0
        free = np.zeros(3)
        free_lost = np.zeros(S)
        for g in range(G):
            sep = _separate_lost(oracle, g, levels, allow[:, g], nu_prev[:, g], atol)
            b = sep["best"]
            if wc > 0:
                nu_prev[:, g] = b["nu"]
            total += float(sep["ub"].sum()) / S
            spend += float(sep["spend"].sum()) / S
            true += float(sep["true"].sum()) / S
            free += np.array([sep["cost0"].sum(), sep["spend0"].sum(), sep["true0"].sum()]) / S
            free_lost += sep["lost0"]
            grad = oracle.path_grad(g, b["p"], b["qf"], np.arange(S))
            yg = col[lev_cols[g]]
            for k in range(K):
                paths = np.arange(oracle.starts[k], oracle.starts[k + 1] if k + 1 < K else S)
                gr = grad[k].ravel()
                on = paths[b["nu"][paths] > 0]
                cols, coefs = priced(g, k, wc, mu)
                idx, val = cut_row(g, gr, np.append(cols, ell_idx[on, g]), np.append(coefs, b["nu"][on] / S))
                rows.append((idx, val, float(b["Q"][paths].sum() / S - gr @ yg)))
            if sep["fz"] is not None:  # ell_sg >= fewest lost_sg(y), for each chain that missed
                fz = sep["fz"]
                gfz = oracle.chain_grad(g, fz["p"], fz["qf"], fz["idx"])
                for i, s_ in enumerate(fz["idx"]):
                    gr = gfz[i].ravel()
                    idx, val = cut_row(g, gr, [ell_idx[s_, g]], [1.0])
                    rows.append((idx, val, float(fz["lost"][i] - gr @ yg)))
        if free[0] < total and _keeps_bound(free_lost, kappa, level):
            total, spend, true = free  # the cheapest second stage already keeps to the bound
        elif not np.isfinite(total):
            # some chain cannot keep to the master's split (all-or-nothing over S x G chains): a split with
            # one price for all gives the point a finite cost. Without it a best plan could stay the best
            # for good, every in-out query near it out of reach (budget case, plan B, seed 2: no progress
            # in 240 s; with it 45 s)
            alt = _uniform_split(oracle, levels, kappa, level)
            if alt is not None:
                total, spend, true = alt["cost"], alt["spend"], alt["true"]
        return {"rows": rows, "obj": total, "spend": spend, "true": true}

    def inner(col, wc, mu, atol=None):
        """The recourse at ``col`` priced ``wc * true cost + mu * flex spend`` (:meth:`ChainOracle.prices`)."""
        nonlocal lam, lam_f
        if atol is None:
            atol = search_atol(0.0)
        oracle.prices(wc, mu)
        try:
            if with_cvar:
                return inner_cvar(col, atol / (S * G))
            res = _recourse_value(oracle, col[y_idx], need, lam if wc > 0 else lam_f, atol)
            if np.isfinite(res["value"]):
                if wc > 0:
                    lam = res["lam"]
                else:
                    lam_f = res["lam"]
            return {"rows": cut_rows(col, res), "obj": res["value"], "spend": res["spend"], "true": res["true"]}
        finally:
            oracle.prices(1.0, 0.0)

    path_k = np.repeat(np.arange(K), np.diff(np.append(oracle.starts, S)))  # the cluster of each path
    every = np.arange(S)

    def separate_budget(col):
        """Per (segment, cluster), the deepest cut in ``mu`` at the point's flex-spend share ``phi_gk``.

        The multiplier found for the budget as a whole supports the recourse where the master
        splits the spend as the second stage does; a master that shifts ``phi`` between
        clusters is cut off only by cuts at each cluster's own ``mu_gk``: the maximum of the
        concave ``h_gk(mu) = Lambda_gk(y; lam or nu, mu) - mu phi_gk`` (the other prices fixed
        at their last values), bracketed and then tangent-intersected for all clusters at once.
        """
        levels, rows = col[y_idx], []
        atol = search_atol(0.0) / (G * K)

        def one(g):
            """Chain g's cuts, appended to ``rows``."""
            phi = col[ph_idx[g]]
            nu = nu_prev[:, g].copy() if with_cvar else None

            def at(mu):
                oracle.prices(1.0, mu[path_k])
                try:
                    if with_cvar:
                        r = oracle.chains(g, levels, nu, every)
                        val = np.add.reduceat(r["q"], oracle.starts) / S
                        return val, np.add.reduceat(r["spend"], oracle.starts) / S, \
                            oracle.path_grad(g, r["p"], r["qf"], every)
                    e = oracle.evaluate(g, levels, lam)
                    return e["lag"], e["spend"], e["grad"]
                finally:
                    oracle.prices(1.0, 0.0)

            val, spend, grad = at(np.zeros(K))
            over = np.flatnonzero(spend > phi + budget_tol)
            if not len(over):
                return

            def at_over(x, sel):
                mu = np.zeros(K)
                mu[over[sel]] = x
                v, sp, gr = at(mu)
                c = over[sel]
                return {"h": v[c] - x * phi[c], "slope": sp[c] - phi[c], "val": v[c], "grad": gr[c]}

            lo0 = {"h": val[over], "slope": spend[over] - phi[over], "val": val[over], "grad": grad[over]}
            top = _concave_search(at_over, np.full(len(over), mu_prev), np.full(len(over), budget_tol), atol, lo0,
                                  cap=big_m, max_bracket=30, max_steps=20, ends=())["best"]
            yg = col[lev_cols[g]]
            for j in np.flatnonzero(top["x"] > 0):
                k = over[j]
                gr = top["grad"][j].ravel()
                cols, coefs = priced(g, k, 1.0, top["x"][j])
                if with_cvar:
                    paths = np.flatnonzero(path_k == k)
                    on = paths[nu[paths] > 0]
                    cols, coefs = list(np.append(cols, ell_idx[on, g])), list(np.append(coefs, nu[on] / S))
                elif with_service and lam > 0:
                    cols.append(sg_idx[g, k])
                    coefs.append(-lam)
                idx, v = cut_row(g, gr, cols, coefs)
                rows.append((idx, v, float(top["val"][j] - gr @ yg)))

        for g in range(G):
            one(g)
        return rows

    def evaluate(col):
        """Cuts at ``col``; the cost of a second stage there (``inf`` if none), its flex spend and budget excess.

        With a budget shared with flex spend, the recourse is ``max_{0 <= mu <= big_m} min (true
        cost + mu (spend - b))``, ``b`` the budget left after the lever spend at ``col``:
        concave in ``mu``; the search brackets it from the last multiplier and intersects
        tangents, and the second stage is the bracket's mixture whose spend is ``b``. Where
        even at ``mu = big_m`` the spend exceeds ``b``, the cost includes ``big_m`` per unit of
        excess, and the least flex spend that meets the target (prices ``wc = 0, mu = 1``)
        gives cuts ``sum phi - lam sum sigma >= ...`` (they bind where ``b`` is out of reach).
        """
        nonlocal mu_prev
        b = np.inf if not with_budget else budget - float(lev_vec @ col) - lev_const
        if reach:  # phase one: the point's least spend that meets the target, and the excess over the budget
            rf = inner(col, 0.0, 1.0, atol=0.1 * budget_tol)
            return rf["rows"], max(0.0, rf["obj"] - b), rf["obj"], 0.0
        first = float(cost_vec @ col) + offset - float(col[th_idx].sum())
        r0 = inner(col, 1.0, 0.0)
        slack = budget_tol
        if not np.isfinite(r0["obj"]) or r0["spend"] <= b + slack:
            return r0["rows"], first + r0["true"], r0["spend"], 0.0
        # the budget binds: for quantile and CVaR targets the master's split of it matters (without the
        # per-cluster cuts plan B stalled at 0.87 %); for an expected fill they only cost time (A at
        # S=1,000 under a binding budget: 9.2 s with them, 5.5 s without)
        rows = list(r0["rows"]) + (separate_budget(col) if with_cvar else [])
        atol = search_atol()

        def at(x, sel):
            r = inner(col, 1.0, float(x[0]))
            return {"h": np.array([r["obj"] - x[0] * b]), "slope": np.array([r["spend"] - b]), "r": _one(r)}

        lo0 = {"h": np.array([r0["obj"]]), "slope": np.array([r0["spend"] - b]), "r": _one(r0)}
        found = _concave_search(at, np.array([mu_prev]), np.array([slack]), atol, lo0, cap=big_m, max_bracket=40)
        r_lo, r_hi, m_hi = found["lo"]["r"][0], found["hi"]["r"][0], float(found["hi"]["x"][0])
        if not np.isfinite(m_hi):  # over the budget even at the excess's price: pay for the excess
            rf = inner(col, 0.0, 1.0, atol=0.1 * slack)  # the least spend, to a tenth of the budget's slack
            rows += rf["rows"] + (r_lo["rows"] if r_lo is not r0 else [])
            return rows, first + r_lo["true"] + big_m * (r_lo["spend"] - b), r_lo["spend"], r_lo["spend"] - b
        if m_hi > 0:
            mu_prev = m_hi
        rows += r_hi["rows"] + (r_lo["rows"] if r_lo is not r0 else [])  # the cuts of the bracket's ends
        span = r_lo["spend"] - r_hi["spend"]
        a = 1.0 if span <= 0 else min(1.0, max(0.0, (r_lo["spend"] - b) / span))
        return (rows, first + a * r_hi["true"] + (1 - a) * r_lo["true"],
                a * r_hi["spend"] + (1 - a) * r_lo["spend"], 0.0)

    fallback = None  # the relaxed phase's best plan, charged in full, if it keeps to the budget

    def charged(point, value, spend):
        """``(point, cost, spend)`` with every order the point places charged its full fixed cost; None if that
        breaks the budget (order costs count against it)."""
        if budget is not None:
            lever_spend = float(lev_vec @ point) + lev_const + _orders_in_full(point, lev_vec, order_idx, inc_idx)
            if lever_spend + (spend if with_budget else 0.0) > budget + max(budget_tol, 1e-9 * max(1.0, abs(budget))):
                return None
        return point, value + _orders_in_full(point, cost_vec, order_idx, inc_idx), spend

    def solve_fixed(idx, values):
        """The master with columns ``idx`` fixed at ``values`` (clipped to their bounds): a full first-stage column."""
        lp = h.getLp()
        lo_b, hi_b = np.asarray(lp.col_lower_).copy(), np.asarray(lp.col_upper_).copy()
        idx = np.asarray(idx, np.int32)
        fix = np.clip(values, lo_b[idx], hi_b[idx])
        h.changeColsBounds(len(idx), idx, fix, fix)
        col, _ = master()
        h.changeColsBounds(len(idx), idx, lo_b[idx], hi_b[idx])
        return col

    def offer(point, value, spend, over):
        """Make ``point`` the best (and the core) if its cost ``value`` is the best so far.

        A point that pays for a budget excess is not made the core while ``big_m`` may still
        rise: its penalised cost would pull the in-out queries towards it.
        """
        nonlocal ub, core, best, ub_spend, ub_over
        if value < ub:
            ub, best, ub_spend, ub_over = value, point.copy(), spend, over
            if over <= 0 or big_m >= 1e6:
                core = best

    def seed(col):
        """Evaluate a starting point: its cuts go to the master, and it becomes the core if it is the best."""
        nonlocal n_cuts
        rows, value, spend, over = evaluate(col)
        offer(col, value, spend, over)
        n_cuts += add_rows(rows)

    try:
        # the starting points: a start (lever levels) and the most capacity the rules allow. A start that
        # is a feasible core makes the second one pass too many, so it goes first and the most capacity
        # only where it is not a feasible core. Except under a quantile or CVaR target on cheap chains:
        # there the most capacity's cuts (every chain's fewest lost units) save more master time than
        # the pass costs, and it goes first, as it always did (S=1,000, plans A/B/C, start first and no
        # most capacity: storage 5.9/7.0 -> 5.5/6.6 s, shared 2.0/2.3 -> 1.8/2.1 s, max_delay 2 1.7/1.9 ->
        # 1.6/1.8 s; synthetic B/C 1.5 -> 1.9 s; series B/C at 10,000, start first: 20 -> 25 s)
        most_first = with_cvar and not heavy
        for step in ("most", "start") if most_first else ("start", "most"):
            if step == "start" and start is not None:  # a full first-stage column at the start levels
                start = np.asarray(start, float)
                if len(start) < len(y_idx):  # lever levels alone: no planned builds
                    start = np.vstack([start, np.zeros((len(y_idx) - len(start), pack.T))])
                col = solve_fixed(y_idx.ravel(), start.ravel())
                if col is not None:
                    seed(col)
                    if alpha is None and core is not None and np.array_equal(core, col):
                        alpha = 0.9  # a start that is feasible and the best point: search close to it
            elif step == "most" and (with_service or with_cvar) and (core is None or most_first):
                # a first core inside the feasible region: the master's most capacity (every reserve and flex
                # lever as high and every release as low as its rules allow), where the target is most reachable
                base_cost = np.asarray(h.getLp().col_cost_).copy()
                push = np.zeros(len(base_cost))
                for i, lv in enumerate(pack.levers):
                    push[y_idx[i]] = 1.0 if lv.kind == "release" else -1.0
                push[y_idx[n_lev:]] = -1.0  # and every planned build
                h.changeColsCost(len(push), np.arange(len(push), dtype=np.int32), push)
                col, _ = master()
                h.changeColsCost(len(base_cost), np.arange(len(base_cost), dtype=np.int32), base_cost)
                if col is not None and with_cvar:  # allow each chain its fewest lost units there
                    fewest = np.stack([oracle.chains(g, col[y_idx], np.zeros(S), np.arange(S),
                                                     feasibility=True)["lost"] for g in range(G)], axis=1)
                    col = solve_fixed(np.concatenate([y_idx.ravel(), ell_idx.ravel()]),
                                      np.concatenate([col[y_idx].ravel(), fewest.ravel() * (1 + 1e-9)]))
                if col is not None:
                    seed(col)
        if alpha is None:
            alpha = 0.5
        while True:
            it += 1
            col, val = master()
            if col is None:
                status = SolveStatus.INFEASIBLE if "nfeasible" in val else SolveStatus.ERROR
                break
            lb = val
            q = col if core is None else alpha * core + (1 - alpha) * col
            rows, value, spend, over = evaluate(q)
            offer(q, value, spend, over)
            if q is not col and not violated(rows, col):
                rows2, value2, spend2, over2 = evaluate(col)
                offer(col, value2, spend2, over2)
                rows += rows2
            n_cuts += add_rows(rows)
            gap = (ub - lb) / max(abs(ub), 1.0)
            if trace is not None:
                trace.append((it, time.perf_counter() - t0, lb, ub, oracle.calls))
            timed_out = time.perf_counter() > deadline
            if reach and (lb > reach_tol or ub <= reach_tol or it >= max_iter or timed_out):
                status = (SolveStatus.INFEASIBLE if lb > reach_tol else SolveStatus.OPTIMAL if ub <= reach_tol
                          else SolveStatus.TIME_LIMIT)
                break
            if gap <= tol and with_budget and ub_over > budget_tol and not timed_out:
                if big_m < 1e6:  # the best plan pays for a budget excess: price the excess at 1e6 and go on
                    ub += (1e6 - big_m) * ub_over
                    big_m = 1e6
                    h.changeColCost(z_idx, big_m)
                    core = best
                    continue
                status = SolveStatus.INFEASIBLE  # an excess even at 1e6 per unit: the budget cannot be met
                break
            if gap <= tol or it >= max_iter or timed_out:
                if not fixed_orders and not timed_out and best is not None:
                    # relax-and-fix: orders where the relaxed master's optimum (a vertex: the core is an
                    # in-out mixture and would spread orders) places them; its plan and the core's, where
                    # they fit that pattern, are the fixed problem's first points
                    relaxed_obj = lb
                    fallback = charged(best, ub, ub_spend) if ub_over <= budget_tol else None
                    on = col[inc_idx] > 1e-6
                    for zi, flag in zip(order_idx, on, strict=True):
                        h.changeColBounds(int(zi), float(flag), float(flag))
                    last = (col,) if best is None else (col, best)
                    fixed_orders, ub, core, best = True, np.inf, None, None
                    keep = np.concatenate([y_idx.ravel(), ell_idx.ravel()]) if with_cvar else y_idx.ravel()
                    for point in last:
                        start_col = solve_fixed(keep, point[keep])
                        if start_col is not None:
                            seed(start_col)
                    continue
                if timed_out or gap > tol:
                    status = SolveStatus.TIME_LIMIT
                break
    except _OutOfTime:  # the limit passed inside an iteration: stop with the best plan so far
        status = SolveStatus.TIME_LIMIT
    if reach:
        return (SolveResult(status, ub, np.zeros((pack.L, pack.T)), np.zeros((pack.T, pack.G)),
                            time.perf_counter() - t0, "highs-benders", float("nan")),
                {"iterations": it, "lower_bound": lb, "upper_bound": ub, "oracle_calls": oracle.calls})
    if with_budget and (with_service or with_cvar) and (
            status is SolveStatus.ERROR or (it >= max_iter and (not np.isfinite(ub) or ub_over > budget_tol))):
        # no verdict on the budget: phase one decides whether a plan can keep to it at all
        left = deadline - time.perf_counter()
        if left > 0:
            one, _ = solve_benders_chains(pack, draws, variant, budget, structure, tol=tol, max_iter=max_iter,
                                          clusters=clusters, reach=True,
                                          time_limit=None if time_limit is None else left)
            if one.status is SolveStatus.INFEASIBLE:
                status = SolveStatus.INFEASIBLE
    secs = time.perf_counter() - t0
    levels = np.zeros((len(y_idx), pack.T))
    obj = float("nan")
    plan = None  # (point, cost, flex spend): the best plan found, if any keeps to the budget
    if best is not None and np.isfinite(ub) and ub_over <= budget_tol:
        # stopped before relax-and-fix: every order is charged its full fixed cost
        plan = (best, ub, ub_spend) if fixed_orders else charged(best, ub, ub_spend)
    if fallback is not None and (plan is None or fallback[1] < plan[1]):
        plan = fallback  # the relaxed phase's plan, charged in full, beats relax-and-fix's (or stands in for it)
    if plan is not None and status in (SolveStatus.OPTIMAL, SolveStatus.TIME_LIMIT):
        levels, obj, ub_spend = np.maximum(plan[0][y_idx], 0.0), plan[1], plan[2]
    elif status is SolveStatus.OPTIMAL:  # no point met the target: the master converged on an unreachable one
        status = SolveStatus.INFEASIBLE
    levels = np.where(np.abs(levels) < 1e-7, 0.0, levels)
    prebuild = np.zeros((pack.T, pack.G))
    prebuild[:, oracle.stock_segments] = levels[n_lev:].T
    levels = levels[:n_lev]
    gap_out = max(0.0, (obj - lb) / max(abs(obj), 1.0)) if np.isfinite(obj) and np.isfinite(lb) else float("nan")
    if relaxed_obj is not None and np.isfinite(obj):
        gap_out = max(gap_out, (obj - relaxed_obj) / max(abs(obj), 1.0))
    info = {"iterations": it, "lower_bound": lb, "upper_bound": ub, "flex_spend": float(ub_spend) if np.isfinite(ub_spend) else 0.0,
            "links": [],
            "subproblem": "chains", "oracle_calls": oracle.calls, "lp_fallbacks": oracle.fallbacks, "cuts": n_cuts,
            "clusters": K, "multiplier": lam, "slack": 0.0,
            "stock_chains": oracle.stock_solves[0], "warm_starts": oracle.stock_solves[1]}
    return SolveResult(status, obj, levels, prebuild, secs, "highs-benders", gap_out), info


def solve_benders(pack: PlanningPack, draws: mc.Draws, variant: Variant, budget: float | None = None, *,
                  time_limit: float | None = None, tol: float = 1e-7, max_iter: int = 1000,
                  subproblem: str = "auto") -> tuple[SolveResult, dict]:
    """L-shaped method for the SAA model: chain subproblems where the model allows, else HiGHS.

    ``subproblem="chains"`` (exact chain solvers, :func:`solve_benders_chains`)
    is used when :func:`chain_structure` accepts the pack and variant; otherwise, or with
    ``subproblem="lp"``, every path's LP is solved by HiGHS (:func:`peakplan.benders_lp.solve_benders_lp`).
    """
    if subproblem not in ("auto", "chains", "lp"):
        raise ValueError(f"subproblem must be 'auto', 'chains' or 'lp', got {subproblem!r}")
    structure = chain_structure(pack, variant, budget) if subproblem != "lp" else "asked for the LP subproblem"
    if isinstance(structure, dict):
        return solve_benders_chains(pack, draws, variant, budget, structure, time_limit=time_limit, tol=tol,
                                    max_iter=max_iter)
    if subproblem == "chains":
        raise ValueError(f"the chain subproblem does not apply: {structure}")
    from peakplan.benders_lp import solve_benders_lp

    res, info = solve_benders_lp(pack, draws, variant, budget, time_limit=time_limit, tol=tol, max_iter=max_iter)
    info["subproblem"] = "lp"
    info["why_not_chains"] = structure
    return res, info
