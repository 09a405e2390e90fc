"""Exact second stage of the SAA model for chains: dynamic programming and shortest paths.

The optimizer's second stage (:func:`peakplan.optimize.define_second_stage`) is an LP per
path. When no resource serves two segments and nothing is storable, that LP separates
into one *chain* per (path, segment) whose only inputs are the period's demand ``d_t``,
the free capacity ``c_t`` (in units of the segment), a flex cap ``F_t`` priced ``u`` per
unit, the backlog cost ``b`` per unit and period and a loss
weight ``L_t`` per unit of arrival ``t`` lost (the penalty, plus any Lagrange multiplier
the master puts on lost or served units of the service window).

A segment may load ``J`` resources in series (pick, then pack: each unit served needs
capacity ``c_tj`` on each, with flex ``v_tj <= F_tj`` at ``u_j``). Serving ``x`` units
then costs ``sum_j u_j (x - c_tj)^+`` up to ``min_j (c_tj + F_tj)``: free up to
``min_j c_tj``, then a convex piecewise-linear supply curve (:func:`_tiers`) whose pieces
enter the DP as flex segments of their own. The duals are found for the aggregate
capacity and then split over the resources.

With ``max_delay = 1`` a unit arriving in ``t`` is served in ``t`` or ``t + 1`` or lost::

    min  sum_t b (d_t - n_t) + L_t (d_t - n_t - o_{t+1}) + u v_t
    s.t. n_t + o_{t+1} <= d_t        (a_t)     arrival t served now or next period
         o_t + n_t - v_t <= c_t      (p_t)     capacity
         v_t <= F_t                  (q_t)     flex cap

(``o_T = 0``: backlog left at the horizon is lost.) The LP is not solved by the Monte
Carlo rule (oldest first, flex whenever there is a queue): with a backlog cost it pays to
serve a new unit and drop an old one that would be lost anyway, and flex is worth using
only where a unit would otherwise be lost. It is solved exactly by a backward dynamic
programme over the carried backlog: the cost-to-go ``V_t(B)`` is convex piecewise linear,
and each step is a merge of sorted slopes (the value of serving new units, the flex
price, the loss weight of old units). A forward pass reads off the optimal flows.

With ``max_delay = K >= 2`` the carried backlog has K ages and the DP's state would be a
vector; the chain is solved as the min-cost flow it is instead (:func:`_chain_flow`).
Arrival ``t`` served in ``s`` (``t <= s <= t + K``) costs ``b (s - t)`` plus the price of
the capacity piece it uses (free capacity, then the flex tiers); lost, it costs
``r_t = b min(K, T - t) + L_t``. Relative to losing, serving it in ``s`` is worth ``k_t - b s
- price`` with ``k_t = r_t + b t``, so along an augmenting path (arrival, period, arrival
moved to another period, ...) the arrivals' terms telescope and the path's value is
``k_t`` minus the cost of the piece it ends on. Successive shortest paths (any excess node
first: Ahuja, Magnanti & Orlin 1993, ch. 9) then reduce to: arrivals in decreasing ``k_t``,
each sent to the cheapest piece with room reachable in the residual graph (a breadth-first
search) while that is worth it. Its duals come from the same complementary slackness: the
period prices are the least solution of difference constraints between periods in one
arrival's window, checked against the pieces' bounds and by strong duality like the DP's.

Segments sharing one resource (each loading only that one) make one chain with a stream of
arrivals per segment (:func:`solve_flows`): counted in units of the resource (demand times
load, loss weight and backlog cost per unit of it), every unit served takes one unit of
capacity, and the same telescoping holds as long as the streams' backlog cost per unit of
the resource is one number (arrivals are then ranked by ``k``, whatever their stream).
With ``max_delay`` <= 1 such a chain goes back to the DP (:func:`_streams_dp`): since every
stream waits at the same cost, a period's arrivals are one cohort whose lost units are its
cheapest, so the DP above holds with the loss weight of old units replaced by the cohort's
convex piecewise-linear loss curve (merged with the slopes of serving them); its flows go
to the same dual computation as the shortest paths' (:func:`_flow_finish`).

Duals (the Benders cut). Given the optimal flows, complementary slackness leaves a chain
of difference constraints ``p_{t+1} - p_t in [lo_t, hi_t]`` and bounds ``p_t in
[lb_t, ub_t]``; one forward interval propagation and one backward choice give an optimal
``p`` (then ``a`` and ``q = max(0, p - u)``). Every chain checks strong duality (primal
cost equals dual objective to 1e-9 relative) and reports failure instead of a wrong cut:
``dQ/dc_t = -p_t``, ``dQ/dF_t = -q_t``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["solve_chains", "solve_flows"]

_INF = np.inf


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _tiers(c, F, u, c0, tw, tp, nt, wt, order):
    """Per period, the free capacity ``c0_t = min_j c_tj`` and the flex supply curve beyond it.

    Serving ``x > c0_t`` units needs flex on every resource with ``c_tj < x``: the marginal
    price is the sum of their ``u_j``, up to ``xmax = min_j (c_tj + F_tj)``. The curve is
    stored as ``nt[t]`` tiers of width ``tw[t, k]`` and ascending price ``tp[t, k]`` (convex),
    ``wt[t]`` wide in all.
    """
    T, J = c.shape
    if J == 1:
        for t in range(T):
            c0[t] = c[t, 0]
            nt[t] = 1 if F[t, 0] > 0 else 0
            tw[t, 0] = F[t, 0]
            tp[t, 0] = u[0]
            wt[t] = max(F[t, 0], 0.0)
        return
    for t in range(T):
        for j in range(J):  # resources by free capacity (insertion sort; J is small)
            order[j] = j
        for j in range(1, J):
            k = order[j]
            i = j - 1
            while i >= 0 and c[t, order[i]] > c[t, k]:
                order[i + 1] = order[i]
                i -= 1
            order[i + 1] = k
        xmax = _INF
        for j in range(J):
            xmax = min(xmax, c[t, j] + F[t, j])
        lo = c[t, order[0]]
        c0[t] = lo
        price = 0.0
        n = 0
        w = 0.0
        for k in range(J):
            if lo >= xmax:
                break
            price += u[order[k]]
            hi = min(c[t, order[k + 1]] if k + 1 < J else _INF, xmax)
            if hi > lo:
                tw[t, n] = hi - lo
                tp[t, n] = price
                w += hi - lo
                n += 1
                lo = hi
        nt[t] = n
        wt[t] = w


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _at_free(m_lo, mst, mlt, c0t, wtt):
    """``M_t`` at ``c0_t`` (no capacity taken by old units) and where that falls: ``(value, segment, offset)``."""
    val = m_lo
    z = -wtt
    j = 0
    while True:
        room = c0t - z
        if mlt[j] >= room:
            return val + mst[j] * room, j, room
        val += mst[j] * mlt[j]
        z += mlt[j]
        j += 1


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _walk(nm, mlt, mtt, ntt, zt, wtt):
    """Walk ``M_t`` from ``-wt_t`` to ``zt``: ``(flex left unbought, new units served)``."""
    z = -wtt
    flex = wtt
    knew = 0.0
    nxt_tier = 0
    for j in range(nm):
        if z >= zt:
            break
        step = min(mlt[j], zt - z)
        if nxt_tier < ntt and j == mtt[nxt_tier]:
            flex -= step
            nxt_tier += 1
        else:
            knew += step
        z += step
    return flex, knew


@njit(cache=True, nogil=True, error_model="numpy")
def _chain(d, c, F, u, b, L, K, out_n, out_o, out_v, out_loss, out_p, out_q, seg_s, seg_l, v0, nseg,
           vfin, ms, ml, mt, mlo, nmv, c0, tw, tp, nt, wt, used, order, work):
    """Solve one chain; returns ``(cost, ok)``. The other arguments are outputs and scratch."""
    T = d.shape[0]
    J = c.shape[1]
    _tiers(c, F, u, c0, tw, tp, nt, wt, order)
    if K == 1:  # V_T(B) = L_{T-1} B: units carried out of the horizon are lost
        v0[T] = 0.0
        seg_s[T, 0] = L[T - 1]
        seg_l[T, 0] = _INF
        nseg[T] = 1
    for t in range(T - 1, -1, -1):
        m_lo, nm = _build_m(t, d, tw, tp, nt, b, L, K, seg_s, seg_l, v0, nseg, ms[t], ml[t], mt[t])
        mlo[t] = m_lo
        nmv[t] = nm
        if K == 0 or t == 0:
            continue
        mst = ms[t]
        mlt = ml[t]
        val, j, off = _at_free(m_lo, mst, mlt, c0[t], wt[t])  # M(c0_t), and where c0_t falls
        # V_t(B) = min_s L_{t-1} (B - s) + R(s), R(s) = M(c0_t - s): M leftwards from c0_t, slopes negated
        v0[t] = val
        lim = L[t - 1]
        k = 0
        jj = j
        length = off
        fin = 0.0
        room = d[t - 1]  # the carry into t never exceeds d_{t-1}: V_t is needed on [0, d_{t-1}] only
        while jj >= 0 and fin < room:
            slope = -mst[jj]
            if length > 0:
                if slope >= lim:
                    break
                length = min(length, room - fin)
                fin += length
                if k > 0 and seg_s[t, k - 1] == slope:
                    seg_l[t, k - 1] += length
                else:
                    seg_s[t, k] = slope
                    seg_l[t, k] = length
                    k += 1
            jj -= 1
            if jj >= 0:
                length = mlt[jj]
        seg_s[t, k] = lim
        seg_l[t, k] = _INF
        nseg[t] = k + 1
        vfin[t] = fin
    # forward pass: read off the optimal flows
    carry = 0.0
    cost = 0.0
    for t in range(T):
        s_old = 0.0
        if K == 1 and t > 0 and carry > 0:
            s_old = min(carry, vfin[t])
        flex, knew = _walk(nmv[t], ml[t], mt[t], nt[t], c0[t] - s_old, wt[t])
        s_new = min(knew, d[t])
        out_n[t] = s_new
        used[t] = flex
        if J == 1:
            out_v[t, 0] = flex
            cost += u[0] * flex
        else:
            top = c0[t] + flex  # the capacity bought: flex on every resource below it
            for jr in range(J):
                v = min(max(top - c[t, jr], 0.0), F[t, jr])
                out_v[t, jr] = v
                cost += u[jr] * v
        if K == 1:
            out_o[t] = s_old
            if t > 0:
                out_loss[t - 1] = carry - s_old
                cost += L[t - 1] * (carry - s_old)
            cost += b * (d[t] - s_new)
            carry = d[t] - s_new
        else:
            out_o[t] = 0.0
            out_loss[t] = d[t] - s_new
            cost += L[t] * (d[t] - s_new)
    if K == 1:
        out_loss[T - 1] = carry
        cost += L[T - 1] * carry
    ok = _duals(d, c, F, u, b, L, K, out_n, out_o, out_v, out_loss, out_p, out_q, cost, c0, tw, tp, nt, wt, used,
                work)
    return cost, ok


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _build_m(t, d, tw, tp, nt, b, L, K, seg_s, seg_l, v0, nseg, ms, ml, mt):
    """Segments of ``M_t(z) = min_w Phi_t(w) + N_t(z + w)`` on ``z >= -wt_t`` into ``ms``/``ml``.

    ``N_t(k)`` is the cost of the new units and of the future given ``k`` units of capacity
    for them; its slopes are minus the value of serving one more new unit. ``Phi_t`` is the
    flex supply curve (tiers): each tier is a segment of slope minus its price; ``mt``
    receives their positions. Returns ``(M(-wt_t), number of segments)``.
    """
    dt = d[t]
    k = 0
    ptr = nt[t] - 1  # tiers enter M most expensive first
    spend = 0.0
    for i in range(nt[t]):
        spend += tw[t, i] * tp[t, i]
    if K == 1:  # V_{t+1} on [0, d_t], traversed from d_t down: N slope -(b + V'_{t+1})
        x = 0.0
        vd = v0[t + 1]
        top = -1
        toplen = 0.0
        for i in range(nseg[t + 1]):
            if x >= dt:
                break
            length = min(seg_l[t + 1, i], dt - x)
            vd += seg_s[t + 1, i] * length
            x += length
            top = i
            toplen = length
        n0 = b * dt + vd
        for i in range(top, -1, -1):
            slope = -(b + seg_s[t + 1, i])
            length = toplen if i == top else seg_l[t + 1, i]
            # a tier goes before the first N segment whose value does not exceed its price
            while ptr >= 0 and slope >= -tp[t, ptr]:
                ms[k] = -tp[t, ptr]
                ml[k] = tw[t, ptr]
                mt[nt[t] - 1 - ptr] = k
                k += 1
                ptr -= 1
            if length > 0:
                ms[k] = slope
                ml[k] = length
                k += 1
    else:
        n0 = L[t] * dt
        if dt > 0:
            while ptr >= 0 and -L[t] >= -tp[t, ptr]:
                ms[k] = -tp[t, ptr]
                ml[k] = tw[t, ptr]
                mt[nt[t] - 1 - ptr] = k
                k += 1
                ptr -= 1
            ms[k] = -L[t]
            ml[k] = dt
            k += 1
    while ptr >= 0:
        ms[k] = -tp[t, ptr]
        ml[k] = tw[t, ptr]
        mt[nt[t] - 1 - ptr] = k
        k += 1
        ptr -= 1
    ms[k] = 0.0
    ml[k] = _INF
    k += 1
    return spend + n0, k


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _piece_bounds(t, x, c0, tw, tp, nt, wt, used, lb, ub, tol):
    """Tighten ``[lb_t, ub_t]``, the range of period ``t``'s capacity price, serving ``x`` with flex ``used[t]``.

    Free capacity left over prices it at 0; flex in use at least at the price of its tier;
    flex left at most at the price of the next tier.
    """
    y = used[t]
    if c0[t] + y - x > tol:
        ub[t] = 0.0
    if y > tol:  # the price of the tier below the flex in use
        cum = 0.0
        for k in range(nt[t]):
            cum += tw[t, k]
            if cum >= y - tol:
                lb[t] = max(lb[t], tp[t, k])
                break
    if y < wt[t] - tol:  # the price of the tier above it
        cum = 0.0
        for k in range(nt[t]):
            cum += tw[t, k]
            if cum > y + tol:
                ub[t] = min(ub[t], tp[t, k])
                break


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _split(t, price, x, c, F, u, v, p, q, tol):
    """Split period ``t``'s aggregate capacity price over its ``J`` resources in series, serving ``x``.

    Those whose flex is in use carry their flex price, the binding ones at a tier boundary
    what is left, the slack ones nothing; ``q = max(0, p - u)``. Returns ``(ok, sum_j p_tj
    c_tj + q_tj F_tj)``, ``ok`` False if the price cannot be split so.
    """
    J = c.shape[1]
    if J == 1:
        p[t, 0] = price
        q[t, 0] = max(0.0, price - u[0])
        return True, p[t, 0] * c[t, 0] + q[t, 0] * F[t, 0]
    rest = price
    for j in range(J):
        lo = u[j] if (c[t, j] + v[t, j] - x <= tol and v[t, j] > tol) else 0.0  # binding, flex in use
        p[t, j] = lo
        rest -= lo
    for j in range(J):
        if rest <= 0.0:
            break
        if c[t, j] + v[t, j] - x <= tol:
            hi = u[j] if (v[t, j] < F[t, j] - tol) else _INF
            take = min(rest, hi - p[t, j])
            p[t, j] += take
            rest -= take
    if abs(rest) > 1e-9 * max(1.0, abs(price)):
        return False, 0.0
    term = 0.0
    for j in range(J):
        q[t, j] = max(0.0, p[t, j] - u[j])
        term += p[t, j] * c[t, j] + q[t, j] * F[t, j]
    return True, term


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _duals(d, c, F, u, b, L, K, n, o, v, loss, p, q, cost, c0, tw, tp, nt, wt, used, work):
    """An optimal dual ``p`` (and ``q``) per resource by complementary slackness; True if strong duality holds.

    The chain's aggregate capacity price ``pi_t`` comes from the difference constraints;
    it is then split over the resources: those whose flex is in use carry their flex price,
    the binding ones at a tier boundary what is left, the slack ones nothing.
    """
    T = d.shape[0]
    J = c.shape[1]
    scale = 1.0
    for t in range(T):
        scale = max(scale, d[t], c0[t] + wt[t])
    tol = 1e-12 * scale
    # the tier bounds and the split below are _piece_bounds and _split written out: called from here they
    # made the whole DP 15-28 % slower (20,000 chains, T=52, J = 1 and 2), inlined or not
    lb, ub, dlo, dhi, jlo, jhi, pa = work[0], work[1], work[2], work[3], work[4], work[5], work[6]
    lb[:] = 0.0
    ub[:] = _INF
    dlo[:] = -_INF
    dhi[:] = _INF
    for t in range(T):
        y = used[t]
        if c0[t] + y - o[t] - n[t] > tol:
            ub[t] = 0.0
        if y > tol:  # the price of the tier below the flex in use
            cum = 0.0
            for k in range(nt[t]):
                cum += tw[t, k]
                if cum >= y - tol:
                    lb[t] = max(lb[t], tp[t, k])
                    break
        if y < wt[t] - tol:  # the price of the tier above it
            cum = 0.0
            for k in range(nt[t]):
                cum += tw[t, k]
                if cum > y + tol:
                    ub[t] = min(ub[t], tp[t, k])
                    break
    for t in range(T):
        if K == 1:
            nxt = t + 1 < T
            sn = n[t] > tol
            so = nxt and o[t + 1] > tol
            lossy = loss[t] > tol
            if sn:
                ub[t] = min(ub[t], b + L[t])
                if lossy:
                    lb[t] = max(lb[t], b + L[t])
            if sn and so:
                dlo[t] = -b
                dhi[t] = -b
            elif sn and nxt:
                dlo[t] = -b
            elif so:
                dhi[t] = -b
            if so:
                ub[t + 1] = min(ub[t + 1], L[t])
                if lossy:
                    lb[t + 1] = max(lb[t + 1], L[t])
            if not sn and not so and lossy:
                lb[t] = max(lb[t], b + L[t])
                if nxt:
                    lb[t + 1] = max(lb[t + 1], L[t])
        else:
            if n[t] > tol:
                ub[t] = min(ub[t], L[t])
            if loss[t] > tol:
                lb[t] = max(lb[t], L[t])
    # forward propagation of the feasible interval J_t, backward choice
    jlo[0] = lb[0]
    jhi[0] = ub[0]
    for t in range(T - 1):
        jlo[t + 1] = max(lb[t + 1], jlo[t] + dlo[t])
        jhi[t + 1] = min(ub[t + 1], jhi[t] + dhi[t])
    for t in range(T):
        if jlo[t] > jhi[t] + 1e-9 * max(1.0, abs(jlo[t])):
            return False
    pa[T - 1] = jlo[T - 1] if jlo[T - 1] <= jhi[T - 1] else jhi[T - 1]
    for t in range(T - 2, -1, -1):
        lo = max(jlo[t], pa[t + 1] - dhi[t])
        hi = min(jhi[t], pa[t + 1] - dlo[t])
        pa[t] = lo if lo <= hi else 0.5 * (lo + hi)
    # split pi_t over the resources, and the dual objective
    dual = 0.0
    for t in range(T):
        if J == 1:
            p[t, 0] = pa[t]
            q[t, 0] = max(0.0, pa[t] - u[0])
            dual -= p[t, 0] * c[t, 0] + q[t, 0] * F[t, 0]
        x = o[t] + n[t]
        rest = pa[t]
        for j in range(J if J > 1 else 0):
            lo = u[j] if (c[t, j] + v[t, j] - x <= tol and v[t, j] > tol) else 0.0  # binding, flex in use
            p[t, j] = lo
            rest -= lo
        for j in range(J if J > 1 else 0):
            if rest <= 0.0:
                break
            if c[t, j] + v[t, j] - x <= tol:
                hi = u[j] if (v[t, j] < F[t, j] - tol) else _INF
                take = min(rest, hi - p[t, j])
                p[t, j] += take
                rest -= take
        if J > 1 and abs(rest) > 1e-9 * max(1.0, abs(pa[t])):
            return False
        for j in range(J if J > 1 else 0):
            q[t, j] = max(0.0, p[t, j] - u[j])
            dual -= p[t, j] * c[t, j] + q[t, j] * F[t, j]
        if K == 1:
            a = max(b + L[t] - pa[t], 0.0)
            if t + 1 < T:
                a = max(a, L[t] - pa[t + 1])
            dual += (b + L[t] - a) * d[t]
        else:
            a = max(L[t] - pa[t], 0.0)
            dual += (L[t] - a) * d[t]
    return abs(dual - cost) <= 1e-9 * max(1.0, abs(cost)) + 1e-9 * scale


@njit(cache=True, nogil=True, error_model="numpy")
def _chain_flow(d, c, F, u, b, L, K, x, out_v, out_loss, out_p, out_q, c0, tw, tp, nt, wt, used, order, room, price,
                npc, cur, seen_p, seen_a, par_a, par_p, queue, lb, ub, mu, r, kv, tot, mused):
    """One chain by successive shortest paths; returns ``(cost, backlog, ok)``.

    ``M`` streams of arrivals (``d``, ``L``: ``[T, M]``) share the chain's capacity (``c``,
    ``F``: ``[T, J]``, ``J`` resources in series), every unit served taking one unit of it;
    ``x[t, m, j]`` (output) is what stream ``m``'s arrival ``t`` gets served in ``t + j``;
    ``out_loss`` ``[T, M]``. ``backlog`` is the unit-periods waited, lost units included.
    The other arguments are outputs (as in :func:`_chain`) and scratch (arrivals indexed
    ``t M + m``).
    """
    T, M = d.shape
    J = c.shape[1]
    N = T * M
    _tiers(c, F, u, c0, tw, tp, nt, wt, order)
    scale = 1.0
    for t in range(T):
        scale = max(scale, c0[t] + wt[t])
        for m in range(M):
            scale = max(scale, d[t, m])
    tol = 1e-12 * scale
    # capacity pieces per period: the free capacity (price 0), then the flex tiers; cheapest first
    for s in range(T):
        room[s, 0] = c0[s]
        price[s, 0] = 0.0
        for k in range(nt[s]):
            room[s, k + 1] = tw[s, k]
            price[s, k + 1] = tp[s, k]
        npc[s] = nt[s] + 1
        cur[s] = 0
        while cur[s] < npc[s] and room[s, cur[s]] <= tol:
            cur[s] += 1
        seen_p[s] = -1
        mused[s] = _INF  # the price of the dearest piece in use (none yet)
    # r_i: the cost of losing a unit of arrival i (it waits min(K, T - t) periods first);
    # serving it in s instead costs b (s - t): its value there is kv_i - b s, kv_i = r_i + b t
    for i in range(N):
        t = i // M
        m = i - t * M
        r[i] = b * min(K, T - t) + L[t, m]
        kv[i] = r[i] + b * t
        seen_a[i] = -1
        for j in range(K + 1):
            x[t, m, j] = 0.0
        out_loss[t, m] = 0.0
    # arrivals most valuable first: then no augmenting path ever ends by dropping a unit already
    # served (it would be worth at least as much), and the cheapest reachable piece is the
    # shortest path (the arcs between arrivals and periods telescope)
    order_i = np.argsort(-kv, kind="mergesort")
    stamp = 0
    steps = 0
    limit = 64 * N * (K + 2) * (J + 2) + 64
    for o in range(N):
        i0 = order_i[o]
        t0 = i0 // M
        rem = d[t0, i0 - t0 * M]
        while rem > tol:
            steps += 1
            if steps > limit:
                return 0.0, 0.0, False
            stamp += 1
            queue[0] = i0
            seen_a[i0] = stamp
            nq = 1
            head = 0
            best_s = -1
            best = kv[i0] - 1e-12 * max(1.0, abs(kv[i0]))  # only a piece worth serving from
            while head < nq:
                a = queue[head]
                head += 1
                lo = a // M  # the periods this arrival reaches first
                hi = min(lo + K, T - 1)
                for s in range(lo, hi + 1):
                    if seen_p[s] == stamp:
                        continue
                    seen_p[s] = stamp
                    par_a[s] = a
                    if cur[s] < npc[s]:
                        cost_s = b * s + price[s, cur[s]]
                        if cost_s < best:
                            best = cost_s
                            best_s = s
                for s in range(lo, hi + 1):
                    # arrivals served in s can move elsewhere, but (no negative cycle) only to pieces that
                    # cost at least what s's dearest piece in use costs: no use looking beyond it
                    if par_a[s] != a or seen_p[s] != stamp or b * s + mused[s] >= best:
                        continue
                    for a2 in range(max(0, s - K), s + 1):
                        for m2 in range(M):
                            i2 = a2 * M + m2
                            if seen_a[i2] != stamp and x[a2, m2, s - a2] > tol:
                                seen_a[i2] = stamp
                                par_p[i2] = s
                                queue[nq] = i2
                                nq += 1
            if best_s < 0:  # nothing worth serving it from: the rest is lost
                break
            delta = min(rem, room[best_s, cur[best_s]])
            a = par_a[best_s]
            while a != i0:
                s2 = par_p[a]
                ta = a // M
                delta = min(delta, x[ta, a - ta * M, s2 - ta])
                a = par_a[s2]
            a = par_a[best_s]
            ta = a // M
            x[ta, a - ta * M, best_s - ta] += delta
            while a != i0:
                s2 = par_p[a]
                ta = a // M
                x[ta, a - ta * M, s2 - ta] -= delta
                if x[ta, a - ta * M, s2 - ta] < tol:
                    x[ta, a - ta * M, s2 - ta] = 0.0
                a = par_a[s2]
                ta = a // M
                x[ta, a - ta * M, s2 - ta] += delta
            mused[best_s] = price[best_s, cur[best_s]]
            room[best_s, cur[best_s]] -= delta
            while cur[best_s] < npc[best_s] and room[best_s, cur[best_s]] <= tol:
                cur[best_s] += 1
            rem -= delta
    return _flow_finish(d, c, F, u, b, L, K, x, out_v, out_loss, out_p, out_q, c0, tw, tp, nt, wt, used, lb, ub,
                        mu, r, kv, tot, tol, scale)


@njit(cache=True, nogil=True, error_model="numpy")
def _flow_finish(d, c, F, u, b, L, K, x, out_v, out_loss, out_p, out_q, c0, tw, tp, nt, wt, used, lb, ub, mu, r,
                 kv, tot, tol, scale):
    """Cost, backlog and verified duals of a chain's flows ``x[t, m, j]``; returns ``(cost, backlog, ok)``.

    Shared by the successive shortest paths and the streams DP: the flows fix the losses
    (``out_loss``), the flex bought (``out_v``) and the cost; the duals are per period a price
    of capacity within its pieces' bounds, the least solution of the difference constraints
    the flows impose, then checked by strong duality (``ok``). ``r``/``kv``: per arrival
    ``t M + m``, the cost of losing a unit and ``r + b t``.
    """
    T, M = d.shape
    J = c.shape[1]
    N = T * M
    # flows, flex and cost
    cost = 0.0
    backlog = 0.0
    for s in range(T):
        tot[s] = 0.0
    for t in range(T):
        for m in range(M):
            served = 0.0
            for j in range(K + 1):
                if t + j < T:
                    served += x[t, m, j]
                    tot[t + j] += x[t, m, j]
                    backlog += j * x[t, m, j]
            out_loss[t, m] = max(d[t, m] - served, 0.0)
            backlog += min(K, T - t) * out_loss[t, m]
            cost += L[t, m] * out_loss[t, m]
    cost += b * backlog
    for s in range(T):
        used[s] = min(max(tot[s] - c0[s], 0.0), wt[s])
        top = c0[s] + used[s]
        for jr in range(J):
            v = min(max(top - c[s, jr], 0.0), F[s, jr]) if J > 1 else used[s]
            out_v[s, jr] = v
            cost += u[jr] * v
    # duals: per period a price mu_s of capacity within the pieces' bounds, and difference constraints
    # mu_s2 >= mu_s - b (s2 - s) for each arrival served in s and s2 in its window (a_i = kv_i - b s - mu_s
    # must be the largest such value); an arrival with loss has a_i = 0
    for s in range(T):
        lb[s] = 0.0
        ub[s] = _INF
        _piece_bounds(s, tot[s], c0, tw, tp, nt, wt, used, lb, ub, tol)
    for i in range(N):
        t = i // M
        m = i - t * M
        for j in range(K + 1):
            s = t + j
            if s >= T:
                break
            val = kv[i] - b * s
            if out_loss[t, m] > tol:
                lb[s] = max(lb[s], val)
            if x[t, m, j] > tol:
                ub[s] = min(ub[s], val)
    for s in range(T):
        mu[s] = lb[s]
    changed = False
    for sweep in range(2 * T + 4):  # the least solution: longest paths from the lower bounds
        changed = False
        for ii in range(N):
            i = ii if sweep % 2 == 0 else N - 1 - ii  # forwards, then backwards: chains both ways settle fast
            t = i // M
            m = i - t * M
            for j in range(K + 1):
                s = t + j
                if s >= T:
                    break
                if x[t, m, j] <= tol:
                    continue
                for j2 in range(K + 1):
                    s2 = t + j2
                    if s2 >= T:
                        break
                    need = mu[s] - b * (s2 - s)
                    if mu[s2] < need - 1e-12 * max(1.0, abs(need)):
                        mu[s2] = need
                        changed = True
        if K <= 1 and sweep == 1:
            # constraints link neighbouring periods only: a longest path runs one way (a walk that turns
            # back adds -b + b = 0), so one sweep forwards and one backwards are exact
            changed = False
        if not changed:
            break
    if changed:
        return cost, backlog, False
    for s in range(T):
        if mu[s] > ub[s] + 1e-9 * max(1.0, abs(ub[s])):
            return cost, backlog, False
    dual = 0.0
    for s in range(T):
        good, term = _split(s, mu[s], tot[s], c, F, u, out_v, out_p, out_q, tol)
        if not good:
            return cost, backlog, False
        dual -= term
    for i in range(N):
        t = i // M
        m = i - t * M
        a = 0.0
        for j in range(K + 1):
            s = t + j
            if s >= T:
                break
            a = max(a, kv[i] - b * s - mu[s])
        dual += (r[i] - a) * d[t, m]
    return cost, backlog, abs(dual - cost) <= 1e-9 * max(1.0, abs(cost)) + 1e-9 * scale


@njit(cache=True, nogil=True, error_model="numpy")
def _streams_dp(d, L, b, K, x, c0, tw, tp, nt, wt, D, order_m, seg_s, seg_l, seg_r, v0, nseg, ms, ml, mt, mlo, nmv,
                left, ldum):
    """Flows ``x[t, m, j]`` of a chain of ``M`` streams with ``max_delay`` ``K`` <= 1, by the DP of :func:`_chain`.

    Which stream a unit belongs to matters only once it is lost (every stream waits at the
    same backlog cost), so each period's arrivals are one cohort of ``D_t`` units whose loss
    costs ``lost_t(x)``: the ``x`` cheapest units, streams by ascending loss weight (convex,
    piecewise linear). With ``K`` = 1 the DP is :func:`_chain`'s with two changes: the units
    carried out of the horizon cost ``lost_{T-1}``, and ``V_t``, the cost from ``t`` on of
    ``B`` units carried into ``t``, merges ``lost_{t-1}``'s pieces with the slopes of serving
    them (``R``) instead of cutting ``R`` at one loss weight; ``seg_r`` marks the segments
    that are served. Served units are taken from the dearest streams first, so the lost ones
    are the cheapest. With ``K`` = 0 each period is a greedy match of units (dearest first)
    with capacity (cheapest first).
    """
    T, M = d.shape
    for t in range(T):
        D[t] = 0.0
        for m in range(M):  # insertion sort by loss weight, ascending (M is small)
            order_m[t, m] = m
            D[t] += d[t, m]
            for k in range(K + 1):
                x[t, m, k] = 0.0
        for m in range(1, M):
            k = order_m[t, m]
            i = m - 1
            while i >= 0 and L[t, order_m[t, i]] > L[t, k]:
                order_m[t, i + 1] = order_m[t, i]
                i -= 1
            order_m[t, i + 1] = k
    if K == 0:
        for t in range(T):
            a = M - 1
            urem = d[t, order_m[t, a]]
            piece = -1
            prem = c0[t]
            price = 0.0
            while True:
                while a >= 0 and urem <= 0:
                    a -= 1
                    if a >= 0:
                        urem = d[t, order_m[t, a]]
                while prem <= 0 and piece + 1 < nt[t]:
                    piece += 1
                    prem = tw[t, piece]
                    price = tp[t, piece]
                if a < 0 or prem <= 0 or L[t, order_m[t, a]] <= price:
                    break
                step = min(urem, prem)
                x[t, order_m[t, a], 0] += step
                urem -= step
                prem -= step
        return
    # V_T(B) = lost_{T-1}(B)
    k = 0
    for a in range(M):
        m = order_m[T - 1, a]
        if d[T - 1, m] > 0:
            seg_s[T, k] = L[T - 1, m]
            seg_l[T, k] = d[T - 1, m]
            seg_r[T, k] = False
            k += 1
    seg_s[T, k] = L[T - 1, order_m[T - 1, M - 1]]
    seg_l[T, k] = _INF
    seg_r[T, k] = False
    nseg[T] = k + 1
    v0[T] = 0.0
    for t in range(T - 1, -1, -1):
        m_lo, nm = _build_m(t, D, tw, tp, nt, b, ldum, 1, seg_s, seg_l, v0, nseg, ms[t], ml[t], mt[t])
        mlo[t] = m_lo
        nmv[t] = nm
        if t == 0:
            continue
        mst = ms[t]
        mlt = ml[t]
        val, j, off = _at_free(m_lo, mst, mlt, c0[t], wt[t])  # M(c0_t), and where c0_t falls
        v0[t] = val
        # V_t = lost_{t-1} merged with R(s) = M(c0_t - s) (M leftwards from c0_t, slopes negated), on [0, D_{t-1}]
        k = 0
        jj = j
        length = off
        fin = 0.0
        room = D[t - 1]
        a = 0
        prem = d[t - 1, order_m[t - 1, 0]]
        while fin < room:
            while jj >= 0 and length <= 0:
                jj -= 1
                if jj >= 0:
                    length = mlt[jj]
            while a < M and prem <= 0:
                a += 1
                if a < M:
                    prem = d[t - 1, order_m[t - 1, a]]
            if a >= M:
                break
            lp = L[t - 1, order_m[t - 1, a]]
            if jj >= 0 and -mst[jj] < lp:
                slope = -mst[jj]
                step = min(length, room - fin)
                length -= step
                served = True
            else:
                slope = lp
                step = min(prem, room - fin)
                prem -= step
                served = False
            fin += step
            if k > 0 and seg_s[t, k - 1] == slope and seg_r[t, k - 1] == served:
                seg_l[t, k - 1] += step
            else:
                seg_s[t, k] = slope
                seg_l[t, k] = step
                seg_r[t, k] = served
                k += 1
        seg_s[t, k] = L[t - 1, order_m[t - 1, M - 1]]
        seg_l[t, k] = _INF
        seg_r[t, k] = False
        nseg[t] = k + 1
    # forward pass: the amounts, then the streams (dearest first)
    carry = 0.0
    for t in range(T):
        s_old = 0.0
        if t > 0 and carry > 0:
            rest = carry
            for k in range(nseg[t]):
                if rest <= 0:
                    break
                step = min(seg_l[t, k], rest)
                if seg_r[t, k]:
                    s_old += step
                rest -= step
            give = s_old
            for a in range(M - 1, -1, -1):
                m = order_m[t - 1, a]
                step = min(left[t - 1, m], give)
                x[t - 1, m, 1] = step
                give -= step
        _, knew = _walk(nmv[t], ml[t], mt[t], nt[t], c0[t] - s_old, wt[t])
        s_new = min(knew, D[t])
        give = s_new
        for a in range(M - 1, -1, -1):
            m = order_m[t, a]
            step = min(d[t, m], give)
            x[t, m, 0] = step
            left[t, m] = d[t, m] - step
            give -= step
        carry = D[t] - s_new


@njit(cache=True, nogil=True, error_model="numpy")
def _dp_scratch(T, J, cap):
    """The DP's scratch, shared by its drivers: the value functions' segments (``seg_s``, ``seg_l``, ``v0``,
    ``nseg``), ``M_t``'s (``ms``, ``ml``, ``mt``, ``mlo``, ``nmv``) and the tiers (``c0``, ``tw``, ``tp``, ``nt``,
    ``wt``, ``used``, ``order``); ``cap`` segments a period."""
    return (np.zeros((T + 1, cap)), np.zeros((T + 1, cap)), np.zeros(T + 1), np.zeros(T + 1, np.int64),
            np.zeros((T, cap)), np.zeros((T, cap)), np.zeros((T, J), np.int64), np.zeros(T), np.zeros(T, np.int64),
            np.zeros(T), np.zeros((T, J)), np.zeros((T, J)), np.zeros(T, np.int64), np.zeros(T), np.zeros(T),
            np.zeros(J, np.int64))


@njit(cache=True, nogil=True, error_model="numpy")
def _solve_all_streams(d, c, F, u, b, L, K, cost, backlog, ok, x, v, loss, p, q):
    """:func:`_solve_all_flow` for ``K`` <= 1: flows by :func:`_streams_dp`, then :func:`_flow_finish`."""
    C, T, M = d.shape
    J = c.shape[2]
    N = T * M
    cap = T * (J + M + 3) + 8
    seg_s, seg_l, v0, nseg, ms, ml, mt, mlo, nmv, c0, tw, tp, nt, wt, used, order = _dp_scratch(T, J, cap)
    seg_r = np.zeros((T + 1, cap), np.bool_)
    D = np.zeros(T)
    order_m = np.zeros((T, M), np.int64)
    left = np.zeros((T, M))
    ldum = np.zeros(T)
    lb, ub, mu, tot = np.zeros(T), np.zeros(T), np.zeros(T), np.zeros(T)
    r, kv = np.zeros(N), np.zeros(N)
    for i in range(C):
        _tiers(c[i], F[i], u[i], c0, tw, tp, nt, wt, order)
        scale = 1.0
        for t in range(T):
            scale = max(scale, c0[t] + wt[t])
            for m in range(M):
                scale = max(scale, d[i, t, m])
                r[t * M + m] = b[i] * min(K, T - t) + L[i, t, m]
                kv[t * M + m] = r[t * M + m] + b[i] * t
        _streams_dp(d[i], L[i], b[i], K, x[i], c0, tw, tp, nt, wt, D, order_m, seg_s, seg_l, seg_r, v0, nseg, ms, ml,
                    mt, mlo, nmv, left, ldum)
        cst, blg, good = _flow_finish(d[i], c[i], F[i], u[i], b[i], L[i], K, x[i], v[i], loss[i], p[i], q[i], c0, tw,
                                      tp, nt, wt, used, lb, ub, mu, r, kv, tot, 1e-12 * scale, scale)
        cost[i] = cst
        backlog[i] = blg
        ok[i] = good


@njit(cache=True, nogil=True, error_model="numpy")
def _solve_all_flow(d, c, F, u, b, L, K, cost, backlog, ok, x, v, loss, p, q):
    C, T, M = d.shape
    J = c.shape[2]
    N = T * M
    c0 = np.zeros(T)
    tw = np.zeros((T, J))
    tp = np.zeros((T, J))
    nt = np.zeros(T, np.int64)
    wt = np.zeros(T)
    used = np.zeros(T)
    order = np.zeros(J, np.int64)
    room = np.zeros((T, J + 1))
    price = np.zeros((T, J + 1))
    npc = np.zeros(T, np.int64)
    cur = np.zeros(T, np.int64)
    seen_p = np.zeros(T, np.int64)
    seen_a = np.zeros(N, np.int64)
    par_a = np.zeros(T, np.int64)
    par_p = np.zeros(N, np.int64)
    queue = np.zeros(N + 1, np.int64)
    lb, ub, mu, tot, mused = np.zeros(T), np.zeros(T), np.zeros(T), np.zeros(T), np.zeros(T)
    r, kv = np.zeros(N), np.zeros(N)
    for i in range(C):
        cst, blg, good = _chain_flow(d[i], c[i], F[i], u[i], b[i], L[i], K, x[i], v[i], loss[i], p[i], q[i], c0, tw,
                                     tp, nt, wt, used, order, room, price, npc, cur, seen_p, seen_a, par_a, par_p,
                                     queue, lb, ub, mu, r, kv, tot, mused)
        cost[i] = cst
        backlog[i] = blg
        ok[i] = good


@njit(cache=True, nogil=True, error_model="numpy")
def _solve_all(d, c, F, u, b, L, K, cost, ok, n, o, v, loss, p, q):
    C, T = d.shape
    J = c.shape[2]
    seg_s, seg_l, v0, nseg, ms, ml, mt, mlo, nmv, c0, tw, tp, nt, wt, used, order = _dp_scratch(T, J, T * (J + 2) + 8)
    vfin = np.zeros(T + 1)
    work = np.zeros((7, T))
    for i in range(C):
        cst, good = _chain(d[i], c[i], F[i], u[i], b[i], L[i], K, n[i], o[i], v[i], loss[i], p[i], q[i],
                           seg_s, seg_l, v0, nseg, vfin, ms, ml, mt, mlo, nmv, c0, tw, tp, nt, wt, used, order,
                           work)
        cost[i] = cst
        ok[i] = good


def solve_chains(d, c, F, u, b, L, K: int) -> dict:
    """Solve ``C`` chains at once; returns flows and duals.

    One resource: ``d``, ``c``, ``F``, ``L`` are ``[C, T]``, ``u`` and ``b`` ``[C]`` (or
    scalars). ``J`` resources in series (every unit served needs capacity on each): ``c``
    and ``F`` are ``[C, T, J]`` and ``u`` broadcasts to ``[C, J]``; ``flex``, ``p`` and ``q``
    are then ``[C, T, J]``.

    ``K`` is ``max_delay``: 0 and 1 by the DP above, 2 and more by successive shortest
    paths (:func:`solve_flows`, see the module's notes).

    A chain whose duals fail the strong-duality check (near-degenerate ties met by
    rounding) is re-solved by HiGHS (:func:`solve_chain_lp`,
    :func:`peakplan.recourse_lp.solve_chain_lp_series`,
    :func:`peakplan.recourse_lp.solve_chain_lp_delay`); ``ok`` marks the fast solver's
    chains and ``fallback`` counts the others.

    Returns ``cost [C]``, ``ok [C]`` (the duals verified), ``backlog [C]`` (unit-periods
    waited, lost units included: the backlog cost is ``b`` times it), ``served_new``,
    ``served_old`` (served in ``t``, arrived earlier), ``loss`` (per arrival), all ``[C, T]``,
    ``flex`` and the duals ``p``, ``q``; with ``K >= 2`` also ``by_age [C, T, K + 1]``
    (arrival ``t`` served in ``t + j``).
    """
    if int(K) != K or K < 0:
        raise ValueError(f"chains need a whole max_delay >= 0, got {K}")
    K = int(K)
    d = np.require(np.asarray(d, float), requirements=["C", "W"])  # one compiled signature: writeable C arrays
    C, T = d.shape
    series = np.ndim(c) == 3
    J = np.shape(c)[2] if series else 1

    def full(x, shape):
        return np.require(np.broadcast_to(np.asarray(x, float), shape), requirements=["C", "W"])

    if series:
        c, F, u = full(c, (C, T, J)), full(F, (C, T, J)), full(u, (C, J))
    else:
        c, F = full(c, (C, T))[:, :, None], full(F, (C, T))[:, :, None]
        u = full(u, (C,))[:, None]
    c, F, u = (np.require(x, requirements=["C", "W"]) for x in (c, F, u))
    L, b = full(L, (C, T)), full(b, (C,))
    if c.shape[2] < 1:
        raise ValueError("chains need at least one resource (J >= 1)")
    if not all(np.isfinite(x).all() for x in (d, c, F, u, b, L)):
        raise ValueError("chains need finite demand, capacity, flex caps and prices")
    if np.any(c < 0) or np.any(F < 0) or np.any(d < 0) or np.any(u < 0):
        raise ValueError("chains need non-negative demand, capacity, flex caps and flex prices")
    out = {k: np.zeros((C, T)) for k in ("served_new", "served_old", "loss")}
    out.update({k: np.zeros((C, T, J)) for k in ("flex", "p", "q")})
    cost = np.zeros(C)
    ok = np.zeros(C, bool)
    if K >= 2:
        flow = solve_flows(d[:, :, None], c, F, u, b, L[:, :, None], K, fallback=False)
        cost, backlog, ok = flow["cost"], flow["backlog"], flow["ok"]
        out["by_age"] = flow["by_age"][:, :, 0]
        out["loss"] = flow["loss"][:, :, 0]
        out.update({k: flow[k] for k in ("flex", "p", "q")})
        out["served_new"] = out["by_age"][:, :, 0].copy()
        for j in range(1, min(K, T - 1) + 1):  # served in t, arrived in t - j
            out["served_old"][:, j:] += out["by_age"][:, : T - j, j]
    else:
        _solve_all(d, c, F, u, b, L, K, cost, ok, out["served_new"], out["served_old"], out["flex"], out["loss"],
                   out["p"], out["q"])
    for i in np.flatnonzero(~ok):  # near-degenerate chain where the duals did not verify
        if K >= 2:
            from peakplan.recourse_lp import solve_chain_lp_delay

            ref = solve_chain_lp_delay(d[i], c[i], F[i], u[i], float(b[i]), L[i], K)
            out["by_age"][i] = ref["by_age"]
            backlog[i] = ref["backlog"]
        elif series:
            from peakplan.recourse_lp import solve_chain_lp_series

            ref = solve_chain_lp_series(d[i], c[i], F[i], u[i], float(b[i]), L[i], K)
        else:
            ref = solve_chain_lp(d[i], c[i, :, 0], F[i, :, 0], float(u[i, 0]), float(b[i]), L[i], K)
            ref.update({k: ref[k][:, None] for k in ("flex", "p", "q")})
        cost[i] = ref["cost"]
        for k in ("served_new", "served_old", "flex", "loss", "p", "q"):
            out[k][i] = ref[k]
    if K < 2:  # unit-periods waited: (max_delay 1) every unit not served on arrival waits one period
        backlog = (d - out["served_new"]).sum(axis=1) if K == 1 else np.zeros(C)
    out["backlog"] = backlog
    if not series:
        out.update({k: out[k][:, :, 0] for k in ("flex", "p", "q")})
    out["cost"] = cost
    out["ok"] = ok
    out["fallback"] = int((~ok).sum())
    return out


def solve_flows(d, c, F, u, b, L, K: int, fallback: bool = True, dp: bool = True) -> dict:
    """Solve ``C`` chains, each with ``M`` streams of arrivals sharing its capacity.

    ``K`` <= 1: by the streams DP (:func:`_streams_dp`, about 2x faster on the shared network's
    chains); ``K`` >= 2, or ``dp=False``: by successive shortest paths. Both hand their flows
    to the same dual computation and strong-duality check.

    ``d``, ``L``: ``[C, T, M]`` (demand and loss weight per stream, in units of capacity);
    ``c``, ``F``: ``[C, T, J]`` (``J`` resources in series); ``u``: ``[C, J]`` or broadcast;
    ``b`` (backlog cost per unit of capacity and period, the same for every stream): ``[C]``
    or a scalar; ``K`` = ``max_delay`` >= 0. Several segments sharing one resource are one
    chain with one stream each (their demand and loss weights scaled by their load). With
    ``fallback``, a chain whose duals do not verify is re-solved by HiGHS
    (:func:`peakplan.recourse_lp.solve_chain_lp_delay`).

    Returns ``cost``, ``backlog`` (unit-periods waited, lost units included), ``ok``, all
    ``[C]``; ``loss`` ``[C, T, M]``; ``by_age`` ``[C, T, M, K + 1]``; ``flex``, ``p``, ``q``
    ``[C, T, J]``; ``fallback`` (how many chains went to HiGHS).
    """
    if int(K) != K or K < 0:
        raise ValueError(f"chains need a whole max_delay >= 0, got {K}")
    K = int(K)
    d = np.require(np.asarray(d, float), requirements=["C", "W"])
    if d.ndim != 3:
        raise ValueError(f"d must be [C, T, M], got shape {d.shape}")
    C, T, M = d.shape
    J = np.shape(c)[-1]

    def full(x, shape):
        return np.require(np.broadcast_to(np.asarray(x, float), shape), requirements=["C", "W"])

    c, F, u = full(c, (C, T, J)), full(F, (C, T, J)), full(u, (C, J))
    L, b = full(L, (C, T, M)), full(b, (C,))
    if not all(np.isfinite(x).all() for x in (d, c, F, u, b, L)):
        raise ValueError("chains need finite demand, capacity, flex caps and prices")
    if np.any(c < 0) or np.any(F < 0) or np.any(d < 0) or np.any(u < 0):
        raise ValueError("chains need non-negative demand, capacity, flex caps and flex prices")
    out = {"cost": np.zeros(C), "backlog": np.zeros(C), "ok": np.zeros(C, bool), "loss": np.zeros((C, T, M)),
           "by_age": np.zeros((C, T, M, K + 1))}
    out.update({k: np.zeros((C, T, J)) for k in ("flex", "p", "q")})
    solve = _solve_all_streams if K <= 1 and dp else _solve_all_flow
    solve(d, c, F, u, b, L, K, out["cost"], out["backlog"], out["ok"], out["by_age"], out["flex"], out["loss"],
          out["p"], out["q"])
    bad = np.flatnonzero(~out["ok"]) if fallback else np.zeros(0, int)
    for i in bad:
        from peakplan.recourse_lp import solve_chain_lp_delay

        ref = solve_chain_lp_delay(d[i], c[i], F[i], u[i], float(b[i]), L[i], K)
        for k in ("cost", "backlog"):
            out[k][i] = ref[k]
        for k in ("loss", "by_age"):
            out[k][i] = ref[k].reshape(out[k][i].shape)
        for k in ("flex", "p", "q"):
            out[k][i] = ref[k]
    out["fallback"] = len(bad)
    return out


def solve_chain_lp(d, c, F, u: float, b: float, L, K: int) -> dict:
    """One chain's LP solved by HiGHS (``scipy.optimize.linprog``): the reference and the fallback.

    Same model and outputs as one row of :func:`solve_chains` (``served_new``, ``served_old``,
    ``flex``, ``loss``, ``p``, ``q``, ``cost``), the duals read from the LP's marginals.
    """
    import scipy.sparse as sp
    from scipy.optimize import linprog

    d, c, F, L = (np.asarray(x, float) for x in (d, c, F, L))
    T = d.shape[0]
    # columns: n_t (0..T-1), o_t (T..2T-1, o_0 = 0), v_t (2T..3T-1)
    cost = np.zeros(3 * T)
    rows, cols, vals = [], [], []
    if K == 1:
        cost[:T] = -(b + L)
        cost[T + 1:2 * T] = -L[:-1]
        const = float(((b + L) * d).sum())
    else:
        cost[:T] = -L
        const = float((L * d).sum())
    cost[2 * T:] = u
    for t in range(T):  # arrival rows: n_t + o_{t+1} <= d_t
        rows += [t]
        cols += [t]
        vals += [1.0]
        if K == 1 and t + 1 < T:
            rows += [t]
            cols += [T + t + 1]
            vals += [1.0]
    for t in range(T):  # capacity rows: o_t + n_t - v_t <= c_t
        rows += [T + t] * 3
        cols += [t, T + t, 2 * T + t]
        vals += [1.0, 1.0, -1.0]
    A = sp.csr_matrix((vals, (rows, cols)), shape=(2 * T, 3 * T))
    bounds = [(0, None)] * T + [(0, 0)] + [(0, None if K == 1 else 0)] * (T - 1) + [(0, float(f)) for f in F]
    r = linprog(cost, A_ub=A, b_ub=np.concatenate([d, c]), bounds=bounds, method="highs")
    if r.status != 0:
        raise RuntimeError(f"chain LP: {r.message}")
    x = r.x
    n, o, v = x[:T], x[T:2 * T], x[2 * T:]
    loss = d - n - np.append(o[1:], 0.0) if K == 1 else d - n
    p = -r.ineqlin.marginals[T:]
    q = -r.upper.marginals[2 * T:]
    return {"cost": r.fun + const, "served_new": n, "served_old": o, "flex": v, "loss": np.maximum(loss, 0.0),
            "p": p, "q": q}
