"""Fused Monte Carlo kernel (numba): draw, run the recurrence and accumulate, one block per call.

This is the accelerated twin of :func:`peakplan.simulate.mc.block_draws` followed by
:func:`peakplan.simulate.mc.run_recurrence`; the model is the one stated in the
``peakplan.simulate.mc`` module docstring, and nothing here changes it.

Bit-for-bit draws. :func:`_draw` draws from the block's own ``numpy.random.Generator``
(passed in; numba compiles ``Generator`` methods against the same bit generator), in the
order :func:`~peakplan.simulate.mc.block_draws` documents: demand normals ``[n, T, G]``,
per event an occurrence uniform ``[n]`` and an uplift ``[n]``, availability normals
``[n, T, R]``, per disruption a uniform ``[n]``, lateness uniforms ``[n, L]``. numba's own
global ``np.random`` is never used (it is not seedable from Python and depends on the
thread). The draws land path-minor (``[t, g, path]``) in per-thread scratch buffers
(2 x 3.3 MB for 1,000 paths at T=52, G=R=8, reused block after block); one vectorised pass
applies the correlation, AR(1) and marginal; numpy's own ``exp`` (the reference's) turns
exponents into demand (numpy's exp is SIMD; numba's ``math.exp`` is scalar libm here, and
fusing it into the transform loop made the kernel ~20 % slower). :func:`_recur` then runs
the period recurrence on tiles of :data:`TILE` paths, every inner loop running over the
tile's paths (SIMD), with the one-resource-per-segment, one-lever-per-resource and
``max_delay = 1`` cases fused into single passes.

Working type. ``kernel_params(..., dtype="float32")`` casts the model's float parameters and
the scratch buffers to float32, so the transforms, the exp and the recurrence run in float32;
the draws are float64 from the same stream and cast (every event, disruption and lateness
outcome, drawn and compared in float64, is the float64 run's), and the per-path
accumulators stay float64. Throughput 1.22x the float64 kernel (1.11x through ``simulate``);
metric shifts below 1e-3 of their Monte Carlo standard errors (``benchmarks/README.md``).

Agreement with the numpy reference: every uniform and normal is identical, every event,
disruption and lateness outcome is identical, and so is demand when segments are
uncorrelated; the metrics differ from the reference only by floating-point summation order
(numpy's BLAS ``@`` and pairwise sums), a relative difference of order 1e-15 per path
(tested at 1e-9 in ``tests/test_mc_kernel.py``).

Threads. Both stages release the GIL (``nogil=True``); :func:`submit_blocks` hands whole
blocks to a thread pool. Each block has its own stream and its own output columns, so the
numbers are identical for every thread count and chunk size.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numba import njit

from peakplan.rng import BLOCK_PATHS as BLOCK

__all__ = ["ACC_COLUMNS", "KernelParams", "draw_only", "kernel_params", "run_blocks", "submit_blocks"]

#: Columns of the per-path accumulator matrix the kernel fills (before the ``4 * R``
#: utilisation columns: used/in-place capacity at peak, then off-peak).
ACC_COLUMNS = ("demand", "demand_window", "served", "served_window", "lost", "backlog_end",
               "worst", "cost_flex", "lost_pen", "cost_backlog", "cost_holding", "backlog_pen",
               "event_hits", "disruption_hits")
_NA = len(ACC_COLUMNS)

_UPLIFT_KINDS = {"fixed": 0, "uniform": 1, "triangular": 2, "lognormal": 3, "normal": 4}


@dataclass(frozen=True)
class KernelParams:
    """Everything the kernel needs about one (pack, plan), as flat arrays (built once per run)."""

    T: int
    G: int
    R: int
    L: int
    E: int
    D: int
    lognormal: bool
    dtype: np.dtype
    """Floating type of the transforms and the recurrence (float64 or float32); draws and
    accumulators are always float64."""
    draw_args: tuple
    """Arguments of :func:`_draw` after ``gen, n`` and before the buffers."""
    recur_args: tuple
    """Arguments of :func:`_recur` between the draw outcomes and the buffers."""

    @property
    def n_columns(self) -> int:
        return _NA + 4 * self.R


def kernel_params(pack, plan, st, dtype="float64") -> KernelParams:
    """Flatten ``pack`` and ``plan`` (and the simulator's ``_Static`` ``st``) for the kernel.

    ``dtype`` (``"float64"`` or ``"float32"``) is the working type of the transforms and the
    recurrence: the model's float parameters are cast to it, so the compiled loops run in it.
    """
    T, G, R, L = pack.T, pack.G, pack.R, pack.L
    f8 = np.float64
    ft_ = np.dtype(dtype)
    if ft_ not in (np.float64, np.float32):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    corr = pack.arr("seg_corr")
    chol = np.ascontiguousarray(np.linalg.cholesky(corr), f8)
    use_chol = bool(G > 1 and not np.array_equal(chol, np.eye(G)))
    phi = float(pack.ar1)
    innov = float(np.sqrt(1.0 - phi * phi)) if phi != 0.0 else 1.0
    E = len(pack.events)
    ev_prob = np.array([ev.probability for ev in pack.events], f8)
    ev_kind = np.zeros(E, np.int64)
    ev_par = np.zeros((E, 3), f8)
    ev_prof = np.zeros((E, T), f8)
    ev_seg = np.zeros((E, G), np.bool_)
    for k, ev in enumerate(pack.events):
        kind, params = ev.uplift
        if kind not in _UPLIFT_KINDS:
            raise ValueError(f"unknown uplift distribution {kind!r}")
        ev_kind[k] = _UPLIFT_KINDS[kind]
        if kind == "lognormal":
            median, p90 = params
            ev_par[k, :2] = (median, np.log(p90 / median) / 1.2815515655446004)
        else:
            ev_par[k, :len(params)] = params
        prof = np.ones(T) if ev.profile is None else ev.profile
        ev_prof[k] = prof * ev.periods
        ev_seg[k][ev.segments] = True
    a_mean = np.asarray(pack.arr("availability_mean"), f8) * np.ones(R)
    a_sd = np.asarray(pack.arr("availability_sd"), f8) * np.ones(R)
    Dn = len(pack.disruptions)
    dis_prob = np.array([d.probability for d in pack.disruptions], f8)
    dis_start = np.array([d.start for d in pack.disruptions], np.int64)
    dis_stop = np.array([min(T, d.start + d.duration) for d in pack.disruptions], np.int64)
    dis_mult = np.array([1.0 - d.depth for d in pack.disruptions], f8)
    dis_res = np.zeros((Dn, R), np.bool_)
    for k, d in enumerate(pack.disruptions):
        dis_res[k][d.resources] = True
    rel = np.array([lv.reliability for lv in pack.levers], f8)
    # capacity operations, in the reference's order: releases subtract, then reserves add
    ops = [(i, -1.0) for i in st.release_idx] + [(i, 1.0) for i in st.reserve_idx]
    ops.sort(key=lambda o: pack.levers[o[0]].resource)  # stable: per resource, reference order
    rop_ptr = np.searchsorted([pack.levers[i].resource for i, _ in ops], np.arange(R + 1)).astype(np.int64)
    op_lever = np.array([i for i, _ in ops], np.int64)
    op_sign = np.array([sg for _, sg in ops], f8)
    op_late = np.array([sg > 0 and pack.levers[i].reliability < 1.0 for i, sg in ops], np.bool_)
    levels = np.ascontiguousarray(plan.levels, f8).reshape(L, T)
    levels_late = np.zeros_like(levels)
    for i in range(L):
        y = levels[i]
        levels_late[i] = np.minimum(y, np.concatenate([[0.0], y[:-1]]))
    A = np.asarray(pack.load, f8)
    seg_ptr = np.zeros(G + 1, np.int64)
    seg_res: list[int] = []
    seg_val: list[float] = []
    for g in range(G):
        nz = np.flatnonzero(A[g] > 0)
        seg_res += [int(r) for r in nz]
        seg_val += [float(v) for v in A[g, nz]]
        seg_ptr[g + 1] = len(seg_res)
    cls_ptr = np.zeros(len(st.classes) + 1, np.int64)
    cls_seg = (np.concatenate([np.asarray(c, np.int64) for c in st.classes]) if st.classes
               else np.zeros(0, np.int64))
    cls_ptr[1:] = np.cumsum([len(c) for c in st.classes])
    # per class: is every segment alone on exactly one resource (the one-pass case)?
    cls_fast = np.zeros(len(st.classes), np.bool_)
    for c, segs in enumerate(st.classes):
        users = (A[segs] > 0).sum(axis=0)
        cls_fast[c] = all(seg_ptr[g + 1] - seg_ptr[g] == 1 for g in segs) and bool(np.all(users <= 1))
    forder = np.argsort(np.asarray(st.flex_res, np.int64), kind="stable")  # by resource, cost order kept
    rflex_ptr = np.searchsorted(np.asarray(st.flex_res, np.int64)[forder], np.arange(R + 1)).astype(np.int64)
    flex_caps = np.ascontiguousarray(np.asarray(st.flex_caps, f8).reshape(-1, T)[forder])
    flex_cost = np.ascontiguousarray(np.asarray(st.flex_cost, f8)[forder])
    flex_total = np.zeros((T, R))
    for f in range(len(st.flex_res)):
        flex_total[:, st.flex_res[f]] += st.flex_caps[f]
    storable = pack.arr("storable").astype(bool)
    build_segs = np.flatnonzero(storable & (plan.prebuild.sum(axis=0) > 0)).astype(np.int64)
    draw_args = (np.ascontiguousarray(pack.demand_mu, f8), np.ascontiguousarray(pack.demand_sigma, f8),
                 chol, use_chol, phi, innov, pack.marginal == "lognormal", ev_prob, ev_kind, ev_par,
                 a_mean, a_sd, dis_prob, dis_start, dis_stop, dis_mult, dis_res, rel)
    recur_args = (
        ev_prof, ev_seg, np.ascontiguousarray(pack.base_capacity, f8) * np.ones((T, R)),
        rop_ptr, op_lever, op_sign, op_late, levels, levels_late,
        seg_ptr, np.array(seg_res, np.int64), np.array(seg_val, f8), cls_ptr, cls_seg, cls_fast,
        flex_total, rflex_ptr, flex_caps, flex_cost,
        pack.arr("service_window").astype(np.bool_), pack.arr("peak").astype(np.bool_),
        build_segs, np.ascontiguousarray(plan.prebuild, f8), pack.arr("storage_cap").astype(f8),
        pack.arr("holding_cost").astype(f8), pack.arr("backlog_cost").astype(f8),
        np.asarray(pack.penalty, f8), pack.arr("initial_stock").astype(f8), int(pack.max_delay),
    )
    if ft_ != f8:  # float parameters of the working loops in the working type
        def cast(a):
            if isinstance(a, np.ndarray) and a.dtype == f8:
                return np.ascontiguousarray(a, ft_)
            return ft_.type(a) if isinstance(a, float) else a
        # not the arguments of draws (event/disruption probabilities, uplift parameters,
        # reliabilities): those stay float64 so every draw outcome is the reference's
        draw_args = tuple(cast(a) if i in (0, 1, 2, 4, 5, 10, 11, 15) else a for i, a in enumerate(draw_args))
        recur_args = tuple(map(cast, recur_args))
    return KernelParams(T=T, G=G, R=R, L=L, E=E, D=Dn, lognormal=pack.marginal == "lognormal",
                        dtype=ft_, draw_args=draw_args, recur_args=recur_args)


@njit(cache=True, nogil=True, error_model="numpy")
def _draw(gen, n, mu, sig, chol, use_chol, phi, innov, lognormal,
          ev_prob, ev_kind, ev_par, a_mean, a_sd, dis_prob, dis_start, dis_stop, dis_mult, dis_res, rel,
          xb, ab, ev_eff, ev_hit, dis_hit, late):  # pragma: no cover - compiled
    """Stage 1: every draw of the block, in the reference order, stored path-minor.

    ``xb[t, g, p]`` gets the demand exponent ``mu + sigma z`` (AR(1), correlated),
    ``ab[t, r, p]`` the capacity factor ``clip(mean + sd * z, 0, 1)`` times the disruptions.
    """
    T, G = mu.shape
    R = a_mean.shape[0]
    E = ev_prob.shape[0]
    Dn = dis_prob.shape[0]
    L = rel.shape[0]
    for p in range(n):
        for t in range(T):
            for g in range(G):
                xb[t, g, p] = gen.standard_normal()
    for k in range(E):
        for p in range(n):
            ev_hit[k, p] = gen.random() < ev_prob[k]
        kind = ev_kind[k]
        for p in range(n):
            if kind == 0:
                m = ev_par[k, 0]
            elif kind == 1:
                m = gen.uniform(ev_par[k, 0], ev_par[k, 1])
            elif kind == 2:
                if ev_par[k, 2] <= ev_par[k, 0]:
                    m = ev_par[k, 0]
                else:
                    m = gen.triangular(ev_par[k, 0], ev_par[k, 1], ev_par[k, 2])
            elif kind == 3:
                m = ev_par[k, 0] * math.exp(ev_par[k, 1] * gen.standard_normal())
            else:
                m = max(0.0, gen.normal(ev_par[k, 0], ev_par[k, 1]))
            ev_eff[k, p] = m if ev_hit[k, p] else 1.0
    for p in range(n):
        for t in range(T):
            for r in range(R):
                ab[t, r, p] = gen.standard_normal()
    for k in range(Dn):
        for p in range(n):
            dis_hit[k, p] = gen.random() < dis_prob[k]
    for p in range(n):
        for i in range(L):
            late[i, p] = gen.random() >= rel[i]
    # transforms, one pass, vectorised over paths: correlate, AR(1), marginal, capacity factor
    zero, one = xb.dtype.type(0.0), xb.dtype.type(1.0)  # typed: no float64 promotion
    ec = np.empty((G, n), xb.dtype)
    zp = np.empty((G, n), xb.dtype)
    ar = phi != 0.0
    for t in range(T):
        if use_chol:
            for g in range(G):
                for p in range(n):
                    ec[g, p] = zero
                for h in range(G):
                    c = chol[g, h]
                    for p in range(n):
                        ec[g, p] += xb[t, h, p] * c
            for g in range(G):
                for p in range(n):
                    xb[t, g, p] = ec[g, p]
        for g in range(G):
            m_, s_ = mu[t, g], sig[t, g]
            if ar and t > 0:
                for p in range(n):
                    z = phi * zp[g, p] + innov * xb[t, g, p]
                    zp[g, p] = z
                    xb[t, g, p] = m_ + s_ * z
            else:
                for p in range(n):
                    z = xb[t, g, p]
                    zp[g, p] = z
                    xb[t, g, p] = m_ + s_ * z
            if not lognormal:
                for p in range(n):
                    xb[t, g, p] = max(zero, xb[t, g, p])
        for r in range(R):
            m_, s_ = a_mean[r], a_sd[r]
            for p in range(n):
                ab[t, r, p] = min(max(m_ + s_ * ab[t, r, p], zero), one)
            for k in range(Dn):
                if dis_res[k, r] and dis_start[k] <= t < dis_stop[k]:
                    mk = dis_mult[k]
                    for p in range(n):
                        ab[t, r, p] *= mk if dis_hit[k, p] else one


@njit(cache=True, nogil=True, error_model="numpy")
def _recur(n, tile, ev_eff, ev_hit, ev_prof, ev_seg, dis_hit, late,
           base, rop_ptr, op_lever, op_sign, op_late, levels, levels_late,
           seg_ptr, seg_res, seg_val, cls_ptr, cls_seg, cls_fast,
           flex_total, rflex_ptr, flex_caps, flex_cost,
           window, peak, build_segs, prebuild, room_cap, hold_c, back_c, pen, stock0, K,
           xb, ab, out):  # pragma: no cover - compiled
    """Stage 2: the period recurrence and metric accumulation, tiles of paths at a time.

    ``xb[t, g, p]`` is the demand before events, ``ab[t, r, p]`` the capacity factor.
    Every inner loop runs over the paths of a tile (vectorised by LLVM).
    """
    T = xb.shape[0]
    G = xb.shape[1]
    R = ab.shape[1]
    E = ev_eff.shape[0]
    Dn = dis_hit.shape[0]
    nc = cls_ptr.shape[0] - 1
    Kb = max(K, 1)
    ft = xb.dtype  # working type (float64 or float32); the accumulators stay float64
    zero, one, inf = ft.type(0.0), ft.type(1.0), ft.type(np.inf)  # typed: no float64 promotion
    d = np.empty((G, tile), ft)
    rest = np.empty((G, tile), ft)
    served = np.empty((G, tile), ft)
    stock = np.empty((G, tile), ft)
    lost_now = np.empty(tile, ft)
    left = np.empty(tile, ft)
    B = np.empty((G, Kb, tile), ft)
    reg = np.empty((R, tile), ft)
    avail = np.empty((R, tile), ft)
    need = np.empty((R, tile), ft)
    sub = np.empty((R, tile), ft)
    over = np.empty((R, tile), ft)
    fr = np.empty(tile, ft)
    tot_req = np.empty(tile, ft)
    win = np.empty(tile, ft)
    srv = np.empty(tile, ft)
    acc = np.empty((14 + 4 * R, tile))
    for p0 in range(0, n, tile):
        m = min(tile, n - p0)
        for g in range(G):
            for q in range(m):
                stock[g, q] = stock0[g]
            for a in range(Kb):
                for q in range(m):
                    B[g, a, q] = zero
        for j in range(14 + 4 * R):
            for q in range(m):
                acc[j, q] = zero
        for q in range(m):
            acc[6, q] = inf
        for t in range(T):
            wt = window[t]
            # -- demand with events
            for g in range(G):
                for q in range(m):
                    d[g, q] = xb[t, g, p0 + q]
            for k in range(E):
                pr = ev_prof[k, t]
                for g in range(G):
                    if ev_seg[k, g]:
                        for q in range(m):
                            d[g, q] *= one + (ev_eff[k, p0 + q] - one) * pr
            # -- capacity: base -/+ lever levels (ops grouped by resource, reference order kept)
            for r in range(R):
                b0 = base[t, r]
                ft = flex_total[t, r]
                o0, o1 = rop_ptr[r], rop_ptr[r + 1]
                if o1 - o0 == 1 and not op_late[o0]:
                    y = op_sign[o0] * levels[op_lever[o0], t]
                    for q in range(m):
                        rg = max(b0 + y, zero) * ab[t, r, p0 + q]
                        reg[r, q] = rg
                        avail[r, q] = rg + ft
                    continue
                for q in range(m):
                    reg[r, q] = b0
                for o in range(o0, o1):
                    i = op_lever[o]
                    sg = op_sign[o]
                    y = levels[i, t]
                    if op_late[o]:
                        yl = levels_late[i, t]
                        for q in range(m):
                            reg[r, q] += sg * (yl if late[i, p0 + q] else y)
                    else:
                        for q in range(m):
                            reg[r, q] += sg * y
                for q in range(m):
                    rg = max(reg[r, q], zero) * ab[t, r, p0 + q]
                    reg[r, q] = rg
                    avail[r, q] = rg + ft
            # -- request, stock first
            for q in range(m):
                tot_req[q] = zero
                srv[q] = zero
                win[q] = zero
            for g in range(G):
                if K == 1:
                    for q in range(m):
                        fr[q] = d[g, q] + B[g, 0, q]
                else:
                    for q in range(m):
                        fr[q] = d[g, q]
                    for a in range(K):
                        for q in range(m):
                            fr[q] += B[g, a, q]
                for q in range(m):
                    rq = fr[q]
                    tot_req[q] += rq
                    fs = min(stock[g, q], rq)
                    stock[g, q] -= fs
                    rest[g, q] = rq - fs
                    served[g, q] = fs
                    acc[0, q] += d[g, q]
                    if wt:
                        acc[1, q] += d[g, q]
            # -- capacity by priority class, pro rata, bottleneck per segment
            for c in range(nc):
                if cls_fast[c]:  # every segment alone on its one resource: one pass each
                    for jj in range(cls_ptr[c], cls_ptr[c + 1]):
                        g = cls_seg[jj]
                        r = seg_res[seg_ptr[g]]
                        v = seg_val[seg_ptr[g]]
                        for q in range(m):
                            nq = rest[g, q] * v
                            ra = min(one, avail[r, q] / nq) if nq > 0 else one
                            sq = rest[g, q] * ra
                            served[g, q] += sq
                            avail[r, q] = max(avail[r, q] - sq * v, zero)
                    continue
                for r in range(R):
                    for q in range(m):
                        need[r, q] = zero
                        sub[r, q] = zero
                for jj in range(cls_ptr[c], cls_ptr[c + 1]):
                    g = cls_seg[jj]
                    for e in range(seg_ptr[g], seg_ptr[g + 1]):
                        r = seg_res[e]
                        v = seg_val[e]
                        for q in range(m):
                            need[r, q] += rest[g, q] * v
                for r in range(R):
                    for q in range(m):
                        nq = need[r, q]
                        need[r, q] = min(one, avail[r, q] / nq) if nq > 0 else one
                for jj in range(cls_ptr[c], cls_ptr[c + 1]):
                    g = cls_seg[jj]
                    if seg_ptr[g + 1] - seg_ptr[g] == 1:  # one resource: its ratio is the bottleneck
                        r = seg_res[seg_ptr[g]]
                        v = seg_val[seg_ptr[g]]
                        for q in range(m):
                            sq = rest[g, q] * need[r, q]
                            served[g, q] += sq
                            sub[r, q] += sq * v
                        continue
                    for q in range(m):
                        fr[q] = one
                    for e in range(seg_ptr[g], seg_ptr[g + 1]):
                        r = seg_res[e]
                        for q in range(m):
                            fr[q] = min(fr[q], need[r, q])
                    for q in range(m):
                        fr[q] *= rest[g, q]
                        served[g, q] += fr[q]
                    for e in range(seg_ptr[g], seg_ptr[g + 1]):
                        r = seg_res[e]
                        v = seg_val[e]
                        for q in range(m):
                            sub[r, q] += fr[q] * v
                for r in range(R):
                    for q in range(m):
                        avail[r, q] = max(avail[r, q] - sub[r, q], zero)
            # -- FIFO by age: oldest backlog first; the oldest still unserved is lost
            for g in range(G):
                pg = pen[g]
                bc = back_c[g]
                if K == 1:
                    counts = t >= 1 and window[t - 1]
                    for q in range(m):
                        lf = served[g, q]
                        srv[q] += lf
                        bo = B[g, 0, q]
                        take = min(bo, lf)
                        lf -= take
                        w = take if counts else zero
                        lost = bo - take
                        take = min(d[g, q], lf)
                        if wt:
                            w += take
                        win[q] += w
                        bn = d[g, q] - take
                        B[g, 0, q] = bn
                        acc[4, q] += lost
                        acc[8, q] += lost * pg
                        acc[9, q] += bn * bc
                    continue
                for q in range(m):
                    left[q] = served[g, q]
                    srv[q] += left[q]
                for a in range(K, 0, -1):
                    counts = t - a >= 0 and window[t - a]
                    if a == K:
                        for q in range(m):
                            bo = B[g, a - 1, q]
                            take = min(bo, left[q])
                            left[q] -= take
                            if counts:
                                win[q] += take
                            lost_now[q] = bo - take
                    else:
                        for q in range(m):
                            bo = B[g, a - 1, q]
                            take = min(bo, left[q])
                            left[q] -= take
                            if counts:
                                win[q] += take
                            B[g, a, q] = bo - take
                for q in range(m):
                    take = min(d[g, q], left[q])
                    if wt:
                        win[q] += take
                    if K == 0:
                        lost_now[q] = d[g, q] - take
                    else:
                        B[g, 0, q] = d[g, q] - take
                for q in range(m):
                    acc[4, q] += lost_now[q]
                    acc[8, q] += lost_now[q] * pg
                    fr[q] = zero
                for a in range(K):
                    for q in range(m):
                        fr[q] += B[g, a, q]
                for q in range(m):
                    acc[9, q] += fr[q] * bc
            for q in range(m):
                acc[2, q] += srv[q]
                acc[3, q] += win[q]
            if wt:
                for q in range(m):
                    svc = srv[q] / tot_req[q] if tot_req[q] > 0 else inf
                    acc[6, q] = min(acc[6, q], svc)
            # -- pre-build for storable segments with spare capacity
            for jj in range(build_segs.shape[0]):
                g = build_segs[jj]
                plan_b = prebuild[t, g]
                if plan_b <= 0:
                    continue
                for q in range(m):
                    fr[q] = inf
                for e in range(seg_ptr[g], seg_ptr[g + 1]):
                    r = seg_res[e]
                    v = seg_val[e]
                    for q in range(m):
                        fr[q] = min(fr[q], avail[r, q] / v)
                for q in range(m):
                    fr[q] = max(min(min(plan_b, room_cap[g] - stock[g, q]), fr[q]), zero)
                    stock[g, q] += fr[q]
                for e in range(seg_ptr[g], seg_ptr[g + 1]):
                    r = seg_res[e]
                    v = seg_val[e]
                    for q in range(m):
                        avail[r, q] = max(avail[r, q] - fr[q] * v, zero)
            for g in range(G):
                hc = hold_c[g]
                if hc != zero:
                    for q in range(m):
                        acc[10, q] += stock[g, q] * hc
            # -- flex use (cheapest first) and utilisation
            pk = 14 if peak[t] else 14 + 2 * R
            for r in range(R):
                ft = flex_total[t, r]
                f0, f1 = rflex_ptr[r], rflex_ptr[r + 1]
                if f1 - f0 <= 1:  # zero or one flex lever on r: one pass
                    cap = flex_caps[f0, t] if f1 > f0 else zero
                    cf = flex_cost[f0] if f1 > f0 else zero
                    for q in range(m):
                        used = reg[r, q] + ft - avail[r, q]
                        ov = max(used - reg[r, q], zero)
                        acc[pk + r, q] += used
                        acc[pk + R + r, q] += reg[r, q] + ov
                        acc[7, q] += min(ov, cap) * cf
                    continue
                for q in range(m):
                    used = reg[r, q] + ft - avail[r, q]
                    ov = max(used - reg[r, q], zero)
                    over[r, q] = ov
                    acc[pk + r, q] += used
                    acc[pk + R + r, q] += reg[r, q] + ov
                for f in range(f0, f1):
                    cap = flex_caps[f, t]
                    cf = flex_cost[f]
                    for q in range(m):
                        u = min(over[r, q], cap)
                        over[r, q] -= u
                        acc[7, q] += u * cf
        # -- end of horizon
        for g in range(G):
            pg = pen[g]
            for q in range(m):
                fr[q] = zero
            for a in range(K):
                for q in range(m):
                    fr[q] += B[g, a, q]
            for q in range(m):
                acc[5, q] += fr[q]
                acc[11, q] += fr[q] * pg
        for q in range(m):
            eh = 0
            for k in range(E):
                eh += ev_hit[k, p0 + q]
            dh = 0
            for k in range(Dn):
                dh += dis_hit[k, p0 + q]
            acc[12, q] = eh
            acc[13, q] = dh
        for j in range(14 + 4 * R):
            for q in range(m):
                out[j, p0 + q] = acc[j, q]


@njit(cache=True, nogil=True)
def _draw_only(gen, m, buf):  # pragma: no cover - compiled
    """Draw ``m`` standard normals into ``buf`` in chunks (the in-kernel drawing floor)."""
    done = 0
    while done < m:
        k = min(buf.shape[0], m - done)
        for i in range(k):
            buf[i] = gen.standard_normal()
        done += k
    return buf[0]


def draw_only(gen: np.random.Generator, m: int, buf: np.ndarray | None = None) -> float:
    """Draw ``m`` normals from ``gen`` inside a compiled loop (calibration of the kernel floor)."""
    buf = np.empty(1 << 16) if buf is None else buf
    return float(_draw_only(gen, int(m), buf))


#: Paths per tile of the recurrence (its working set stays in L1/L2).
TILE = 256

_local = threading.local()


class _Scratch:
    """Per-thread draw buffers, reused across blocks and calls."""

    def __init__(self, kp: KernelParams, n: int):
        self.key = (kp.T, kp.G, kp.R, kp.L, kp.E, kp.D, kp.dtype, n)
        self.xb = np.empty((kp.T, kp.G, n), kp.dtype)
        self.ab = np.empty((kp.T, kp.R, n), kp.dtype)
        self.ev_eff = np.empty((kp.E, n), kp.dtype)
        self.ev_hit = np.empty((kp.E, n), np.bool_)
        self.dis_hit = np.empty((kp.D, n), np.bool_)
        self.late = np.empty((kp.L, n), np.bool_)


def _scratch(kp: KernelParams, n: int) -> _Scratch:
    sc = getattr(_local, "scratch", None)
    if sc is None or sc.key != (kp.T, kp.G, kp.R, kp.L, kp.E, kp.D, kp.dtype, n):
        sc = _local.scratch = _Scratch(kp, n)
    return sc


def run_block(kp: KernelParams, gen: np.random.Generator, n: int, out: np.ndarray) -> None:
    """Simulate one block of ``n`` paths drawn from ``gen`` into ``out[:, :n]`` (accumulators x paths)."""
    sc = _scratch(kp, BLOCK)
    _draw(gen, n, *kp.draw_args, sc.xb, sc.ab, sc.ev_eff, sc.ev_hit, sc.dis_hit, sc.late)
    if kp.lognormal:  # numpy's SIMD exp (numba's math.exp is scalar libm here: ~3x slower)
        x = sc.xb if n == sc.xb.shape[2] else sc.xb[:, :, :n]
        np.exp(x, out=x)
    _recur(n, TILE, sc.ev_eff, sc.ev_hit, *kp.recur_args[:2], sc.dis_hit, sc.late, *kp.recur_args[2:],
           sc.xb, sc.ab, out)


def default_threads() -> int:
    """Threads used when none are asked for: ``PEAKPLAN_THREADS`` or the usable cores."""
    env = os.environ.get("PEAKPLAN_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def run_blocks(kp: KernelParams, gens: list[np.random.Generator], sizes: list[int], out: np.ndarray) -> None:
    """Simulate consecutive blocks into ``out[:, paths]`` (paths in block order), in this thread."""
    start = 0
    for g, n in zip(gens, sizes, strict=True):
        run_block(kp, g, n, out[:, start:start + n])
        start += n


def submit_blocks(pool: ThreadPoolExecutor, threads: int, kp: KernelParams, gens: list[np.random.Generator],
                  sizes: list[int], out: np.ndarray) -> list:
    """Start consecutive blocks on ``pool``; returns the futures (one per thread used).

    Thread ``w`` takes blocks ``w, w + threads, ...``; every block writes its own rows from
    its own stream, so the result does not depend on ``threads``.
    """
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    nt = max(1, min(threads, len(sizes)))

    def work(w: int) -> None:
        for b in range(w, len(sizes), nt):
            run_block(kp, gens[b], sizes[b], out[:, starts[b]:starts[b + 1]])

    return [pool.submit(work, w) for w in range(nt)]
