"""Reference LP for one chain whose segment is served by ``J`` resources in series.

A generalisation of :func:`peakplan.recourse.solve_chain_lp`: every unit served in period
``t`` (new or old) needs one unit of capacity on *every* resource ``j``, each with its own
free capacity ``c_tj``, flex cap ``F_tj`` and flex price ``u_j`` (all in units of the
segment). With ``max_delay = 1``::

    min  sum_t b (d_t - n_t) + L_t (d_t - n_t - o_{t+1}) + sum_j u_j v_tj
    s.t. n_t + o_{t+1} <= d_t           (a_t)    arrival t served now or next period
         o_t + n_t - v_tj <= c_tj        (p_tj)   capacity of resource j
         0 <= v_tj <= F_tj               (q_tj)   flex cap

with ``o_0 = 0`` and ``o_T = 0`` (backlog left at the horizon is lost); with
``max_delay = 0`` there is no ``o`` and the cost is ``sum_t L_t (d_t - n_t) + sum_j u_j v_tj``.
The duals give the Benders cut ``dQ/dc_tj = -p_tj``, ``dQ/dF_tj = -q_tj``; with ``J >= 2``
they are often not unique (two resources binding at once share the value of a unit).
"""

from __future__ import annotations

import numpy as np

__all__ = ["solve_chain_lp_delay", "solve_chain_lp_series", "solve_chain_lp_stock"]


def _inputs(d, c, F, u, b, L) -> tuple:
    """One chain's inputs as float arrays: ``d``, ``L`` ``[T]``; ``c``, ``F`` ``[T, J]``; ``u`` ``[J]``; ``b``."""
    d, L = (np.asarray(x, float).reshape(-1) for x in (d, L))
    T = d.shape[0]
    c = np.asarray(c, float)
    c = c.reshape(T, -1) if c.ndim < 2 else c
    J = c.shape[1]
    F = np.asarray(F, float)
    F = np.broadcast_to(F.reshape(T, -1) if F.ndim == 1 else F, (T, J))
    u = np.broadcast_to(np.asarray(u, float), (J,))
    if c.shape != (T, J) or L.shape != (T,):
        raise ValueError(f"shapes: d {d.shape}, c {c.shape}, L {L.shape}; want [T], [T, J], [T]")
    if np.any(c < 0) or np.any(F < 0) or np.any(d < 0):
        raise ValueError("chains need non-negative demand, capacity and flex caps")
    return d, c, F, u, float(b), L


def solve_chain_lp_series(d, c, F, u, b: float, L, K: int) -> dict:
    """One chain with ``J`` series resources solved by HiGHS (``scipy.optimize.linprog``).

    ``d``, ``L``: ``[T]``; ``c``, ``F``: ``[T, J]``; ``u``: ``[J]``; ``b``: scalar; ``K``: 0 or 1.
    Returns ``cost`` (the chain's cost, constant included), ``served_new``, ``served_old``
    (``served_old[t]`` is served in ``t``, arrived in ``t - 1``), ``loss`` (per arrival), all
    ``[T]``, and ``flex``, ``p``, ``q``, all ``[T, J]``, the duals read from the marginals.
    With ``J = 1`` it is the same LP, with the same columns and rows, as
    :func:`peakplan.recourse.solve_chain_lp`.
    """
    import scipy.sparse as sp
    from scipy.optimize import linprog

    if K not in (0, 1):
        raise ValueError(f"chains need max_delay 0 or 1, got {K}")
    d, c, F, u, b, L = _inputs(d, c, F, u, b, L)
    T, J = c.shape
    # columns: n_t (0..T-1), o_t (T..2T-1, o_0 = 0), v_tj (2T + t J + j)
    # rows: arrival t (0..T-1), capacity (t, j) (T + t J + j)
    nv = T * J
    obj = np.zeros(2 * T + nv)
    if K == 1:
        obj[:T] = -(b + L)
        obj[T + 1:2 * T] = -L[:-1]
        const = float(((b + L) * d).sum())
    else:
        obj[:T] = -L
        const = float((L * d).sum())
    obj[2 * T:] = np.tile(u, T)
    t_idx = np.arange(T)
    # arrival rows: n_t + o_{t+1} <= d_t
    a_rows = [t_idx]
    a_cols = [t_idx]
    if K == 1:
        a_rows.append(t_idx[:-1])
        a_cols.append(T + t_idx[1:])
    # capacity rows: n_t + o_t - v_tj <= c_tj
    cap_row = T + np.arange(nv)
    cap_t = np.repeat(t_idx, J)
    rows = np.concatenate([*a_rows, cap_row, cap_row, cap_row])
    cols = np.concatenate([*a_cols, cap_t, T + cap_t, 2 * T + np.arange(nv)])
    vals = np.concatenate([*(np.ones(len(r)) for r in a_rows), np.ones(nv), np.ones(nv), -np.ones(nv)])
    A = sp.csr_matrix((vals, (rows, cols)), shape=(T + nv, 2 * T + nv))
    bounds = ([(0, None)] * T + [(0, 0)] + [(0, None if K == 1 else 0)] * (T - 1)
              + [(0, float(f)) for f in F.reshape(-1)])
    r = linprog(obj, A_ub=A, b_ub=np.concatenate([d, c.reshape(-1)]), bounds=bounds, method="highs")
    if r.status != 0:
        raise RuntimeError(f"chain LP: {r.message}")
    x = r.x
    n, o, v = x[:T], x[T:2 * T], x[2 * T:].reshape(T, J)
    loss = d - n - np.append(o[1:], 0.0) if K == 1 else d - n
    p = -r.ineqlin.marginals[T:].reshape(T, J)
    # HiGHS files a column's reduced cost under the bound its basis status names; a fixed
    # column (F_tj = 0) may be filed under the lower bound, so take both: q = max(0, -rc)
    rc = r.lower.marginals[2 * T:] + r.upper.marginals[2 * T:]
    q = np.maximum(-rc, 0.0).reshape(T, J)
    return {"cost": r.fun + const, "served_new": n, "served_old": o, "flex": v, "loss": np.maximum(loss, 0.0),
            "p": p, "q": q}


def solve_chain_lp_delay(d, c, F, u, b: float, L, K: int) -> dict:
    """One chain with any ``max_delay = K >= 0`` and ``J`` series resources, by HiGHS.

    Columns ``x_tmj``: stream ``m``'s arrival ``t`` served in ``t + j`` (``0 <= j <= K``,
    ``t + j < T``); ``d`` and ``L`` are ``[T]`` (one stream) or ``[T, M]`` (``M`` streams
    sharing the capacity, every unit served taking one unit of it)::

        min  sum_tm r_tm d_tm + sum_tmj (b j - r_tm) x_tmj + sum_si u_i v_si,   r_tm = b min(K, T - t) + L_tm
        s.t. sum_j x_tmj <= d_tm                              (a_tm)   arrival t of stream m
             sum_{t + j = s, m} x_tmj - v_si <= c_si           (p_si)   capacity of resource i in s
             0 <= v_si <= F_si                                 (q_si)   flex cap

    (a unit lost waits ``min(K, T - t)`` periods first: until it is ``K`` old, or to the
    horizon). With one stream, the same LP as :func:`solve_chain_lp_series` for ``K`` 0 and
    1, with other columns. The reference and the fallback of
    :func:`peakplan.recourse.solve_flows`. Returns its outputs plus ``by_age`` (``[T, K + 1]``,
    or ``[T, M, K + 1]``) and ``backlog`` (unit-periods waited, lost units included);
    ``loss`` has the shape of ``d``.
    """
    import scipy.sparse as sp
    from scipy.optimize import linprog

    if int(K) != K or K < 0:
        raise ValueError(f"max_delay must be a whole number >= 0, got {K}")
    K = int(K)
    d_in, L_in = np.asarray(d, float), np.asarray(L, float)
    streams = d_in.ndim == 2
    d2, L2 = (x.reshape(len(d_in), -1) for x in (d_in, L_in))
    if d2.shape != L2.shape:
        raise ValueError(f"shapes: d {d_in.shape}, L {L_in.shape}; want the same")
    _, c, F, u, b, _ = _inputs(d2[:, 0], c, F, u, b, L2[:, 0])
    if np.any(d2 < 0):
        raise ValueError("chains need non-negative demand, capacity and flex caps")
    T, J = c.shape
    M = d2.shape[1]
    t_of, m_of, j_of = (a.ravel() for a in np.meshgrid(np.arange(T), np.arange(M), np.arange(K + 1), indexing="ij"))
    keep = t_of + j_of < T
    t_of, m_of, j_of = t_of[keep], m_of[keep], j_of[keep]
    nx, nv = len(t_of), T * J
    wait = np.minimum(K, T - np.arange(T))
    r = b * wait[:, None] + L2  # [T, M]
    obj = np.concatenate([b * j_of - r[t_of, m_of], np.tile(u, T)])
    s_of = t_of + j_of
    # rows: arrival (t, m) (t M + m), capacity (s, i) (T M + s J + i)
    rows = np.concatenate([t_of * M + m_of, *(T * M + s_of * J + i for i in range(J)), T * M + np.arange(nv)])
    cols = np.concatenate([np.arange(nx)] * (J + 1) + [nx + np.arange(nv)])
    vals = np.concatenate([np.ones(nx * (J + 1)), -np.ones(nv)])
    A = sp.csr_matrix((vals, (rows, cols)), shape=(T * M + nv, nx + nv))
    bounds = [(0, None)] * nx + [(0, float(f)) for f in F.reshape(-1)]
    res = linprog(obj, A_ub=A, b_ub=np.concatenate([d2.reshape(-1), c.reshape(-1)]), bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"chain LP: {res.message}")
    by_age = np.zeros((T, M, K + 1))
    by_age[t_of, m_of, j_of] = res.x[:nx]
    v = res.x[nx:].reshape(T, J)
    loss = np.maximum(d2 - by_age.sum(axis=2), 0.0)
    served = np.bincount(s_of, weights=res.x[:nx], minlength=T)
    p = -res.ineqlin.marginals[T * M:].reshape(T, J)
    rc = res.lower.marginals[nx:] + res.upper.marginals[nx:]  # see solve_chain_lp_series
    q = np.maximum(-rc, 0.0).reshape(T, J)
    backlog = float((j_of * res.x[:nx]).sum() + (wait[:, None] * loss).sum())
    new = by_age[:, :, 0].sum(axis=1)
    out = {"cost": res.fun + float((r * d2).sum()), "served_new": new, "served_old": served - new, "flex": v,
           "loss": loss, "p": p, "q": q, "by_age": by_age, "backlog": backlog}
    if not streams:
        out["loss"], out["by_age"] = loss[:, 0], by_age[:, 0]
    return out


def solve_chain_lp_stock(d, c, F, u, b: float, L, K: int, pb, room, s0, h, eps=1e-5, d2=None, L2=None) -> dict:
    """One storable chain by HiGHS: :func:`solve_chain_lp_delay` with pre-build and stock.

    Columns ``x_tj`` (arrival ``t`` served in ``t + j``), ``v_si``, ``take_s`` (served in ``s``
    from the stock held at the end of ``s - 1``) and ``build_s <= pb_s`` (built into stock
    in ``s``, on the capacity of ``s``), as :func:`peakplan.optimize.define_second_stage`
    writes them, with ``stock_s = s0 + sum_{q <= s} (build_q - take_q)``::

        min  sum_t r_t d_t + sum_tj (b j - r_t) x_tj + sum_si u_i v_si + h sum_s stock_s - eps sum_s take_s
        s.t. sum_j x_tj <= d_t                                  arrival t
             served_s - take_s + build_s - v_si <= c_si         (p_si)  capacity of resource i in s
             take_s <= served_s,   take_s <= stock_{s-1},   stock_s <= room
             0 <= v_si <= F_si (q_si),   0 <= build_s <= pb_s

    ``d``, ``L``, ``pb`` ``[T, P]`` (with ``room``, ``s0``, ``h``, ``eps`` ``[P]``): ``P``
    storable streams on the same capacity, each with these columns and rows of its own (the
    capacity rows summing over them). ``d2``, ``L2`` (``[T, M2]``, optional): more streams
    sharing the capacity that cannot be stored, columns ``x2_tmj`` with their own arrival
    rows, each served unit taking a unit of every resource in ``s`` as ``x_tj`` does (and
    ``loss2``, ``by_age2`` ``[T, M2, K + 1]`` among the outputs).

    The reference and the fallback of :func:`peakplan.recourse_stock.solve_stock_chains`.
    Returns its outputs: ``cost``, ``backlog``, ``stock`` (unit-periods held), ``take``,
    ``loss``, ``by_age``, ``flex``, ``p``, ``q`` and ``pb_dual`` (``dQ/dpb_s = -pb_dual_s``);
    with ``P`` streams, ``stock``, ``take`` ``[P]``, ``loss``, ``pb_dual`` ``[T, P]`` and
    ``by_age`` ``[T, P, K + 1]``.
    """
    import scipy.sparse as sp
    from scipy.optimize import linprog

    if int(K) != K or K < 0:
        raise ValueError(f"max_delay must be a whole number >= 0, got {K}")
    K = int(K)
    one = np.ndim(d) == 1
    D = np.asarray(d, float).reshape(len(d), -1)  # [T, P]
    T, P = D.shape
    _, c, F, u, b, _ = _inputs(D[:, 0], c, F, u, b, np.zeros(T))
    J = c.shape[1]
    LL, PB = (np.broadcast_to(np.asarray(x, float).reshape(T, -1), (T, P)) for x in (L, pb))
    room, s0, h, eps = (np.broadcast_to(np.asarray(x, float).reshape(-1), (P,)) for x in (room, s0, h, eps))
    d2 = np.zeros((T, 0)) if d2 is None else np.asarray(d2, float).reshape(T, -1)
    L2 = np.zeros((T, 0)) if L2 is None else np.asarray(L2, float).reshape(T, -1)
    if d2.shape != L2.shape:
        raise ValueError(f"shapes: d2 {d2.shape}, L2 {L2.shape}; want the same")
    if np.any(D < 0) or np.any(d2 < 0):
        raise ValueError("chains need non-negative demand, capacity and flex caps")
    # streams: the P storable ones, then the M2 others; columns x_tmj of every stream first
    M2 = d2.shape[1]
    M = P + M2
    DD, LA = np.hstack([D, d2]), np.hstack([LL, L2])
    t_of, m_of, j_of = (a.ravel() for a in np.meshgrid(np.arange(T), np.arange(M), np.arange(K + 1), indexing="ij"))
    keep = t_of + j_of < T
    t_of, m_of, j_of = t_of[keep], m_of[keep], j_of[keep]
    s_of = t_of + j_of
    nx, nv = len(t_of), T * J
    wait = np.minimum(K, T - np.arange(T))
    r = b * wait[:, None] + LA  # [T, M]
    left = T - np.arange(T)  # periods a unit built (or not taken) in s is held from s on
    # columns: x (nx), v (nv), then per storable stream take (T) and build (T)
    ov = nx
    ot = nx + nv + 2 * T * np.arange(P)
    ob = ot + T
    obj = np.concatenate([b * j_of - r[t_of, m_of], np.tile(u, T)]
                         + [np.concatenate([-eps[m] - h[m] * left, h[m] * left]) for m in range(P)])
    # rows: arrival (t, m) (t M + m), capacity (s, i) (from rc_), then per storable stream: take <= served (rs),
    # take <= stock before (rb), room (rr)
    rc_ = T * M
    rs = rc_ + nv + 3 * T * np.arange(P)
    rb, rr = rs + T, rs + 2 * T
    tri = np.tril_indices(T)  # (s, q) with q <= s
    low = np.tril_indices(T, -1)  # q < s
    ar = np.arange(T)
    rows = [t_of * M + m_of]
    cols = [np.arange(nx)]
    vals = [np.ones(nx)]
    for i in range(J):
        rows += [rc_ + s_of * J + i, rc_ + ar * J + i]
        cols += [np.arange(nx), ov + ar * J + i]
        vals += [np.ones(nx), -np.ones(T)]
    for m in range(P):
        mine = np.flatnonzero(m_of == m)
        for i in range(J):
            rows += [rc_ + ar * J + i, rc_ + ar * J + i]
            cols += [ot[m] + ar, ob[m] + ar]
            vals += [-np.ones(T), np.ones(T)]
        rows += [rs[m] + s_of[mine], rs[m] + ar, rb[m] + ar, rb[m] + low[0], rb[m] + low[0], rr[m] + tri[0],
                 rr[m] + tri[0]]
        cols += [mine, ot[m] + ar, ot[m] + ar, ot[m] + low[1], ob[m] + low[1], ob[m] + tri[1], ot[m] + tri[1]]
        vals += [-np.ones(len(mine)), np.ones(T), np.ones(T), np.ones(len(low[0])), -np.ones(len(low[0])),
                 np.ones(len(tri[0])), -np.ones(len(tri[0]))]
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(rc_ + nv + 3 * T * P, nx + nv + 2 * T * P))
    rhs = np.concatenate([DD.reshape(-1), c.reshape(-1)]
                         + [np.concatenate([np.zeros(T), np.full(T, s0[m]), np.full(T, room[m] - s0[m])])
                            for m in range(P)])
    bounds = [(0, None)] * nx + [(0, float(f)) for f in F.reshape(-1)]
    for m in range(P):
        bounds += [(0, None)] * T + [(0, float(x)) for x in PB[:, m]]
    res = linprog(obj, A_ub=A, b_ub=rhs, bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"storable chain LP: {res.message}")
    by_age = np.zeros((T, M, K + 1))
    by_age[t_of, m_of, j_of] = res.x[:nx]
    v = res.x[ov:ov + nv].reshape(T, J)
    take = np.stack([res.x[ot[m]:ot[m] + T] for m in range(P)], axis=1)
    build = np.stack([res.x[ob[m]:ob[m] + T] for m in range(P)], axis=1)
    loss = np.maximum(DD - by_age.sum(axis=2), 0.0)
    p = -res.ineqlin.marginals[rc_:rc_ + nv].reshape(T, J)
    rcost = res.lower.marginals + res.upper.marginals  # see solve_chain_lp_series
    stock = s0[None, :] + np.cumsum(build - take, axis=0)
    pb_dual = np.stack([np.maximum(-rcost[ob[m]:ob[m] + T], 0.0) for m in range(P)], axis=1)
    out = {"cost": res.fun + float((r * DD).sum()) + T * float((h * s0).sum()), "loss": loss[:, :P],
           "by_age": by_age[:, :P], "flex": v, "p": p, "q": np.maximum(-rcost[ov:ov + nv], 0.0).reshape(T, J),
           "pb_dual": pb_dual, "backlog": float((j_of * res.x[:nx]).sum() + (wait[:, None] * loss).sum()),
           "stock": stock.sum(axis=0), "take": take.sum(axis=0), "loss2": loss[:, P:], "by_age2": by_age[:, P:]}
    if one:
        out["loss"], out["by_age"], out["pb_dual"] = loss[:, 0], by_age[:, 0], pb_dual[:, 0]
        out["stock"], out["take"] = float(out["stock"][0]), float(out["take"][0])
    return out
