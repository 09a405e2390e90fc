"""Exact second stage for a chain whose goods can be pre-built into stock: a min-cost flow.

A storable segment on resources of its own (one resource, or ``J`` in series) is one chain
per path, as in :mod:`peakplan.recourse`, with four more inputs: the planned build cap
``pb_t`` (first stage: at most ``pb_t`` units built into stock in ``t``), the stock room
``W`` (units held at the end of a period), the initial stock ``s0`` and the holding cost
``h`` per unit and period. :func:`peakplan.optimize.define_second_stage` serves stock
first (a bonus ``eps`` = 1e-5 a unit taken) from what was held at the end of the previous
period; a build uses capacity in its own period and is held from the end of it.

Arrival ``t`` served in ``s`` (``t <= s <= t + K``) or lost links periods forwards; stock
links them backwards, so the chain is no longer a telescoping path problem
(:func:`peakplan.recourse._chain_flow`) but a general min-cost flow on ``5 T + 3`` nodes,
in the direction of demand (arrival -> where it is served -> the capacity that serves it)::

    A_t -> Z                 lost: b min(K, T - t) + L_t
    A_t -> Q_s               served in s = t..t+K: b (s - t)
    Q_s -> C_s               from capacity
    Q_s -> Hin_{s-1}         from stock (Hin_{-1} = I0): -eps
    Hin_s -> Hout_s          held at the end of s: h, at most W
    Hout_s -> Hin_{s-1}      held longer (Hout_0 -> I0)
    Hout_s -> C_s            built in s: at most pb_s
    C_s -> Z                 the capacity pieces of :func:`peakplan.recourse._tiers`
    A2_mt -> Z, -> C_s       stream m that cannot be stored: lost, or served in s = t..t+K

Segments sharing one resource (:func:`peakplan.benders.chain_structure`) are one chain,
every quantity then in units of the resource: each storable one has its own ``A``, ``Q``,
``Hin``, ``Hout``, ``END`` and ``I0`` nodes (a stock of its own) on the shared ``C_s`` and
``Z``, and the others are the streams ``A2_m``.

The initial stock is a circulation set up front, ``Z -> END -> Hin_{T-1} -> ... -> Hout_0
-> I0 -> Z`` (``s0`` units held to the horizon, at ``h T s0``); taking a unit of it in
``s`` sends flow back up the chain from ``Hin_{s-1}`` to ``END`` and ``Z``, which frees
the room it held and saves ``h (T - s)``. ``I0 -> Z`` is fixed at ``s0`` (no reverse arc),
so the stock cannot be thrown away.

Successive shortest paths with node potentials and Dijkstra (Ahuja, Magnanti & Orlin 1993,
ch. 9), arrivals in time order; the first potentials by Bellman-Ford (the take and
the circulation's reverse arcs cost less than nothing). With :class:`WarmStarts` a chain
solved before starts from its last optimal flows and potentials instead (the L-shaped method
solves the same chains at one point after another): every arc's flow goes where the old
potentials price it (saturated below zero reduced cost, empty above), and the same shortest
paths then send each node's excess to the nearest node short of flow. The final potentials ``pi`` price
everything: capacity in ``s`` is worth ``mu_s = pi_Z - pi_{C_s}`` (split over the resources
by :func:`peakplan.recourse._split`), a unit more build cap in ``s`` ``pi_{C_s} -
pi_{Hout_s}`` where positive. Each chain checks complementary slackness on every residual
arc and strong duality (1e-9) and reports failure instead of a wrong cut; the caller then
solves it by HiGHS (:func:`peakplan.recourse_lp.solve_chain_lp_stock`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from peakplan.recourse import _split, _tiers

__all__ = ["WarmStarts", "solve_stock_chains"]

_INF = np.inf
#: the bonus per unit served from stock, as in :func:`peakplan.optimize.define_second_stage`
STOCK_FIRST = 1e-5


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _arc(ne, frm, to, cap, cost, first, nxt, u, v, c, w):
    """Add arc ``u -> v`` (capacity ``c``, cost ``w``) and its reverse; returns the next free arc index."""
    frm[ne] = u
    to[ne] = v
    cap[ne] = c
    cost[ne] = w
    nxt[ne] = first[u]
    first[u] = ne
    frm[ne + 1] = v
    to[ne + 1] = u
    cap[ne + 1] = 0.0
    cost[ne + 1] = -w
    nxt[ne + 1] = first[v]
    first[v] = ne + 1
    return ne + 2


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _arrival_flows(cap, e, T, K, t, x_t):
    """Arrival ``t``'s flows from its arcs at ``e`` (lost, then served ``j = 0..K`` periods later) into
    ``x_t[j]``; returns ``(next arc, lost, unit-periods waited)``: a lost unit waits ``min(K, T - t)``."""
    lost = cap[e + 1]
    wait = min(K, T - t) * lost
    e += 2
    for j in range(K + 1):
        if t + j < T:
            x_t[j] = cap[e + 1]
            wait += j * cap[e + 1]
            e += 2
        else:
            x_t[j] = 0.0
    return e, lost, wait


@njit(cache=True, nogil=True, error_model="numpy")
def _warm_start(E, Z, P, frm, to, cap, cost, pot, exc, e_circ, s0, wf, wp):
    """Start from the last solve's flows ``wf`` (per arc) and prices ``wp`` (per node) on the arcs just
    built (``cap`` their capacities): the prices repaired, every arc's flow put where its reduced cost
    says (at capacity below zero, empty above, the old flow cut to the capacity at zero) and the
    imbalances added to ``exc``. Returns False where the prices cannot be repaired.

    An arc without a capacity cannot be saturated: where its cost moved (the prices of lost units,
    of backlog or of the take bonus are inputs) and it costs less than nothing at the old prices,
    its tail's price rises to make it tight. Such arcs lead at most three deep (arrival -> served
    in s -> stock), so a few passes settle them.
    """
    N = wp.shape[0]
    big = 1.0
    for n in range(N):
        pot[n] = wp[n] - wp[Z]
        big = max(big, abs(pot[n]))
    for e in range(0, E, 2):
        big = max(big, abs(cost[e]))
    rtol = 1e-12 * big  # a reduced cost within rtol of zero is zero
    changed = True
    for _ in range(8):
        changed = False
        for e in range(0, E, 2):
            if cap[e] == _INF:
                r = cost[e] + pot[frm[e]] - pot[to[e]]
                if r < -rtol:
                    pot[frm[e]] -= r
                    changed = True
        if not changed:
            break
    if changed:
        return False
    for e in range(0, E, 2):
        u = frm[e]
        v = to[e]
        U = cap[e]
        fixed = -1
        for m in range(P):
            if e == e_circ[m] + 4:
                fixed = m
        if fixed >= 0:  # I0 -> Z: s0, no residual either way
            f = s0[fixed]
            cap[e] = 0.0
            cap[e + 1] = 0.0
        else:
            r = cost[e] + pot[u] - pot[v]
            if r < -rtol:
                f = U
            elif r > rtol:
                f = 0.0
            else:
                f = min(max(wf[e // 2], 0.0), U)
            cap[e] = U - f
            cap[e + 1] = f
        exc[u] -= f
        exc[v] += f
    return True


@njit(cache=True, nogil=True, error_model="numpy")
def _stock_chain(d, c, F, u, b, L, K, pb, room, s0, h, eps, d2, L2, x, x2, out_v, out_loss, out_loss2, out_p, out_q,
                 out_pb, out_stock, out_take, c0, tw, tp, nt, wt, order, frm, to, cap, cost, first, nxt, pot, dist,
                 par, done, seen, settled, hk, hv, tot, stk, e_arr, e_take, e_circ, exc, warm, wf, wp):
    """One chain of ``P`` storable streams; returns ``(cost, backlog, ok)``.

    ``d``, ``L``, ``pb`` ``[T, P]``, ``room``, ``s0``, ``h``, ``eps`` ``[P]``: stream ``m``'s
    arrivals, loss prices, build caps, room, initial stock, holding cost and take bonus (each
    its own stock). ``x[t, m, j]``: stream ``m``'s arrival ``t`` served in ``t + j``;
    ``out_pb[t, m]``: the value of a unit more build cap in ``t`` (``dQ/dpb_tm = -out_pb[t, m]``);
    ``out_stock[m]`` the unit-periods held (the initial stock included), ``out_take[m]`` the
    units served from stock. ``d2``, ``L2`` ``[T, M2]``: streams that cannot be stored sharing
    the capacity (``x2[t, m, j]``, ``out_loss2[t, m]``). The rest is scratch.
    """
    T = d.shape[0]
    P = d.shape[1]
    J = c.shape[1]
    M2 = d2.shape[1]
    _tiers(c, F, u, c0, tw, tp, nt, wt, order)
    scale = 1.0
    for m in range(P):
        scale = max(scale, 1.0 + s0[m] + room[m])
    for t in range(T):
        scale = max(scale, c0[t] + wt[t])
        for m in range(P):
            scale = max(scale, d[t, m], pb[t, m])
        for m in range(M2):
            scale = max(scale, d2[t, m])
    tol = 1e-12 * scale
    for m in range(P):
        if s0[m] > room[m] + tol:  # the initial stock does not fit: the LP decides what must be taken at once
            return 0.0, 0.0, False
    # nodes: per stock m, A, Q, HI, HO (T each) at 4 T m; then CN, Z, per stock END and I0, the other streams
    CN = 4 * T * P
    Z = CN + T
    A2 = Z + 1 + 2 * P  # stream m's arrival t: A2 + m T + t
    N = A2 + M2 * T
    for n in range(N):
        first[n] = -1
    ne = 0
    for m in range(P):
        A, Q, HI, HO, I0 = 4 * T * m, 4 * T * m + T, 4 * T * m + 2 * T, 4 * T * m + 3 * T, Z + 2 + 2 * m
        e_arr[m] = ne
        for t in range(T):
            ne = _arc(ne, frm, to, cap, cost, first, nxt, A + t, Z, _INF, b * min(K, T - t) + L[t, m])
            for j in range(K + 1):
                if t + j < T:
                    ne = _arc(ne, frm, to, cap, cost, first, nxt, A + t, Q + t + j, _INF, b * j)
        e_take[m] = ne
        for s in range(T):
            ne = _arc(ne, frm, to, cap, cost, first, nxt, Q + s, CN + s, _INF, 0.0)
            ne = _arc(ne, frm, to, cap, cost, first, nxt, Q + s, HI + s - 1 if s > 0 else I0, _INF, -eps[m])
            # held longer before room: a pass of Bellman-Ford below then carries the circulation's
            # reverse arcs up the whole chain
            ne = _arc(ne, frm, to, cap, cost, first, nxt, HO + s, HI + s - 1 if s > 0 else I0, _INF, 0.0)
            ne = _arc(ne, frm, to, cap, cost, first, nxt, HI + s, HO + s, room[m], h[m])
            ne = _arc(ne, frm, to, cap, cost, first, nxt, HO + s, CN + s, pb[s, m], 0.0)
    for s in range(T):
        ne = _arc(ne, frm, to, cap, cost, first, nxt, CN + s, Z, c0[s], 0.0)
        for k in range(J):  # J pieces of flex always (the unused ones empty): the same arcs at every point
            wk = tw[s, k] if k < nt[s] else 0.0
            pk = tp[s, k] if k < nt[s] else 0.0
            ne = _arc(ne, frm, to, cap, cost, first, nxt, CN + s, Z, wk, pk)
    for m in range(P):
        END, I0 = Z + 1 + 2 * m, Z + 2 + 2 * m
        e_circ[m] = ne
        ne = _arc(ne, frm, to, cap, cost, first, nxt, Z, END, s0[m], 0.0)
        ne = _arc(ne, frm, to, cap, cost, first, nxt, END, 4 * T * m + 3 * T - 1, _INF, 0.0)  # -> HI_{T-1}
        ne = _arc(ne, frm, to, cap, cost, first, nxt, I0, Z, s0[m], 0.0)
    e_str = ne
    for t in range(T):  # the streams that cannot be stored: lost, or served from capacity in t..t+K
        for m in range(M2):
            ne = _arc(ne, frm, to, cap, cost, first, nxt, A2 + m * T + t, Z, _INF, b * min(K, T - t) + L2[t, m])
            for j in range(K + 1):
                if t + j < T:
                    ne = _arc(ne, frm, to, cap, cost, first, nxt, A2 + m * T + t, CN + t + j, _INF, b * j)
    E = ne
    for n in range(N):
        exc[n] = 0.0
    for t in range(T):  # supplies: every arrival, to Z
        for m in range(P):
            exc[4 * T * m + t] += d[t, m]
            exc[Z] -= d[t, m]
        for m in range(M2):
            exc[A2 + m * T + t] += d2[t, m]
            exc[Z] -= d2[t, m]
    if warm:
        if not _warm_start(E, Z, P, frm, to, cap, cost, pot, exc, e_circ, s0, wf, wp):
            return 0.0, 0.0, False
    else:
        for m in range(P):
            if s0[m] > 0.0:  # the circulation: s0 held to the horizon, every arc on it at s0
                for e in range(e_take[m], e_take[m] + 10 * T, 10):  # per period: from capacity, take, held longer,
                    for off in (4, 6):                             # room, build
                        cap[e + off] -= s0[m]
                        cap[e + off + 1] += s0[m]
                ec = e_circ[m]
                cap[ec] -= s0[m]
                cap[ec + 1] += s0[m]
                cap[ec + 2] -= s0[m]
                cap[ec + 3] += s0[m]
                cap[ec + 4] -= s0[m]
            cap[e_circ[m] + 5] = 0.0  # I0 -> Z is fixed at s0: no reverse
        # first potentials: Bellman-Ford from a root joined to every node at cost 0
        for n in range(N):
            pot[n] = 0.0
        for _ in range(N + 1):
            changed = False
            for e in range(E):
                if cap[e] > tol and pot[frm[e]] + cost[e] < pot[to[e]] - 1e-15 * max(1.0, abs(pot[to[e]])):
                    pot[to[e]] = pot[frm[e]] + cost[e]
                    changed = True
            if not changed:
                break
        if changed:
            return 0.0, 0.0, False
    # every node with more in than out sends it on, arrivals first in time order: stock flows forwards,
    # and the searches stay short (T=52 with initial stock: 130 augmentations settling 23 nodes each,
    # against 187 and 71 most valuable first). From zero flows the only node short of flow is Z
    steps = 0
    limit = 16 * E + 64
    stamp = 0
    for n in range(N):
        seen[n] = 0
        done[n] = 0
    for ts in range(T * (P + M2) + N):
        if ts < T * (P + M2):
            t0 = ts // (P + M2)
            ms = ts % (P + M2)
            src = 4 * T * ms + t0 if ms < P else A2 + (ms - P) * T + t0
        else:
            src = ts - T * (P + M2)
        rem = exc[src]
        while rem > tol:
            steps += 1
            if steps > limit:
                return 0.0, 0.0, False
            # Dijkstra on reduced costs from src, stopped when a node short of flow is settled. Nodes reached
            # at the current distance (over tight arcs) go on a stack and are settled first, depth first:
            # many nodes tie at one distance, and Z is often a few tight arcs away
            stamp += 1
            nset = 0
            seen[src] = stamp
            dist[src] = 0.0
            par[src] = -1
            stk[0] = src
            ns = 1
            size = 0
            key = 0.0
            tg = -1
            while ns > 0 or size > 0:
                if ns > 0:
                    ns -= 1
                    n = stk[ns]
                    if done[n] == stamp:
                        continue
                else:
                    key = hk[0]
                    n = hv[0]
                    size -= 1
                    if size > 0:  # sift the last entry down from the root
                        lk, lv = hk[size], hv[size]
                        i = 0
                        while True:
                            ch = 2 * i + 1
                            if ch >= size:
                                break
                            if ch + 1 < size and hk[ch + 1] < hk[ch]:
                                ch += 1
                            if hk[ch] >= lk:
                                break
                            hk[i] = hk[ch]
                            hv[i] = hv[ch]
                            i = ch
                        hk[i] = lk
                        hv[i] = lv
                    if done[n] == stamp or key > dist[n]:
                        continue
                done[n] = stamp
                settled[nset] = n
                nset += 1
                if exc[n] < -tol:
                    tg = n
                    break
                e = first[n]
                while e >= 0:
                    if cap[e] > tol:
                        m = to[e]
                        if done[m] != stamp:
                            nd = key + max(0.0, cost[e] + pot[n] - pot[m])
                            if seen[m] != stamp or nd < dist[m]:
                                seen[m] = stamp
                                dist[m] = nd
                                par[m] = e
                                if nd <= key:  # as near as it gets: settle it next
                                    stk[ns] = m
                                    ns += 1
                                else:
                                    i = size  # sift up
                                    size += 1
                                    while i > 0:
                                        pi_ = (i - 1) // 2
                                        if hk[pi_] <= nd:
                                            break
                                        hk[i] = hk[pi_]
                                        hv[i] = hv[pi_]
                                        i = pi_
                                    hk[i] = nd
                                    hv[i] = m
                    e = nxt[e]
            if tg < 0:
                return 0.0, 0.0, False
            delta = min(rem, -exc[tg])
            n = tg
            while n != src:
                e = par[n]
                delta = min(delta, cap[e])
                n = frm[e]
            n = tg
            while n != src:
                e = par[n]
                cap[e] -= delta
                cap[e ^ 1] += delta
                n = frm[e]
            # potentials += min(dist, dist_tg): only the settled nodes move relative to the rest
            dz = dist[tg]
            for k in range(nset):
                pot[settled[k]] += dist[settled[k]] - dz
            rem -= delta
            exc[tg] += delta
        exc[src] = rem
    # flows (a reverse arc's residual capacity is its arc's flow)
    backlog = 0.0
    total = 0.0
    for m in range(P):
        e = e_arr[m]
        for t in range(T):
            e, lost, wait = _arrival_flows(cap, e, T, K, t, x[t, m])
            out_loss[t, m] = lost
            backlog += wait
            total += L[t, m] * lost
    e = e_str
    for t in range(T):
        for m in range(M2):
            e, lost, wait = _arrival_flows(cap, e, T, K, t, x2[t, m])
            out_loss2[t, m] = lost
            backlog += wait
            total += L2[t, m] * lost
    for m in range(P):
        out_stock[m] = 0.0
        out_take[m] = 0.0
        for s in range(T):
            e = e_take[m] + 10 * s
            out_take[m] += cap[e + 3]
            out_stock[m] += cap[e + 7]
        total += h[m] * out_stock[m] - eps[m] * out_take[m]
    e = e_take[P - 1] + 10 * T  # the capacity pieces
    for s in range(T):
        tot[s] = cap[e + 1]
        e += 2
        for _k in range(J):
            tot[s] += cap[e + 1]
            e += 2
    for s in range(T):
        used = min(max(tot[s] - c0[s], 0.0), wt[s])
        top = c0[s] + used
        for jr in range(J):
            out_v[s, jr] = min(max(top - c[s, jr], 0.0), F[s, jr]) if J > 1 else used
            total += u[jr] * out_v[s, jr]
    total += b * backlog
    # certificate: every residual arc non-negative at the final prices, then strong duality
    ctol = 1e-9 * max(1.0, abs(pot[Z] - pot[0]))
    for t in range(T):
        for m in range(P):
            ctol = max(ctol, 1e-9 * abs(pot[Z] - pot[4 * T * m + t]))
        for m in range(M2):
            ctol = max(ctol, 1e-9 * abs(pot[Z] - pot[A2 + m * T + t]))
    for e in range(E):
        fixed = False
        for m in range(P):
            fixed = fixed or e == e_circ[m] + 5
        if not fixed and cap[e] > tol and cost[e] + pot[frm[e]] - pot[to[e]] < -ctol:
            return total, backlog, False
    dual = 0.0
    for t in range(T):
        for m in range(P):
            dual += d[t, m] * (pot[Z] - pot[4 * T * m + t])
        for m in range(M2):
            dual += d2[t, m] * (pot[Z] - pot[A2 + m * T + t])
    for m in range(P):
        HI, HO = 4 * T * m + 2 * T, 4 * T * m + 3 * T
        for s in range(T):
            dual -= room[m] * max(0.0, pot[HO + s] - pot[HI + s] - h[m])  # room arc's multiplier
            out_pb[s, m] = max(0.0, pot[CN + s] - pot[HO + s])
            dual -= pb[s, m] * out_pb[s, m]
        dual -= s0[m] * max(0.0, pot[Z + 1 + 2 * m] - pot[Z])  # Z -> END at its capacity
        dual += s0[m] * (pot[Z + 2 + 2 * m] - pot[Z])  # I0 -> Z fixed at s0
    for s in range(T):
        mu = max(0.0, pot[Z] - pot[CN + s])
        good, term = _split(s, mu, tot[s], c, F, u, out_v, out_p, out_q, tol)
        if not good:
            return total, backlog, False
        dual -= term
    ok = abs(dual - total) <= 1e-9 * max(1.0, abs(total)) + 1e-9 * scale
    return total, backlog, ok


def _sizes(T: int, K: int, P: int, M2: int, J: int) -> tuple[int, int]:
    """Arcs (each with its reverse) and nodes of a chain: at most ``E`` arcs, exactly ``N`` nodes."""
    return 2 * (T * (K + 2) * (P + M2) + 5 * T * P + T * (J + 1) + 3 * P), 4 * T * P + T + 1 + 2 * P + M2 * T


@njit(cache=True, nogil=True, error_model="numpy")
def _solve_all_stock(d, c, F, u, b, L, K, pb, room, s0, h, eps, d2, L2, cost, backlog, stock, take, ok, x, x2, v, loss,
                     loss2, p, q, qpb, E, N, wf, wp, have, slots, started):
    C, T, P = d.shape
    J = c.shape[2]
    c0 = np.zeros(T)
    tw = np.zeros((T, J))
    tp = np.zeros((T, J))
    nt = np.zeros(T, np.int64)
    wt = np.zeros(T)
    order = np.zeros(J, np.int64)
    frm = np.zeros(E, np.int64)
    to = np.zeros(E, np.int64)
    cap = np.zeros(E)
    cst = np.zeros(E)
    first = np.zeros(N, np.int64)
    nxt = np.zeros(E, np.int64)
    pot = np.zeros(N)
    dist = np.zeros(N)
    par = np.zeros(N, np.int64)
    done = np.zeros(N, np.int64)
    seen = np.zeros(N, np.int64)
    settled = np.zeros(N, np.int64)
    hk = np.zeros(E + N)
    hv = np.zeros(E + N, np.int64)
    tot = np.zeros(T)
    stk = np.zeros(E + N, np.int64)
    e_arr = np.zeros(P, np.int64)
    e_take = np.zeros(P, np.int64)
    e_circ = np.zeros(P, np.int64)
    exc = np.zeros(N)
    keep = slots.shape[0] > 0  # each chain's flows and prices kept in its slot, and started from where kept
    for i in range(C):
        k = slots[i] if keep else 0
        warm = keep and have[k]
        for attempt in range(2):
            start = warm and attempt == 0
            r = _stock_chain(d[i], c[i], F[i], u[i], b[i], L[i], K, pb[i], room[i], s0[i], h[i], eps[i], d2[i],
                             L2[i], x[i], x2[i], v[i], loss[i], loss2[i], p[i], q[i], qpb[i], stock[i], take[i], c0, tw,
                             tp, nt, wt, order, frm, to, cap, cst, first, nxt, pot, dist, par, done, seen, settled, hk,
                             hv, tot, stk, e_arr, e_take, e_circ, exc, start, wf[k], wp[k])
            if r[2] or not warm:
                break
        cost[i], backlog[i], ok[i] = r
        started[i] = r[2] and warm and attempt == 0
        if keep:
            have[k] = r[2]
            if r[2]:
                for a in range(E // 2):
                    wf[k, a] = cap[2 * a + 1]
                for n in range(N):
                    wp[k, n] = pot[n]


class WarmStarts:
    """Each chain's flows and prices from its last solve, one slot per chain, to start the next solve from.

    The L-shaped method solves the same chains at one point after another, and near its end the
    points differ little: from the last optimal flows, with every arc's flow put where the old
    prices say and the imbalances sent on by the same shortest paths, a chain takes a few
    augmentations instead of some 130. The answer is the same optimum, checked by the same
    certificate; a chain whose warm start fails is solved from zero flows.
    ``n`` slots of chains of ``T`` periods, ``max_delay`` ``K``, ``P`` storable streams, ``M2`` others
    and ``J`` resources; :attr:`nbytes` what they hold (about 6 kB a chain at ``T`` = 52).
    """

    def __init__(self, n: int, T: int, K: int, P: int = 1, M2: int = 0, J: int = 1):
        self.key = (T, K, P, M2, J)
        E, N = _sizes(T, K, P, M2, J)
        self.flows = np.zeros((n, E // 2))
        self.prices = np.zeros((n, N))
        self.have = np.zeros(n, bool)

    @property
    def nbytes(self) -> int:
        return self.flows.nbytes + self.prices.nbytes + self.have.nbytes

    @staticmethod
    def size(n: int, T: int, K: int, P: int = 1, M2: int = 0, J: int = 1) -> int:
        """The bytes ``n`` slots would hold."""
        E, N = _sizes(T, K, P, M2, J)
        return 8 * n * (E // 2 + N) + n


def solve_stock_chains(d, c, F, u, b, L, K: int, pb, room, s0, h, eps=STOCK_FIRST, fallback: bool = True,
                       d2=None, L2=None, warm: WarmStarts | None = None, slots=None) -> dict:
    """Solve ``C`` storable chains; returns flows, costs and duals.

    ``d``, ``L``, ``pb``: ``[C, T]``; ``c``, ``F``: ``[C, T, J]`` (``J`` resources in series);
    ``u``: ``[C, J]`` or broadcast; ``b``, ``room``, ``s0``, ``h``, ``eps``: ``[C]`` or scalars;
    ``K`` = ``max_delay``. All in units of the segment. With ``fallback``, a chain whose
    certificate fails is re-solved by HiGHS (:func:`peakplan.recourse_lp.solve_chain_lp_stock`).
    ``d``, ``L``, ``pb`` ``[C, T, P]`` (and ``room``, ``s0``, ``h``, ``eps`` ``[C, P]`` or
    broadcast) are ``P`` storable streams sharing the capacity, each with a stock of its own.
    ``d2``, ``L2`` (``[C, T, M2]``, optional): arrivals and loss prices of ``M2`` more streams
    that share the capacity but cannot be stored (segments sharing a resource with a storable
    one), each unit taking one unit of capacity, at the same backlog cost ``b``: all in units
    of the capacity, the storable streams' too.
    ``warm`` (:class:`WarmStarts`) keeps chain ``i``'s flows and prices in slot ``slots[i]``
    (default ``i``) and starts from them where the slot holds a solve of the same shapes.

    Returns ``cost``, ``backlog`` (unit-periods waited, lost units included), ``stock``
    (unit-periods held), ``take`` (units served from stock), ``ok``, all ``[C]``; ``loss``
    ``[C, T]``; ``by_age`` ``[C, T, K + 1]``; ``flex``, ``p``, ``q`` ``[C, T, J]``; ``pb_dual``
    ``[C, T]`` (``dQ/dpb = -pb_dual``); ``fallback`` (how many chains went to HiGHS); ``warm`` (how
    many were solved from their slot's warm start); with
    ``d2``, the other streams' ``loss2`` ``[C, T, M2]`` and ``by_age2`` ``[C, T, M2, K + 1]``.
    With ``P`` streams, ``stock`` and ``take`` are ``[C, P]``, ``loss`` and ``pb_dual``
    ``[C, T, P]`` and ``by_age`` ``[C, T, P, K + 1]``.
    """
    if int(K) != K or K < 0:
        raise ValueError(f"chains need a whole max_delay >= 0, got {K}")
    K = int(K)
    d = np.asarray(d, float)
    if d.ndim not in (2, 3):
        raise ValueError(f"d must be [C, T] or [C, T, P], got shape {d.shape}")
    one = d.ndim == 2  # one storable stream: its outputs without the stream axis
    C, T = d.shape[:2]
    P = 1 if one else d.shape[2]
    J = np.shape(c)[-1]

    def full(x, shape):
        return np.require(np.broadcast_to(np.asarray(x, float), shape), requirements=["C", "W"])

    def per(x, shape):  # [C, T] or [C] with one storable stream: gains the stream axis
        return full(full(x, shape[:-1])[..., None], shape) if one else full(x, shape)

    d, L, pb = (per(x, (C, T, P)) for x in (d, L, pb))
    c, F, u = full(c, (C, T, J)), full(F, (C, T, J)), full(u, (C, J))
    b = full(b, (C,))
    room, s0, h, eps = (per(x, (C, P)) for x in (room, s0, h, eps))
    if (d2 is None) != (L2 is None):
        raise ValueError("streams that cannot be stored need both d2 and L2")
    M2 = 0 if d2 is None else np.shape(d2)[-1]
    if d2 is not None and np.ndim(d2) != 3:
        raise ValueError(f"d2 must be [C, T, M2], got shape {np.shape(d2)}")
    d2 = full(np.zeros((C, T, 0)) if d2 is None else d2, (C, T, M2))
    L2 = full(np.zeros((C, T, 0)) if L2 is None else L2, (C, T, M2))
    if not all(np.isfinite(x).all() for x in (d, c, F, u, b, L, pb, room, s0, h, eps, d2, L2)):
        raise ValueError("storable chains need finite demand, capacity, caps and prices")
    if any(np.any(x < 0) for x in (d, c, F, u, pb, room, s0, h, eps, d2)):
        raise ValueError("storable chains need non-negative demand, capacity, caps, stock and prices")
    out = {k: np.zeros(C) for k in ("cost", "backlog")}
    out["stock"], out["take"] = np.zeros((C, P)), np.zeros((C, P))
    out["ok"] = np.zeros(C, bool)
    out["loss"], out["pb_dual"] = np.zeros((C, T, P)), np.zeros((C, T, P))
    out["by_age"] = np.zeros((C, T, P, K + 1))
    out.update({k: np.zeros((C, T, J)) for k in ("flex", "p", "q")})
    out["loss2"], out["by_age2"] = np.zeros((C, T, M2)), np.zeros((C, T, M2, K + 1))
    E, N = _sizes(T, K, P, M2, J)
    started = np.zeros(C, bool)
    if warm is None:
        wf, wp, have, slots = np.zeros((1, E // 2)), np.zeros((1, N)), np.zeros(1, bool), np.zeros(0, np.int64)
    else:
        if warm.key != (T, K, P, M2, J):
            raise ValueError(f"warm starts kept for (T, K, P, M2, J) = {warm.key}, not {(T, K, P, M2, J)}")
        slots = np.arange(C) if slots is None else np.asarray(slots, np.int64)
        if slots.shape != (C,) or (C and (slots.min() < 0 or slots.max() >= len(warm.have))):
            raise ValueError(f"slots must be {C} indices below {len(warm.have)}")
        wf, wp, have = warm.flows, warm.prices, warm.have
    _solve_all_stock(d, c, F, u, b, L, K, pb, room, s0, h, eps, d2, L2, out["cost"], out["backlog"], out["stock"],
                     out["take"], out["ok"], out["by_age"], out["by_age2"], out["flex"], out["loss"], out["loss2"],
                     out["p"], out["q"], out["pb_dual"], E, N, wf, wp, have, slots, started)
    out["warm"] = int(started.sum())
    bad = np.flatnonzero(~out["ok"]) if fallback else np.zeros(0, int)
    for i in bad:
        from peakplan.recourse_lp import solve_chain_lp_stock

        ref = solve_chain_lp_stock(d[i], c[i], F[i], u[i], float(b[i]), L[i], K, pb[i], room[i], s0[i], h[i], eps[i],
                                   d2=d2[i] if M2 else None, L2=L2[i] if M2 else None)
        for k in ("cost", "backlog", "stock", "take", "loss", "by_age", "flex", "p", "q", "pb_dual") + (
                ("loss2", "by_age2") if M2 else ()):
            out[k][i] = ref[k]
    out["fallback"] = len(bad)
    if one:
        for k in ("stock", "take"):
            out[k] = out[k][:, 0]
        for k in ("loss", "pb_dual", "by_age"):
            out[k] = out[k][:, :, 0]
    return out
