"""Exact second stage of the SAA model for single-resource chains, solved by dynamic programming.

The optimizer's second stage (:func:`peakplan.optimize.define_second_stage`) is an LP per
path. When every segment is served by one resource of its own, has no storage and
``max_delay`` is 0 or 1, that LP separates into one *chain* per (path, segment) whose only
inputs are the period's demand ``d_t``, the free capacity ``c_t`` (in units of the
segment), a flex cap ``F_t`` priced ``u`` per unit, the backlog cost ``b`` per unit and
period and a loss weight ``L_t`` per unit of arrival ``t`` lost (the penalty, plus any
Lagrange multiplier the master puts on lost or served units of the service window).

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

__all__ = ["solve_chains"]

_INF = np.inf


@njit(cache=True, nogil=True, error_model="numpy")
def _chain(d, c, F, u, b, L, K, out_n, out_o, out_v, out_loss, out_p, out_q, seg_s, seg_l, v0, nseg,
           vfin, ms, ml, mlo, nmv, fav, work):
    """Solve one chain; returns ``(cost, ok)``. The other arguments are outputs and scratch."""
    T = d.shape[0]
    if K == 1:  # V_T(B) = L_{T-1} B: units carried out of the horizon are lost
        v0[T] = 0.0
        seg_s[T, 0] = L[T - 1]
        seg_l[T, 0] = _INF
        nseg[T] = 1
    for t in range(T - 1, -1, -1):
        m_lo, nm, flex_at = _build_m(t, d, F, u, b, L, K, seg_s, seg_l, v0, nseg, ms[t], ml[t])
        mlo[t] = m_lo
        nmv[t] = nm
        fav[t] = flex_at
        if K == 0 or t == 0:
            continue
        mst = ms[t]
        mlt = ml[t]
        # M(c_t), and where c_t falls: segment j at offset off
        val = m_lo
        z = -F[t]
        j = 0
        off = 0.0
        while True:
            room = c[t] - z
            if mlt[j] >= room:
                off = room
                val += mst[j] * room
                break
            val += mst[j] * mlt[j]
            z += mlt[j]
            j += 1
        # V_t(B) = min_s L_{t-1} (B - s) + R(s), R(s) = M(c_t - s): M leftwards from c_t, slopes negated
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
        nm = nmv[t]
        flex_at = fav[t]
        mst = ms[t]
        mlt = ml[t]
        s_old = 0.0
        if K == 1 and t > 0 and carry > 0:
            s_old = min(carry, vfin[t])
        zt = c[t] - s_old
        z = -F[t]
        vflex = F[t]
        knew = 0.0
        for j in range(nm):
            if z >= zt:
                break
            step = min(mlt[j], zt - z)
            if j == flex_at:
                vflex -= step
            else:
                knew += step
            z += step
        s_new = min(knew, d[t])
        out_n[t] = s_new
        out_v[t] = vflex
        cost += u * vflex
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
    ok = _duals(d, c, F, u, b, L, K, out_n, out_o, out_v, out_loss, out_p, out_q, cost, work)
    return cost, ok


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _build_m(t, d, F, u, b, L, K, seg_s, seg_l, v0, nseg, ms, ml):
    """Segments of ``M_t(z) = min_v u v + N_t(z + v)`` on ``z >= -F_t`` into ``ms``/``ml``.

    ``N_t(k)`` is the cost of the new units and of the future given ``k`` units of capacity
    for them; its slopes are minus the value of serving one more new unit. Returns
    ``(M(-F_t), number of segments, index of the flex segment or -1)``.
    """
    dt = d[t]
    k = 0
    flex_at = -1
    placed = F[t] <= 0
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
            # flex (-u, F_t) goes before the first N segment whose value does not exceed u
            if not placed and slope >= -u:
                ms[k] = -u
                ml[k] = F[t]
                flex_at = k
                k += 1
                placed = True
            if length > 0:
                ms[k] = slope
                ml[k] = length
                k += 1
    else:
        n0 = L[t] * dt
        if dt > 0:
            if not placed and -L[t] >= -u:
                ms[k] = -u
                ml[k] = F[t]
                flex_at = k
                k += 1
                placed = True
            ms[k] = -L[t]
            ml[k] = dt
            k += 1
    if not placed:
        ms[k] = -u
        ml[k] = F[t]
        flex_at = k
        k += 1
    ms[k] = 0.0
    ml[k] = _INF
    k += 1
    return u * max(F[t], 0.0) + n0, k, flex_at


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _duals(d, c, F, u, b, L, K, n, o, v, loss, p, q, cost, work):
    """An optimal dual ``p`` (and ``q``) by complementary slackness; True if strong duality holds."""
    T = d.shape[0]
    scale = 1.0
    for t in range(T):
        scale = max(scale, d[t], c[t])
    tol = 1e-9 * scale
    lb, ub, dlo, dhi, jlo, jhi = work[0], work[1], work[2], work[3], work[4], work[5]
    lb[:] = 0.0
    ub[:] = _INF
    dlo[:] = -_INF
    dhi[:] = _INF
    for t in range(T):
        slack = c[t] + v[t] - o[t] - n[t]
        if slack > tol:
            ub[t] = 0.0
        if v[t] > tol:
            lb[t] = max(lb[t], u)
        if v[t] < F[t] - tol:
            ub[t] = min(ub[t], u)
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
    p[T - 1] = jlo[T - 1] if jlo[T - 1] <= jhi[T - 1] else jhi[T - 1]
    for t in range(T - 2, -1, -1):
        lo = max(jlo[t], p[t + 1] - dhi[t])
        hi = min(jhi[t], p[t + 1] - dlo[t])
        p[t] = lo if lo <= hi else 0.5 * (lo + hi)
    # dual objective
    dual = 0.0
    for t in range(T):
        q[t] = max(0.0, p[t] - u)
        if K == 1:
            a = max(b + L[t] - p[t], 0.0)
            if t + 1 < T:
                a = max(a, L[t] - p[t + 1])
            dual += (b + L[t] - a) * d[t]
        else:
            a = max(L[t] - p[t], 0.0)
            dual += (L[t] - a) * d[t]
        dual -= p[t] * c[t] + q[t] * F[t]
    return abs(dual - cost) <= 1e-9 * max(1.0, abs(cost)) + 1e-9 * scale


@njit(cache=True, nogil=True, error_model="numpy")
def _solve_all(d, c, F, u, b, L, K, cost, ok, n, o, v, loss, p, q):
    C, T = d.shape
    cap = 2 * T + 8
    seg_s = np.zeros((T + 1, cap))
    seg_l = np.zeros((T + 1, cap))
    v0 = np.zeros(T + 1)
    nseg = np.zeros(T + 1, np.int64)
    vfin = np.zeros(T + 1)
    ms = np.zeros((T, cap))
    ml = np.zeros((T, cap))
    mlo = np.zeros(T)
    nmv = np.zeros(T, np.int64)
    fav = np.zeros(T, np.int64)
    work = np.zeros((6, T))
    for i in range(C):
        cst, good = _chain(d[i], c[i], F[i], u[i], b[i], L[i], K, n[i], o[i], v[i], loss[i], p[i], q[i],
                           seg_s, seg_l, v0, nseg, vfin, ms, ml, mlo, nmv, fav, work)
        cost[i] = cst
        ok[i] = good


def solve_chains(d, c, F, u, b, L, K: int) -> dict:
    """Solve ``C`` chains at once. Arrays ``[C, T]`` (``u``, ``b``: ``[C]``); returns flows and duals.

    A chain whose DP duals fail the strong-duality check (near-degenerate ties met by
    rounding) is re-solved by :func:`solve_chain_lp`; ``ok`` marks the DP's chains and
    ``fallback`` counts the others.

    Returns ``cost [C]``, ``ok [C]`` (the DP's duals verified), ``served_new``, ``served_old``,
    ``flex``, ``loss`` (per arrival) and the duals ``p``, ``q``, all ``[C, T]``.
    """
    if K not in (0, 1):
        raise ValueError(f"chains need max_delay 0 or 1, got {K}")
    d = np.require(np.asarray(d, float), requirements=["C", "W"])  # one compiled signature: writeable C arrays
    C, T = d.shape

    def full(x, shape):
        return np.require(np.broadcast_to(np.asarray(x, float), shape), requirements=["C", "W"])

    c, F, L = full(c, (C, T)), full(F, (C, T)), full(L, (C, T))
    u, b = full(u, (C,)), full(b, (C,))
    if np.any(c < 0) or np.any(F < 0) or np.any(d < 0):
        raise ValueError("chains need non-negative demand, capacity and flex caps")
    out = {k: np.zeros((C, T)) for k in ("served_new", "served_old", "flex", "loss", "p", "q")}
    cost = np.zeros(C)
    ok = np.zeros(C, bool)
    _solve_all(d, c, F, u, b, L, K, cost, ok, out["served_new"], out["served_old"], out["flex"], out["loss"],
               out["p"], out["q"])
    for i in np.flatnonzero(~ok):  # near-degenerate chain where the DP's duals did not verify
        ref = solve_chain_lp(d[i], c[i], F[i], float(u[i]), float(b[i]), L[i], K)
        cost[i] = ref["cost"]
        for k in ("served_new", "served_old", "flex", "loss", "p", "q"):
            out[k][i] = ref[k]
    out["cost"] = cost
    out["ok"] = ok
    out["fallback"] = int((~ok).sum())
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
