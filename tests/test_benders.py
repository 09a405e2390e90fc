"""The L-shaped method of :mod:`peakplan.benders` against the extensive form solved by ``scipy.optimize.linprog``."""

import importlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pulp
import pytest
import scipy.sparse as sp
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from peakplan import examples
from peakplan.benders import (
    ChainOracle,
    _CutPool,
    _cvar_excess,
    _uniform_split,
    chain_structure,
    solve_benders,
    solve_benders_chains,
)
from peakplan.errors import InfeasibleError
from peakplan.pack import Variant
from peakplan.simulate import mc

opt = importlib.import_module("peakplan.optimize")  # the module; `peakplan.optimize` is the function

NONE = Variant("N", "cost only", "none", 0.0)


def linprog_optimum(prob: pulp.LpProblem, fix: dict | None = None) -> float | None:
    """The optimum of a continuous minimisation ``prob`` by ``linprog(method="highs")``; None if infeasible.

    Independent of pulp's solver interface: the matrices are read off the pulp objects.
    ``fix`` maps variable names to values they are fixed at.
    """
    assert prob.sense == pulp.LpMinimize
    fix = fix or {}
    variables = prob.variables()
    col = {v.name: j for j, v in enumerate(variables)}
    assert len(col) == len(variables)
    n = len(variables)
    cost = np.zeros(n)
    for v, a in prob.objective.items():
        cost[col[v.name]] += a
    rows = {"ub": ([], [], [], []), "eq": ([], [], [], [])}  # row, column, value, rhs
    for con in prob.constraints():
        if con.sense == pulp.LpConstraintEQ:
            kind, sign = "eq", 1.0
        elif con.sense == pulp.LpConstraintLE:
            kind, sign = "ub", 1.0
        else:
            assert con.sense == pulp.LpConstraintGE
            kind, sign = "ub", -1.0
        r, c, a, rhs = rows[kind]
        k = len(rhs)
        for v, coef in con.items():
            r.append(k)
            c.append(col[v.name])
            a.append(sign * coef)
        rhs.append(-sign * float(con.constant))  # sum a x + constant (sense) 0

    def matrix(kind):
        r, c, a, rhs = rows[kind]
        if not rhs:
            return None, None
        return sp.csr_matrix((a, (r, c)), shape=(len(rhs), n)), np.array(rhs)

    A_ub, b_ub = matrix("ub")
    A_eq, b_eq = matrix("eq")
    bounds = []
    for v in variables:
        assert v.cat == pulp.LpContinuous
        lo, hi = v.lowBound, v.upBound
        if v.name in fix:
            lo = hi = fix[v.name]
        bounds.append((lo, hi))
    res = linprog(cost, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")
    if res.status == 2:
        return None
    assert res.status == 0, res.message
    return float(res.fun) + float(prob.objective.constant)


def test_linprog_helper_on_a_hand_lp():
    """min 2x + 3y + z + 5 s.t. x + y >= 4, x - y <= 1, x + z == 3, y <= 10, w free in [1, 2] with cost 1."""
    prob = pulp.LpProblem("hand", pulp.LpMinimize)
    x = prob.add_variable("x", lowBound=0)
    y = prob.add_variable("y", lowBound=0, upBound=10)
    z = prob.add_variable("z", lowBound=0)
    w = prob.add_variable("w", lowBound=1, upBound=2)  # in no constraint: only its bound and cost
    prob += 2 * x + 3 * y + z + w + 5
    prob += x + y >= 4, "cover"
    prob += x - y <= 1, "gap"
    prob += x + z == 3, "link"
    # x = 2.5, y = 1.5, z = 0.5, w = 1: 5 + 4.5 + 0.5 + 1 + 5
    assert linprog_optimum(prob) == pytest.approx(16.0, abs=1e-9)
    assert linprog_optimum(prob, fix={"x": 0.0}) == pytest.approx(3 * 4 + 3 + 1 + 5, abs=1e-9)
    assert linprog_optimum(prob, fix={"y": 0.0}) is None  # x <= 1 then, x + y >= 4 fails


def _tie_free(pack):
    """The pack without fixed order costs, so the extensive form is one LP (no relax-and-fix)."""
    return pack.replace(levers=tuple(replace(lv, fixed_cost=0.0) for lv in pack.levers))


def _check_against_linprog(pack, draws, variant, res, info, budget=None):
    """Benders' objective equals the LP optimum, its lower bound is below it, and its plan costs what it says."""
    model = opt.build_model(pack, draws, variant, budget)
    best = linprog_optimum(model.prob)
    assert best is not None
    assert res.status is opt.SolveStatus.OPTIMAL
    assert res.objective == pytest.approx(best, rel=1e-6)
    assert info["lower_bound"] <= best + 1e-6 * abs(best)
    # the returned plan is feasible and its exact SAA cost is the reported objective
    fix = {v.name: float(res.levels[i, t]) for (i, t), v in model.y.items()}
    fix.update({v.name: float(res.prebuild[t, g]) for (t, g), v in model.pb.items()})  # planned builds too
    fixed = linprog_optimum(model.prob, fix=fix)
    if fixed is None and variant.service == "expected":
        # the L-shaped method meets an expected fill to within 1e-9 of the target (``need_ok`` in
        # benders._recourse_value): a plan on the boundary may be that little short of it
        near = opt.build_model(pack, draws, replace(variant, target=variant.target * (1 - 1e-9)), budget)
        fix = {v.name: float(res.levels[i, t]) for (i, t), v in near.y.items()}
        fix.update({v.name: float(res.prebuild[t, g]) for (t, g), v in near.pb.items()})
        fixed = linprog_optimum(near.prob, fix=fix)
    assert fixed is not None
    assert fixed == pytest.approx(res.objective, rel=1e-6)
    return best


@settings(max_examples=6, deadline=None)
@example(T=4, R=1, seed=0, S=2, service="expected", target=0.99, penalty=5.0, K=1)  # the target binds
@example(T=8, R=3, seed=7, S=6, service="none", target=0.5, penalty=50.0, K=1)
@example(T=6, R=2, seed=3, S=5, service="cvar", target=0.995, penalty=5.0, K=1)  # the CVaR bound binds
@example(T=6, R=2, seed=4, S=6, service="quantile", target=0.99, penalty=5.0, K=1)
@example(T=8, R=2, seed=11, S=5, service="expected", target=0.999, penalty=5.0, K=2)  # max_delay 2, binding
@example(T=7, R=2, seed=12, S=5, service="cvar", target=0.995, penalty=5.0, K=3)  # the bound binds
@given(T=st.integers(4, 8), R=st.integers(1, 3), seed=st.integers(0, 10_000), S=st.integers(2, 6),
       service=st.sampled_from(["none", "expected", "quantile", "cvar"]),
       target=st.one_of(st.sampled_from([0.5, 0.9, 0.99, 0.999]), st.floats(0.5, 0.999)),
       penalty=st.sampled_from([50.0, 5.0]), K=st.sampled_from([1, 1, 2, 3]))
def test_chain_benders_equals_the_extensive_form(T, R, seed, S, service, target, penalty, K):
    """Random chain-eligible instances (max_delay 1, 2 or 3); a low penalty makes the fill target bind."""
    pack = examples.synthetic_pack(T, R, seed=seed % 50)
    pack = pack.replace(penalty=np.full(pack.G, penalty), max_delay=K)
    draws = mc.sample_paths(pack, S, seed)
    variant = Variant("V", "v", service, 0.0 if service == "none" else target,
                      level=0.9 if service == "quantile" else 0.95)
    assert isinstance(chain_structure(pack, variant, None), dict)
    model = opt.build_model(pack, draws, variant)
    best = linprog_optimum(model.prob)
    assume(best is not None)
    # pulp + HiGHS on the extensive form agrees with linprog on the same matrices
    ext = opt.solve(model, pack)
    assert ext.status is opt.SolveStatus.OPTIMAL
    assert ext.objective == pytest.approx(best, rel=1e-7)
    res, info = solve_benders(pack, draws, variant, tol=1e-9, subproblem="chains")
    assert info["subproblem"] == "chains"
    _check_against_linprog(pack, draws, variant, res, info)


@settings(max_examples=6, deadline=None)
@example(T=5, G=2, seed=1, S=4, K=1, service="expected", target=0.999, penalty=5.0)  # the target binds
@example(T=6, G=1, seed=2, S=5, K=0, service="cvar", target=0.995, penalty=5.0)  # the CVaR bound binds
@example(T=6, G=2, seed=5, S=5, K=1, service="quantile", target=0.99, penalty=5.0)
@example(T=7, G=2, seed=6, S=4, K=2, service="expected", target=0.999, penalty=5.0)  # binds, max_delay 2
@given(T=st.integers(3, 7), G=st.integers(1, 2), seed=st.integers(0, 10_000), S=st.integers(2, 5),
       K=st.sampled_from([0, 1, 2, 3]), service=st.sampled_from(["none", "expected", "quantile", "cvar"]),
       target=st.one_of(st.sampled_from([0.5, 0.9, 0.99, 0.999]), st.floats(0.5, 0.999)),
       penalty=st.sampled_from([50.0, 5.0]))
def test_series_chain_benders_equals_the_extensive_form(T, G, seed, S, K, service, target, penalty):
    """Segments on two resources of their own in series (pick, then pack), each with temps and overtime."""
    pack = examples.series_pack(T, G, seed=seed % 50)
    pack = pack.replace(penalty=np.full(pack.G, penalty), max_delay=K)
    draws = mc.sample_paths(pack, S, seed)
    variant = Variant("V", "v", service, 0.0 if service == "none" else target,
                      level=0.9 if service == "quantile" else 0.95)
    assert [len(r) for r in chain_structure(pack, variant, None)["resources"]] == [2] * G
    assume(linprog_optimum(opt.build_model(pack, draws, variant).prob) is not None)
    res, info = solve_benders(pack, draws, variant, tol=1e-9, subproblem="chains")
    assert info["subproblem"] == "chains"
    _check_against_linprog(pack, draws, variant, res, info)


def _free_spend(pack, draws, variant):
    """Lever spend and mean flex spend of the extensive form's optimum without a budget (None if infeasible)."""
    model = opt.build_model(pack, draws, variant)
    if linprog_optimum(model.prob) is None:
        return None
    assert opt.solve(model, pack).status is opt.SolveStatus.OPTIMAL
    flex = np.mean([pulp.value(e) or 0.0 for e in model.extra["stage2"]["flex_spend"]])
    return pulp.value(model.extra["lever_cost"]), float(flex)


@settings(max_examples=8, deadline=None)
@example(series=True, T=5, G=2, seed=4, S=4, K=1, service="expected", target=0.96, penalty=5.0, cut=0.02)
@example(series=True, T=6, G=2, seed=0, S=4, K=1, service="quantile", target=0.95, penalty=5.0, cut=0.05)
@example(series=True, T=6, G=2, seed=1, S=4, K=1, service="cvar", target=0.95, penalty=5.0, cut=0.05)
@example(series=False, T=6, G=2, seed=2, S=4, K=1, service="none", target=0.5, penalty=50.0, cut=0.7)
@example(series=True, T=6, G=2, seed=3, S=4, K=2, service="cvar", target=0.95, penalty=5.0, cut=0.05)
@given(series=st.booleans(), T=st.integers(3, 6), G=st.integers(1, 2), seed=st.integers(0, 10_000),
       S=st.integers(2, 5), K=st.sampled_from([0, 1, 2]), service=st.sampled_from(["none", "expected", "quantile", "cvar"]),
       target=st.one_of(st.sampled_from([0.9, 0.95, 0.97]), st.floats(0.5, 0.99)),
       penalty=st.sampled_from([50.0, 5.0]), cut=st.floats(0.0, 0.9))
def test_chain_benders_with_a_budget_shared_with_flex_equals_the_extensive_form(series, T, G, seed, S, K, service,
                                                                                target, penalty, cut):
    """The budget is cut below the unbudgeted optimum's lever plus flex spend, so that it binds.

    The examples were checked to bind together with their target (the objective above both the
    target's optimum without the budget and the budget's optimum without the target).
    """
    maker = examples.series_pack if series else examples.synthetic_pack
    pack = maker(T, G, seed=seed % 50)
    pack = pack.replace(penalty=np.full(pack.G, penalty), max_delay=K)
    draws = mc.sample_paths(pack, S, seed)
    variant = Variant("V", "v", service, 0.0 if service == "none" else target,
                      level=0.9 if service == "quantile" else 0.95)
    free = _free_spend(pack, draws, variant)
    assume(free is not None and free[1] > 1.0)  # flex in use: a budget below its spend binds
    budget = free[0] + free[1] * (1.0 - cut)
    assert isinstance(chain_structure(pack, variant, budget), dict)
    best = linprog_optimum(opt.build_model(pack, draws, variant, budget).prob)
    res, info = solve_benders(pack, draws, variant, budget, tol=1e-9, subproblem="chains")
    assert info["subproblem"] == "chains"
    if best is None:  # the budget leaves too little flex for the target: reported, not hidden
        assert res.status is opt.SolveStatus.INFEASIBLE
        return
    _check_against_linprog(pack, draws, variant, res, info, budget)
    # the second stage behind the objective keeps to the budget, as check_plan counts it
    opt.check_plan(pack, res.levels, res.prebuild, budget, info["flex_spend"])
    assert mc.lever_fixed_cost(pack, res.levels) + info["flex_spend"] <= budget + 1e-7 * max(1.0, abs(budget))


def test_a_budget_too_small_for_the_target_is_infeasible_with_chains():
    """A CVaR bound at 95 %: the bound alone and the budget alone are feasible, not both."""
    pack = examples.synthetic_pack(6, 2, seed=0).replace(penalty=np.full(2, 5.0))
    draws = mc.sample_paths(pack, 4, 0)
    variant = Variant("C", "c", "cvar", 0.95, level=0.95)
    lever, flex = _free_spend(pack, draws, variant)
    budget = lever + 0.5 * flex
    assert linprog_optimum(opt.build_model(pack, draws, variant, budget).prob) is None
    assert linprog_optimum(opt.build_model(pack, draws, NONE, budget).prob) is not None
    res, info = solve_benders(pack, draws, variant, budget, tol=1e-9, subproblem="chains")
    assert res.status is opt.SolveStatus.INFEASIBLE
    with pytest.raises(InfeasibleError, match="no plan meets fill 95.0%"):
        opt.solve_variant(pack.replace(budget=budget), variant, draws, method="auto")


def test_concave_search_finds_each_items_lagrangian_maximum_and_marks_caps():
    """Item i: min c_i u s.t. u >= b_i, 0 <= u <= U_i. Its Lagrangian h_i(x) = min_u c_i u + x (b_i - u) peaks at
    x = c_i with h = c_i b_i (the LP's optimum); the slope is b_i - u(x), and the item fits once u covers b_i."""
    from peakplan.benders import _concave_search

    rng = np.random.default_rng(3)
    n = 40
    c, U = rng.uniform(1.0, 50.0, n), rng.uniform(5.0, 10.0, n)
    b = rng.uniform(0.5, 4.0, n)
    b[:5] = U[:5] + 1.0  # out of reach at any price
    calls = []

    def at(x, sel):
        calls.append(len(sel))
        u = np.where(x > c[sel], U[sel], 0.0)
        return {"h": c[sel] * u + x * (b[sel] - u), "slope": b[sel] - u, "u": u}

    lo0 = {"h": np.zeros(n), "slope": b.copy(), "u": np.zeros(n)}
    out = _concave_search(at, np.full(n, 0.3), np.full(n, 1e-12), 1e-9, lo0)
    ok = slice(5, None)
    assert np.isnan(out["hi"]["x"][:5]).all()  # never fits: no upper end
    assert np.isfinite(out["hi"]["x"][ok]).all()
    assert np.allclose(out["best"]["h"][ok], (c * b)[ok], rtol=1e-9)
    assert (out["lo"]["x"][ok] <= c[ok]).all() and (out["hi"]["x"][ok] > c[ok]).all()
    assert max(calls) == n and len(calls) < 60 + 40  # all items at once, not one by one
    capped = _concave_search(at, np.full(n, 0.3), np.full(n, 1e-12), 1e-9, lo0, cap=20.0)
    assert np.all(np.isinf(capped["hi"]["x"][ok][c[ok] >= 20.0]))  # the price would have to pass the cap
    assert np.all(np.isfinite(capped["hi"]["x"][ok][c[ok] < 20.0]))


@pytest.mark.parametrize("variant", [NONE, Variant("E", "e", "expected", 0.99),
                                     Variant("C", "c", "cvar", 0.95, level=0.95)], ids=lambda v: v.service)
def test_lp_benders_equals_the_extensive_form_on_tiny(variant):
    tiny = _tie_free(examples.tiny_pack())
    tiny = tiny.replace(levers=tuple(replace(lv, quota=lv.quota * 3) if lv.kind != "release" else lv
                                     for lv in tiny.levers))
    draws = mc.sample_paths(tiny, 3, 3)
    assert isinstance(chain_structure(tiny, variant, None), str)
    res, info = solve_benders(tiny, draws, variant, tol=1e-9)
    assert info["subproblem"] == "lp"
    assert "shared capacity" in info["why_not_chains"]
    best = _check_against_linprog(tiny, draws, variant, res, info)
    assert opt.solve(opt.build_model(tiny, draws, variant), tiny).objective == pytest.approx(best, rel=1e-7)


def _cut_budget(pack, draws, variant, cut):
    """None, or a budget ``cut`` below the unbudgeted optimum's flex spend (a case where flex is in use)."""
    if cut is None:
        return None
    free = _free_spend(pack, draws, variant)
    assume(free is not None and free[1] > 1.0)
    return free[0] + free[1] * (1.0 - cut)


@settings(max_examples=6, deadline=None)
@example(T=4, R=1, seed=0, S=4, K=1, service="expected", target=0.99, penalty=5.0, clusters=2, alpha=0.5, cut=None)
@example(T=5, R=2, seed=3, S=4, K=2, service="cvar", target=0.995, penalty=5.0, clusters=1, alpha=0.7, cut=0.05)
@example(T=4, R=1, seed=5, S=3, K=0, service="quantile", target=0.95, penalty=5.0, clusters=None, alpha=0.0, cut=0.3)
@given(T=st.integers(3, 5), R=st.integers(1, 2), seed=st.integers(0, 10_000), S=st.integers(2, 4),
       K=st.sampled_from([0, 1, 2]), service=st.sampled_from(["none", "expected", "quantile", "cvar"]),
       target=st.sampled_from([0.9, 0.95, 0.99]), penalty=st.sampled_from([50.0, 5.0]),
       clusters=st.sampled_from([None, 1, 2]), alpha=st.sampled_from([0.0, 0.5, 0.7]),
       cut=st.one_of(st.none(), st.floats(0.0, 0.5)))
def test_lp_benders_on_shared_capacity_equals_the_extensive_form(T, R, seed, S, K, service, target, penalty, clusters,
                                                                 alpha, cut):
    """Two segments per resource (shared capacity), any max_delay, cuts per path or per cluster, with or without
    in-out query points, and optionally a budget shared with flex spend cut below the unbudgeted spend."""
    from peakplan.benders_lp import solve_benders_lp

    pack = examples.synthetic_pack(T, R, G=2 * R, seed=seed % 50)
    pack = pack.replace(penalty=np.full(pack.G, penalty), max_delay=K)
    draws = mc.sample_paths(pack, S, seed)
    variant = Variant("V", "v", service, 0.0 if service == "none" else target,
                      level=0.9 if service == "quantile" else 0.95)
    budget = _cut_budget(pack, draws, variant, cut)
    best = linprog_optimum(opt.build_model(pack, draws, variant, budget).prob)
    assume(best is not None)
    res, info = solve_benders_lp(pack, draws, variant, budget, tol=1e-9, clusters=clusters, alpha=alpha)
    _check_against_linprog(pack, draws, variant, res, info, budget)


def _shared_pack(T: int, R: int, seed: int, penalty: float, half: bool):
    """Two segments on each of R resources; with ``half`` the second takes half a unit of the resource per unit
    (its backlog cost halved too, the same per unit of the resource; the capacity scaled to the load) and is
    worth 0.7 of the first a unit lost."""
    pack = examples.synthetic_pack(T, R, G=2 * R, seed=seed % 50)
    pen = np.full(pack.G, penalty)
    if half:
        load = pack.load.copy()
        load[R:] *= 0.5
        pack = pack.replace(load=load, backlog_cost=pack.arr("backlog_cost") * load.sum(axis=1),
                            base_capacity=pack.base_capacity * 0.75)
        pen[R:] = 0.7 * penalty  # streams of different value
    return pack.replace(penalty=pen)


@settings(max_examples=150, deadline=None)
@example(T=6, R=1, seed=1, S=4, K=1, service="expected", target=0.999, penalty=5.0, half=True, cut=None)  # binds
@example(T=6, R=2, seed=2, S=4, K=2, service="cvar", target=0.99, penalty=5.0, half=False, cut=None)  # binds
@example(T=5, R=1, seed=3, S=4, K=0, service="quantile", target=0.95, penalty=5.0, half=True, cut=0.3)
@given(T=st.integers(3, 6), R=st.integers(1, 2), seed=st.integers(0, 10_000), S=st.integers(2, 5),
       K=st.sampled_from([0, 1, 2]), service=st.sampled_from(["none", "expected", "quantile", "cvar"]),
       target=st.sampled_from([0.9, 0.95, 0.99]), penalty=st.sampled_from([50.0, 5.0]), half=st.booleans(),
       cut=st.one_of(st.none(), st.floats(0.0, 0.5)))
def test_chain_benders_on_shared_capacity_equals_the_extensive_form(T, R, seed, S, K, service, target, penalty, half,
                                                                    cut):
    """Two segments per resource, as streams of one chain; with ``half`` the second takes half a unit of the
    resource per unit (its backlog cost halved too, the same per unit of the resource; the capacity scaled to
    the load) and is worth less a unit; optionally a budget shared with flex spend, cut below the unbudgeted
    spend. The examples marked were checked to bind (the objective above the one without the target)."""
    pack = _shared_pack(T, R, seed, penalty, half).replace(max_delay=K)
    draws = mc.sample_paths(pack, S, seed)
    variant = Variant("V", "v", service, 0.0 if service == "none" else target,
                      level=0.9 if service == "quantile" else 0.95)
    ok = chain_structure(pack, variant, None)
    assert [len(x) for x in ok["segments"]] == [2] * R
    budget = _cut_budget(pack, draws, variant, cut)
    best = linprog_optimum(opt.build_model(pack, draws, variant, budget).prob)
    assume(best is not None)  # a target out of the budget's reach: see the test below
    res, info = solve_benders(pack, draws, variant, budget, tol=1e-9, subproblem="chains")
    assert info["subproblem"] == "chains"
    _check_against_linprog(pack, draws, variant, res, info, budget)


def test_a_fill_target_out_of_a_budgets_reach_is_reported_infeasible():
    pack = examples.synthetic_pack(4, 2, G=4, seed=4)
    load = pack.load.copy()
    load[2:] *= 0.5
    pack = pack.replace(load=load, backlog_cost=pack.arr("backlog_cost") * load.sum(axis=1),
                        base_capacity=pack.base_capacity * 0.75, penalty=np.array([5.0, 5.0, 3.5, 3.5]), max_delay=0)
    draws = mc.sample_paths(pack, 4, 4)
    variant = Variant("V", "v", "expected", 0.99)
    free = _free_spend(pack, draws, variant)
    budget = free[0] + free[1] * 0.5
    assert linprog_optimum(opt.build_model(pack, draws, variant, budget).prob) is None  # no plan keeps to both
    res, _ = solve_benders(pack, draws, variant, budget, tol=1e-9, subproblem="chains")
    assert res.status is opt.SolveStatus.INFEASIBLE
    # the cost phase alone fails here (the target's multiplier reaches 3.7e7 next to the excess's price, and
    # HiGHS cannot solve the master); phase one gives the verdict, from a positive lower bound on the excess
    one, info = solve_benders_chains(pack, draws, variant, budget, chain_structure(pack, variant, budget),
                                     tol=1e-9, reach=True)
    assert one.status is opt.SolveStatus.INFEASIBLE and info["lower_bound"] > 1.0
    with pytest.raises(InfeasibleError, match="no plan meets fill 99.0%"):  # a diagnosis, not a solver error
        opt.solve_variant(pack.replace(budget=budget), variant, draws, method="auto")


@settings(max_examples=25, deadline=None)
@given(series=st.booleans(), T=st.integers(3, 6), G=st.integers(1, 2), seed=st.integers(0, 10_000),
       S=st.integers(2, 5), K=st.sampled_from([0, 1, 2]), service=st.sampled_from(["expected", "quantile", "cvar"]),
       target=st.sampled_from([0.9, 0.95, 0.97, 0.99]), penalty=st.sampled_from([50.0, 5.0]), cut=st.floats(0.0, 0.9))
def test_phase_one_says_whether_a_budget_shared_with_flex_can_meet_the_target(series, T, G, seed, S, K, service,
                                                                              target, penalty, cut):
    """``reach=True`` is INFEASIBLE exactly where linprog finds no plan within the budget, OPTIMAL elsewhere."""
    maker = examples.series_pack if series else examples.synthetic_pack
    pack = maker(T, G, seed=seed % 50)
    pack = pack.replace(penalty=np.full(pack.G, penalty), max_delay=K)
    draws = mc.sample_paths(pack, S, seed)
    variant = Variant("V", "v", service, target, level=0.9 if service == "quantile" else 0.95)
    free = _free_spend(pack, draws, variant)
    assume(free is not None and free[1] > 1.0)
    budget = free[0] + free[1] * (1.0 - cut)
    best = linprog_optimum(opt.build_model(pack, draws, variant, budget).prob)
    one, info = solve_benders_chains(pack, draws, variant, budget, chain_structure(pack, variant, budget),
                                     tol=1e-9, reach=True)
    if best is None:
        assert one.status is opt.SolveStatus.INFEASIBLE and info["lower_bound"] > 0
    else:
        assert one.status is opt.SolveStatus.OPTIMAL and info["upper_bound"] <= 1e-6 * max(1.0, budget)


def _low_penalty_pack():
    pack = examples.synthetic_pack(6, 2)
    return pack.replace(penalty=np.full(pack.G, 5.0))


def test_binding_expected_fill_target_matches_linprog():
    """With a penalty of 5 losing is cheaper than capacity: a 99.9% fill target binds (and is reachable)."""
    pack = _low_penalty_pack()
    draws = mc.sample_paths(pack, 4, 0)
    free = linprog_optimum(opt.build_model(pack, draws, NONE).prob)
    variant = Variant("E", "e", "expected", 0.999)
    bound = linprog_optimum(opt.build_model(pack, draws, variant).prob)
    assert bound is not None
    assert bound > free * (1 + 1e-3)  # the target binds
    assert linprog_optimum(opt.build_model(pack, draws, replace(variant, target=0.9999)).prob) > bound
    res, info = solve_benders(pack, draws, variant, tol=1e-9, subproblem="chains")
    assert info["subproblem"] == "chains"
    _check_against_linprog(pack, draws, variant, res, info)


@pytest.mark.parametrize("variant", [Variant("C", "c", "cvar", 0.999, level=0.95),
                                     Variant("B", "b", "quantile", 0.999, level=0.8)], ids=lambda v: v.service)
def test_binding_cvar_bound_matches_linprog(variant):
    """The CVaR bound on lost window units binds (cost above the cost-only optimum); chains reach the LP optimum."""
    pack = _low_penalty_pack()
    draws = mc.sample_paths(pack, 5, 1)
    free = linprog_optimum(opt.build_model(pack, draws, NONE).prob)
    bound = linprog_optimum(opt.build_model(pack, draws, variant).prob)
    assert bound is not None and bound > free * (1 + 1e-3)
    res, info = solve_benders(pack, draws, variant, tol=1e-9, subproblem="chains")
    assert info["subproblem"] == "chains"
    _check_against_linprog(pack, draws, variant, res, info)


@pytest.mark.parametrize("variant", [Variant("C", "c", "cvar", 0.999, level=0.95),
                                     Variant("B", "b", "quantile", 0.999, level=0.8)], ids=lambda v: v.service)
def test_one_price_for_every_chain_gives_a_split_that_keeps_the_bound_and_costs_no_less_than_the_best(variant):
    """The fallback for a master's split out of reach: it keeps the R-U bound and is an upper bound on the recourse.

    At the variant's optimal levels the bound binds; the recourse with it (the extensive form
    with the first stage fixed, by linprog) is a lower bound on the fallback's cost. At the
    cost-only plan's levels no second stage keeps to the bound: None, and linprog agrees.
    """
    pack = _low_penalty_pack()
    draws = mc.sample_paths(pack, 8, 1)
    res, _ = solve_benders(pack, draws, variant, tol=1e-9, subproblem="chains")
    levels = res.levels
    oracle = ChainOracle(pack, draws, chain_structure(pack, variant, None), 1)
    oracle.deadline = np.inf
    window = pack.arr("service_window").astype(bool)
    level = variant.level if variant.service == "quantile" else max(variant.level, 0.95)

    def fixed(v):
        m = opt.build_model(pack, draws, v)
        return linprog_optimum(m.prob, {var.name: float(levels[i, t]) for (i, t), var in m.y.items()})

    d_win = draws.demand[:, window, :].sum(axis=(1, 2))
    kappa = (1 - variant.target) * d_win
    out = _uniform_split(oracle, levels, kappa, level)
    assert out is not None and out["nu"] > 0
    assert _cvar_excess(out["lost"] - kappa, level) <= 1e-9 * max(1.0, kappa.max())
    free = sum(oracle.chains(g, levels, np.zeros(8), np.arange(8))["cost"].sum() for g in range(pack.G)) / 8
    first = fixed(NONE) - free
    exact = fixed(variant) - first
    assert exact > free * (1 + 1e-4)  # the bound binds at these levels
    assert out["cost"] >= exact - 1e-7 * abs(exact)
    assert out["cost"] == pytest.approx(out["true"])  # no budget price: the priced cost is the true cost
    levels = solve_benders(pack, draws, NONE, tol=1e-9, subproblem="chains")[0].levels
    assert _uniform_split(oracle, levels, kappa, level) is None
    assert fixed(variant) is None


def test_lp_benders_on_the_binding_instance():
    """The HiGHS subproblem on the instance of the previous test: the same optimum."""
    pack = _low_penalty_pack()
    draws = mc.sample_paths(pack, 4, 0)
    variant = Variant("E", "e", "expected", 0.999)
    res, info = solve_benders(pack, draws, variant, tol=1e-9, subproblem="lp")
    assert info["subproblem"] == "lp"
    _check_against_linprog(pack, draws, variant, res, info)


@pytest.mark.parametrize("variant", [Variant("E", "e", "expected", 0.99), Variant("C", "c", "cvar", 0.99, level=0.95)],
                         ids=lambda v: v.service)
def test_unreachable_fill_target_is_reported_infeasible(variant):
    """Demand doubled: not even every lever at its quota serves 99% of it."""
    pack = _low_penalty_pack()
    pack = pack.replace(demand_mu=pack.demand_mu + np.log(2.0))
    draws = mc.sample_paths(pack, 4, 0)
    assert linprog_optimum(opt.build_model(pack, draws, variant).prob) is None
    res, _ = solve_benders(pack, draws, variant, tol=1e-9, subproblem="chains", max_iter=100)
    assert res.status is opt.SolveStatus.INFEASIBLE
    assert np.isnan(res.objective)


def test_chain_structure_accepts_synthetic_and_names_what_breaks_it():
    pack = examples.synthetic_pack(6, 3)
    ok = chain_structure(pack, NONE, None)
    assert isinstance(ok, dict)
    assert [list(r) for r in ok["resources"]] == [[0], [1], [2]]
    assert [list(a) for a in ok["loads"]] == [[1.0], [1.0], [1.0]]
    expected = Variant("E", "e", "expected", 0.95)
    assert isinstance(chain_structure(pack, expected, None), dict)
    assert isinstance(chain_structure(pack, expected, 1e9), dict)  # a budget shared with flex spend
    assert isinstance(chain_structure(pack, Variant("C", "c", "cvar", 0.95, level=0.95), None), dict)
    assert isinstance(chain_structure(pack, Variant("Q", "q", "quantile", 0.95), None), dict)
    for K in (0, 2, 5):  # any max_delay
        assert isinstance(chain_structure(pack.replace(max_delay=K), NONE, None), dict)
    stock = pack.replace(storable=np.array([False, True, False]), storage_cap=np.array([0.0, 10.0, 0.0]))
    assert isinstance(chain_structure(stock, NONE, None), dict)  # a storable segment on a resource of its own
    stock_shared = stock.replace(load=np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    ok = chain_structure(stock_shared, NONE, None)  # a storable segment sharing a resource: one chain, one stock
    assert [list(x) for x in ok["segments"]] == [[0, 1], [2]] and ok["names"] == ["s0+s1", "s2"]
    two_stocks = stock_shared.replace(storable=np.array([True, True, False]), storage_cap=np.array([5.0, 10.0, 0.0]))
    ok = chain_structure(two_stocks, NONE, None)  # two storable segments on one resource: one chain, a stock each
    assert [list(x) for x in ok["segments"]] == [[0, 1], [2]]
    # two segments on one resource: one chain, a stream each (capacity counted in the resource's units)
    shared = pack.replace(load=np.array([[1.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 1.0]]),
                          backlog_cost=np.array([1.0, 0.5, 1.0]))
    ok = chain_structure(shared, NONE, None)
    assert [list(x) for x in ok["segments"]] == [[0, 1], [2]] and ok["names"] == ["s0+s1", "s2"]
    assert [list(x) for x in ok["stream_loads"]] == [[1.0, 0.5], [1.0]]
    assert [list(r) for r in ok["resources"]] == [[0], [2]] and [list(a) for a in ok["loads"]] == [[1.0], [1.0]]
    # the same backlog cost per unit of the resource is needed once units wait (the arcs between them telescope)
    assert "different backlog costs per unit" in chain_structure(shared.replace(backlog_cost=np.ones(3)), NONE, None)
    assert isinstance(chain_structure(shared.replace(backlog_cost=np.ones(3), max_delay=0), NONE, None), dict)
    two = pack.replace(load=np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    assert "segments s0, s1 share resources r0, r1 and some load more than one" in chain_structure(two, NONE, None)
    assert "shared capacity" in chain_structure(examples.tiny_pack(), NONE, None)
    series = pack.replace(load=np.array([[1.0, 0.5, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
    assert "segment s2 loads no resource" in chain_structure(series, NONE, None)
    series = pack.replace(load=np.array([[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]]), segments=("s0", "s1"))
    ok = chain_structure(series, NONE, None)  # pickers then packers: a segment on two resources of its own
    assert [list(r) for r in ok["resources"]] == [[0, 1], [2]]
    assert [list(a) for a in ok["loads"]] == [[1.0, 0.5], [1.0]]


def test_chains_on_an_ineligible_pack_raise_and_auto_falls_back():
    tiny = examples.tiny_pack()
    draws = mc.sample_paths(tiny, 2, 0)
    with pytest.raises(ValueError, match="chain subproblem does not apply: segments .* share resources"):
        solve_benders(tiny, draws, NONE, subproblem="chains")
    pack = examples.synthetic_pack(4, 1)
    two = examples.synthetic_pack(4, 2).replace(load=np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="does not apply: segments s0, s1 share resources r0, r1 and some load more"):
        solve_benders(two, mc.sample_paths(two, 2, 0), NONE, subproblem="chains")
    with pytest.raises(ValueError, match="subproblem must be"):
        solve_benders(pack, mc.sample_paths(pack, 2, 0), NONE, subproblem="dp")
    _, info = solve_benders(pack, mc.sample_paths(pack, 2, 0), NONE)
    assert info["subproblem"] == "chains"


def test_auto_method_uses_chains_where_they_apply_and_plans_record_it():
    from peakplan.compile import build_pack

    pack = examples.synthetic_pack(6, 2)
    lean = Variant("A", "lean", "expected", 0.9)
    resilient = Variant("C", "resilient", "cvar", 0.9, level=0.95)
    assert opt.resolve_method(pack, lean, "auto") == "benders"
    assert opt.resolve_method(pack, lean, "auto", solver="cbc") == "extensive"
    assert opt.resolve_method(pack, resilient, "auto") == "benders"
    assert opt.resolve_method(pack.replace(budget=1e9), lean, "auto") == "benders"  # budget + flex levers
    assert opt.resolve_method(pack.replace(max_delay=2), resilient, "benders") == "benders"
    retail = build_pack(Path(__file__).parents[1] / "scenarios" / "retail_peak.yaml")
    assert {opt.resolve_method(retail, v, "auto") for v in retail.variants} == {"benders"}
    plans = opt.optimize(pack.replace(variants=(lean, resilient)), n_samples=6, seed=3, quality=False)
    assert plans["A"].constraints["method"] == plans["C"].constraints["method"] == "benders"
    assert plans["A"].constraints["solver_gap"] <= 1e-6
    # the same plans either way: auto's Benders against the extensive form on the same sample
    ext = opt.optimize(pack.replace(variants=(lean, resilient)), n_samples=6, seed=3, quality=False,
                       method="extensive")
    assert ext["C"].constraints["method"] == "extensive"
    assert plans["C"].objective == pytest.approx(ext["C"].objective, rel=1e-6)
    assert plans["A"].objective == pytest.approx(ext["A"].objective, rel=1e-6)


def test_plans_say_which_method_solved_them_and_why_auto_fell_back():
    from peakplan.report import _solve_line

    lean = Variant("A", "lean", "expected", 0.9)
    pack = examples.synthetic_pack(4, 1).replace(variants=(lean,))
    plan = opt.optimize(pack, n_samples=3, seed=1, quality=False)["A"]
    assert plan.constraints["method"] == "benders" and "method_why" not in plan.constraints
    assert "by the L-shaped method." in _solve_line(plan)
    two = examples.synthetic_pack(4, 2).replace(variants=(lean,), load=np.array([[1.0, 0.5], [0.0, 1.0]]))
    plan = opt.optimize(two, n_samples=3, seed=1, quality=False)["A"]
    assert plan.constraints["method"] == "extensive"
    assert plan.constraints["method_why"] == ("the chain subproblem does not apply: segments s0, s1 share resources "
                                              "r0, r1 and some load more than one (shared capacity: chains take "
                                              "segments on one shared resource, or on resources of their own)")
    assert "by the extensive form (the chain subproblem does not apply: segments s0, s1 share" in _solve_line(plan)
    assert opt._resolve(pack, lean, "auto", "cbc") == ("extensive", "the L-shaped method drives HiGHS, and the "
                                                                    "solver is cbc")
    plan = opt.optimize(two, n_samples=3, seed=1, quality=False, method="extensive")["A"]
    assert "method_why" not in plan.constraints  # asked for, not fallen back to


def test_a_solve_stopped_early_is_labelled_and_still_a_checked_plan():
    pack = examples.synthetic_pack(8, 2)
    draws = mc.sample_paths(pack, 20, 4)
    lean = Variant("A", "lean", "expected", 0.9)
    res, info = solve_benders(pack, draws, lean, None, tol=1e-9, max_iter=2)
    assert res.status is opt.SolveStatus.TIME_LIMIT
    assert np.isfinite(res.objective) and res.gap > 1e-9
    assert info["lower_bound"] <= res.objective
    opt.check_plan(pack, res.levels, res.prebuild)
    full, _ = solve_benders(pack, draws, lean, None, tol=1e-9)
    assert full.status is opt.SolveStatus.OPTIMAL
    assert info["lower_bound"] <= full.objective * (1 + 1e-9) <= res.objective * (1 + 1e-9)


def _stop_at(monkeypatch, module, calls):
    """Make ``module``'s clock check raise the time limit at its ``calls``-th call: a limit that passes mid-iteration."""
    seen = []

    def check(deadline):
        seen.append(deadline)
        if len(seen) >= calls:
            raise opt._OutOfTime

    monkeypatch.setattr(module, "_check_time", check)
    return seen


@pytest.mark.parametrize("calls", [1, 3, 12, 40])
def test_a_limit_passing_inside_an_iteration_stops_there_with_a_plan_that_costs_what_it_says(monkeypatch, calls):
    """Orders with a fixed cost: a stop before relax-and-fix must charge each order in full, not the relaxed share."""
    import peakplan.benders as benders_module

    pack = examples.synthetic_pack(8, 2)
    pack = pack.replace(levers=tuple(replace(lv, fixed_cost=400.0) if lv.kind == "reserve" else lv
                                     for lv in pack.levers))
    draws = mc.sample_paths(pack, 12, 4)
    lean = Variant("A", "lean", "expected", 0.9)
    seen = _stop_at(monkeypatch, benders_module, calls)
    res, info = solve_benders(pack, draws, lean, None, tol=1e-9, time_limit=3600.0)
    assert len(seen) == calls  # it stopped at the check that raised, not at the end of the iteration
    assert res.status is opt.SolveStatus.TIME_LIMIT
    if calls == 1:  # stopped before any point was costed
        assert np.isnan(res.objective)
        return
    assert np.isfinite(res.objective)
    opt.check_plan(pack, res.levels, res.prebuild)
    # the plan's exact SAA cost with every order it places charged in full (z = 1 where the level rises)
    model = opt.build_model(pack, draws, lean)
    fix = {v.name: float(res.levels[i, t]) for (i, t), v in model.y.items()}
    for i, lv in enumerate(pack.levers):
        if lv.fixed_cost > 0:
            rise = np.diff(res.levels[i], prepend=0.0) > 1e-6
            fix.update({f"order__{lv.name}__{t}": float(rise[t]) for t in range(pack.T)})
    exact = linprog_optimum(model.prob, fix=fix)
    assert exact is not None
    assert res.objective >= exact * (1 - 1e-7)
    assert info["lower_bound"] <= exact


def _fixed_cost_pack(T, R):
    pack = examples.synthetic_pack(T, R)
    return pack.replace(levers=tuple(replace(lv, fixed_cost=400.0) if lv.kind == "reserve" else lv
                                     for lv in pack.levers))


def _exact_cost(pack, draws, variant, levels):
    """The plan's exact SAA cost with each order it places charged in full (linprog, levels and indicators fixed)."""
    model = opt.build_model(pack, draws, variant)
    fix = {v.name: float(levels[i, t]) for (i, t), v in model.y.items()}
    for i, lv in enumerate(pack.levers):
        if lv.fixed_cost > 0:
            rise = np.diff(levels[i], prepend=0.0) > 1e-6
            fix.update({f"order__{lv.name}__{t}": float(rise[t]) for t in range(pack.T)})
    return linprog_optimum(model.prob, fix=fix)


@pytest.mark.parametrize("subproblem", ["chains", "lp"])
def test_a_stop_anywhere_keeps_the_best_plan_found_and_never_understates_its_cost(monkeypatch, subproblem):
    """The limit is made to pass at every clock check in turn (chains) or every HiGHS run (LP). Once a plan has
    been found, every later stop returns one, relax-and-fix included, and none costs more than it says."""
    import peakplan.benders as chains_module
    import peakplan.benders_lp as lp_module

    pack = _fixed_cost_pack(6, 2)
    draws = mc.sample_paths(pack, 6, 4)
    lean = Variant("A", "lean", "expected", 0.9)
    module, name = (chains_module, "_check_time") if subproblem == "chains" else (lp_module, "_run_highs")
    real = getattr(module, name)
    count = [0, None]  # calls so far, the call that raises

    def clock(*args):
        count[0] += 1
        if count[1] is not None and count[0] >= count[1]:
            raise opt._OutOfTime
        return real(*args) if subproblem == "lp" else None

    monkeypatch.setattr(module, name, clock)
    full, _ = solve_benders(pack, draws, lean, None, tol=1e-9, time_limit=3600.0, subproblem=subproblem)
    total = count[0]
    assert full.status is opt.SolveStatus.OPTIMAL and total > 10
    found = False
    for stop in range(1, total + 1):
        count[:] = [0, stop]
        res, _ = solve_benders(pack, draws, lean, None, tol=1e-9, time_limit=3600.0, subproblem=subproblem)
        assert res.status is opt.SolveStatus.TIME_LIMIT
        if found:
            assert np.isfinite(res.objective), f"no plan after a stop at call {stop} of {total}"
        if np.isfinite(res.objective):
            found = True
            exact = _exact_cost(pack, draws, lean, res.levels)
            assert exact is not None and res.objective >= exact * (1 - 1e-7), (stop, res.objective, exact)
    assert found


def test_the_lp_fallback_stops_inside_an_iteration_too(monkeypatch):
    import peakplan.benders_lp as lp_module

    pack = examples.tiny_pack()
    draws = mc.sample_paths(pack, 4, 0)
    monkeypatch.setattr(lp_module, "_run_highs", lambda h, deadline: (_ for _ in ()).throw(opt._OutOfTime()))
    res, _ = solve_benders(pack, draws, NONE, None, time_limit=3600.0)
    assert res.status is opt.SolveStatus.TIME_LIMIT and np.isnan(res.objective)
    with pytest.raises(opt.SolverError, match="time limit of 3600 s passed before a plan"):
        opt.solve_variant(pack, NONE, draws, method="benders", time_limit=3600.0)


def test_a_stop_without_a_time_limit_is_reported_in_words(monkeypatch):
    """A solve that stops with no plan and no time limit set (an iteration limit) still gets its message."""
    import peakplan.benders as chains_module

    pack = examples.synthetic_pack(6, 2)
    monkeypatch.setattr(chains_module, "_check_time", lambda deadline: (_ for _ in ()).throw(opt._OutOfTime()))
    with pytest.raises(opt.TimeLimitError, match="stopped at its iteration limit before a plan"):
        opt.solve_variant(pack, NONE, mc.sample_paths(pack, 4, 0), method="benders", time_limit=None)


def test_the_time_limit_is_kept_on_the_clock():
    """A budget case whose iterations take seconds each, stopped at 0.5 s: it returns within a second or two."""
    import time

    pack = examples.synthetic_pack(52, 8).replace(budget=50_000.0)
    draws = mc.sample_paths(pack, 1000, 1)
    solve_benders(pack, mc.sample_paths(pack, 4, 0), NONE, None, tol=1e-3)  # compile the chain solver first
    t0 = time.perf_counter()
    res, _ = solve_benders(pack, draws, examples.DEFAULT_VARIANTS[1], pack.budget, tol=1e-3, time_limit=0.5)
    took = time.perf_counter() - t0
    assert res.status is opt.SolveStatus.TIME_LIMIT
    assert took < 0.5 + 2.0  # one chain pass or one master solve past the limit at most (~0.1-0.6 s here)


@pytest.mark.parametrize("variant", [Variant("A", "a", "expected", 0.9), Variant("C", "c", "cvar", 0.995, level=0.95)],
                         ids=lambda v: v.service)
def test_warm_start_from_a_sub_sample_reaches_the_same_optimum(variant):
    """The sample ramp (solve an eighth of the paths first, start from that plan) changes the path, not the answer."""
    pack = _low_penalty_pack()
    draws = mc.sample_paths(pack, 24, 5)
    structure = chain_structure(pack, variant, None)
    cold, _ = solve_benders_chains(pack, draws, variant, None, structure, tol=1e-9, ramp=0)
    warm, _ = solve_benders_chains(pack, draws, variant, None, structure, tol=1e-9, ramp=16)
    assert cold.status is warm.status is opt.SolveStatus.OPTIMAL
    assert warm.objective == pytest.approx(cold.objective, rel=1e-7)
    best = linprog_optimum(opt.build_model(pack, draws, variant).prob)
    assert cold.objective == pytest.approx(best, rel=1e-6)


def test_chicago_scenario_solves_by_series_chains_with_the_extensive_forms_plans():
    """A station served by rail cars and staff in series (max_delay 0, fixed order costs): ``auto`` picks
    chains, and each plan's cost equals the extensive form's on the same sample (relax-and-fix in both)."""
    from peakplan.compile import build_pack

    pack = build_pack(Path(__file__).parents[1] / "scenarios" / "chicago_events.yaml")
    assert [len(r) for r in chain_structure(pack, pack.variants[0], pack.budget)["resources"]] == [2]
    draws = mc.sample_paths(pack, 20, 3)
    for variant in pack.variants:
        assert opt.resolve_method(pack, variant, "auto") == "benders"
        fast, _ = opt.solve_variant(pack, variant, draws, method="auto")
        ext, _ = opt.solve_variant(pack, variant, draws, method="extensive")
        assert fast.status is ext.status is opt.SolveStatus.OPTIMAL
        assert fast.objective == pytest.approx(ext.objective, rel=2e-6)
        opt.check_plan(pack, fast.levels, fast.prebuild, pack.budget)


def test_the_cut_pool_leaves_out_repeats():
    """A cut again, or again up to rounding, or with a lower side no higher, is left out; a higher lower side, other
    coefficients or other columns go in."""
    pool = _CutPool()
    idx, val = np.array([0, 3, 4]), np.array([1.0, -33.0, 2.5])
    assert len(pool.fresh([(idx, val, 10.0)])) == 1
    assert pool.fresh([(idx, val.copy(), 10.0)]) == []
    assert pool.fresh([(idx, val * (1 + 1e-14), 10.0 + 1e-12)]) == []  # a warm start's rounding
    assert pool.fresh([(idx, val, 9.0)]) == []  # weaker
    assert len(pool.fresh([(idx, val, 11.0)])) == 1  # stronger: in, and now the one to beat
    assert pool.fresh([(idx, val, 10.5)]) == []
    assert len(pool.fresh([(idx, val + np.array([0.0, 1e-6, 0.0]), 10.0)])) == 1
    assert len(pool.fresh([(np.array([0, 3, 5]), val, 10.0)])) == 1
    assert pool.fresh([(idx, 2 * val, 21.0)]) == []  # twice the cut at 10.5: no stronger
    rows = [(idx, 2 * val, 30.0), (idx, 2 * val, 30.0)]  # 15 a unit: stronger, then a repeat in the same batch
    assert len(pool.fresh(rows)) == 1
