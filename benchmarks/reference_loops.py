"""Per-path reference loops: pure Python and simpy, the baselines for speedup quotes.

Both run the model of :mod:`peakplan.simulate.mc` one path at a time, the way one would
write it without numpy: per path, draw the path's numbers (from the block's own
``Generator``, so the same streams as the engines, but in per-path order), then step
through the periods with plain Python floats. ``simpy_loop`` drives the very same period
step from a simpy process (one ``env.timeout(1)`` per period), as a discrete-event
framework would. They cover the features of the benchmark network
(:func:`peakplan.examples.synthetic_pack`): lognormal/normal marginals, AR(1), segment
correlation, events, availability, disruptions, reserve/release/flex levers, lateness,
priority classes, backlog with ``max_delay``; not pre-build (checked).

They return per-path ``cost``, ``lost`` and ``fill_rate``; ``test_bench_reference.py``
checks that their means agree with the engines within Monte Carlo error, so the speedups
compare like with like.
"""

from __future__ import annotations

import math

import numpy as np
import simpy

from peakplan.rng import BLOCK_PATHS, block_generators
from peakplan.simulate import mc


class _Model:
    """The pack and plan as plain Python lists (built once)."""

    def __init__(self, pack, plan):
        if plan.prebuild.any() or pack.arr("initial_stock").any():
            raise ValueError("reference loops do not model pre-build or stock")
        st = mc._static(pack, plan)
        self.T, self.G, self.R, self.L = pack.T, pack.G, pack.R, pack.L
        self.mu = pack.demand_mu.tolist()
        self.sig = pack.demand_sigma.tolist()
        self.chol = np.linalg.cholesky(pack.arr("seg_corr")).tolist()
        self.phi = float(pack.ar1)
        self.innov = math.sqrt(1 - self.phi ** 2)
        self.lognormal = pack.marginal == "lognormal"
        self.events = [(ev.probability, ev.uplift,
                        ((np.ones(self.T) if ev.profile is None else ev.profile) * ev.periods).tolist(),
                        np.arange(self.G)[ev.segments].tolist()) for ev in pack.events]
        self.a_mean = (pack.arr("availability_mean") * np.ones(self.R)).tolist()
        self.a_sd = (pack.arr("availability_sd") * np.ones(self.R)).tolist()
        self.disruptions = [(d.probability, d.start, min(self.T, d.start + d.duration), 1 - d.depth,
                             np.arange(self.R)[d.resources].tolist()) for d in pack.disruptions]
        self.rel = [lv.reliability for lv in pack.levers]
        y = plan.levels
        self.ops = [(int(pack.levers[i].resource), -1.0, y[i].tolist(), y[i].tolist(), False) for i in st.release_idx]
        for i in st.reserve_idx:
            late = np.minimum(y[i], np.concatenate([[0.0], y[i][:-1]]))
            self.ops.append((int(pack.levers[i].resource), 1.0, y[i].tolist(), late.tolist(), i))
        self.base = np.asarray(pack.base_capacity, float).tolist()
        A = np.asarray(pack.load, float)
        self.seg_res = [[(int(r), float(A[g, r])) for r in np.flatnonzero(A[g] > 0)] for g in range(self.G)]
        self.classes = [c.tolist() for c in st.classes]
        ft = np.zeros((self.T, self.R))
        for f in range(len(st.flex_res)):
            ft[:, st.flex_res[f]] += st.flex_caps[f]
        self.flex_total = ft.tolist()
        self.flex = [(int(st.flex_res[f]), st.flex_caps[f].tolist(), float(st.flex_cost[f]))
                     for f in range(len(st.flex_res))]
        self.window = pack.arr("service_window").astype(bool).tolist()
        self.pen = np.asarray(pack.penalty, float).tolist()
        self.back_c = pack.arr("backlog_cost").tolist()
        self.K = int(pack.max_delay)
        self.fixed = float((np.asarray(pack.capacity_cost) * pack.base_capacity).sum()) + plan.fixed_cost


def _uplift(gen, kind, params):
    if kind == "fixed":
        return params[0]
    if kind == "uniform":
        return gen.uniform(params[0], params[1])
    if kind == "triangular":
        return params[0] if params[2] <= params[0] else gen.triangular(*params)
    if kind == "lognormal":
        return params[0] * math.exp(math.log(params[1] / params[0]) / 1.2815515655446004 * gen.standard_normal())
    return max(0.0, gen.normal(params[0], params[1]))


def _draw_path(m: _Model, gen):
    """One path's demand [T][G] and capacity factor [T][R] (plain lists) and lateness."""
    T, G, R = m.T, m.G, m.R
    e = gen.standard_normal(T * G).tolist()
    z = [0.0] * G
    demand = []
    for t in range(T):
        row = e[t * G:(t + 1) * G]
        if G > 1:
            row = [sum(m.chol[g][h] * row[h] for h in range(G)) for g in range(G)]
        z = row if t == 0 or m.phi == 0 else [m.phi * z[g] + m.innov * row[g] for g in range(G)]
        x = [m.mu[t][g] + m.sig[t][g] * z[g] for g in range(G)]
        demand.append([math.exp(v) for v in x] if m.lognormal else [max(0.0, v) for v in x])
    for prob, (kind, params), prof, segs in m.events:
        if gen.random() < prob:
            u = _uplift(gen, kind, params)
            for t in range(T):
                f = 1.0 + (u - 1.0) * prof[t]
                for g in segs:
                    demand[t][g] *= f
    a = gen.standard_normal(T * R).tolist()
    factor = [[min(max(m.a_mean[r] + m.a_sd[r] * a[t * R + r], 0.0), 1.0) for r in range(R)] for t in range(T)]
    for prob, start, stop, mult, res in m.disruptions:
        if gen.random() < prob:
            for t in range(start, stop):
                for r in res:
                    factor[t][r] *= mult
    late = [gen.random() >= rel for rel in m.rel]
    return demand, factor, late


class _Path:
    """State of one path and its period step (shared by both loops)."""

    def __init__(self, m: _Model, demand, factor, late):
        self.m, self.demand, self.factor, self.late = m, demand, factor, late
        self.B = [[0.0] * max(m.K, 1) for _ in range(m.G)]
        self.served_win = self.demand_win = self.lost = self.cost = 0.0

    def step(self, t: int) -> None:
        m = self.m
        d = self.demand[t]
        nom = list(m.base[t])
        for r, sign, y, y_late, lev in m.ops:
            nom[r] += sign * (y_late[t] if (lev is not False and self.late[lev]) else y[t])
        reg = [max(nom[r], 0.0) * self.factor[t][r] for r in range(m.R)]
        avail = [reg[r] + m.flex_total[t][r] for r in range(m.R)]
        req = [d[g] + sum(self.B[g][:m.K]) for g in range(m.G)]
        served = [0.0] * m.G
        for cls in m.classes:
            need = [0.0] * m.R
            for g in cls:
                for r, v in m.seg_res[g]:
                    need[r] += req[g] * v
            ratio = [min(1.0, avail[r] / need[r]) if need[r] > 0 else 1.0 for r in range(m.R)]
            sub = [0.0] * m.R
            for g in cls:
                s = req[g] * min([ratio[r] for r, _ in m.seg_res[g]], default=1.0)
                served[g] = s
                for r, v in m.seg_res[g]:
                    sub[r] += s * v
            avail = [max(avail[r] - sub[r], 0.0) for r in range(m.R)]
        for g in range(m.G):
            left = served[g]
            lost = 0.0
            for a in range(m.K, 0, -1):
                take = min(self.B[g][a - 1], left)
                left -= take
                if t - a >= 0 and m.window[t - a]:
                    self.served_win += take
                if a == m.K:
                    lost = self.B[g][a - 1] - take
                else:
                    self.B[g][a] = self.B[g][a - 1] - take
            take = min(d[g], left)
            if m.window[t]:
                self.served_win += take
                self.demand_win += d[g]
            if m.K == 0:
                lost = d[g] - take
            else:
                self.B[g][0] = d[g] - take
            self.lost += lost
            self.cost += lost * m.pen[g] + sum(self.B[g][:m.K]) * m.back_c[g]
        over = [max(reg[r] + m.flex_total[t][r] - avail[r] - reg[r], 0.0) for r in range(m.R)]
        for r, caps, c in m.flex:
            u = min(over[r], caps[t])
            over[r] -= u
            self.cost += u * c

    def result(self) -> tuple[float, float, float]:
        m = self.m
        end_pen = sum(sum(self.B[g][:m.K]) * m.pen[g] for g in range(m.G))
        fill = self.served_win / self.demand_win if self.demand_win > 0 else 1.0
        return m.fixed + self.cost + end_pen, self.lost, fill


def _paths(pack, n: int, seed):
    gens = block_generators(seed, 0, -(-n // BLOCK_PATHS))
    for i in range(n):
        yield gens[i // BLOCK_PATHS]


def python_loop(pack, n: int, seed=0, plan=None) -> np.ndarray:
    """Per-path pure Python: ``[n, 3]`` of cost, lost, fill rate."""
    m = _Model(pack, plan or mc.plan_inputs(pack))
    out = np.empty((n, 3))
    for i, gen in enumerate(_paths(pack, n, seed)):
        path = _Path(m, *_draw_path(m, gen))
        for t in range(m.T):
            path.step(t)
        out[i] = path.result()
    return out


def simpy_loop(pack, n: int, seed=0, plan=None) -> np.ndarray:
    """Per-path simpy: one environment and one process per path, one timeout per period."""
    m = _Model(pack, plan or mc.plan_inputs(pack))
    out = np.empty((n, 3))

    def periods(env, path):
        for t in range(m.T):
            path.step(t)
            yield env.timeout(1)

    for i, gen in enumerate(_paths(pack, n, seed)):
        env = simpy.Environment()
        path = _Path(m, *_draw_path(m, gen))
        env.process(periods(env, path))
        env.run()
        out[i] = path.result()
    return out
