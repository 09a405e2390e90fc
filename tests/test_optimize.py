import importlib
import json

import numpy as np
import pytest
from conftest import REFERENCE
from hypothesis import given, settings
from hypothesis import strategies as st

from peakplan import examples
from peakplan import plans as plans_mod
from peakplan.errors import InfeasibleError, SolverError, TimeLimitError
from peakplan.pack import Variant
from peakplan.simulate import mc

opt = importlib.import_module("peakplan.optimize")  # the module; `peakplan.optimize` is the function


def roomy(pack):
    """The tiny pack with quotas large enough for every default variant."""
    from dataclasses import replace

    return pack.replace(levers=tuple(replace(lv, quota=lv.quota * 3) if lv.kind != "release" else lv
                                     for lv in pack.levers))


SAILCO = json.loads((REFERENCE / "lp_sailco_aggregate_capacity_plan.json").read_text())
NEWS = json.loads((REFERENCE / "newsvendor_normal_snyder_shen_ex4_3.json").read_text())


def test_sailco_textbook_optimum():
    pack = examples.sailco_pack()
    res, _ = opt.solve_variant(pack, pack.variants[0], mc.sample_paths(pack, 1, 0))
    assert res.status is opt.SolveStatus.OPTIMAL
    e = SAILCO["expected"]
    # the tie-break epsilon (1e-6 per unit of flex cap and stock) stays far below the tolerance
    assert res.objective == pytest.approx(e["min_total_cost"], abs=1e-3)
    # the regular/overtime use of the textbook plan, read back from the flex caps
    np.testing.assert_allclose(res.levels[0], e["regular"], atol=1e-6)
    np.testing.assert_allclose(res.levels[1], e["overtime"], atol=1e-6)
    # the plan replayed in the Monte Carlo costs exactly the optimum
    m = mc.simulate(pack, mc.plan_inputs(pack, res.levels, res.prebuild), n_paths=1, seed=0).metrics
    assert m["lost"][0] == 0
    assert m["cost"][0] == pytest.approx(e["min_total_cost"], abs=1e-6)


def test_newsvendor_critical_fractile_within_saa_error_and_shrinking():
    pack = examples.newsvendor_pack()
    s_star = NEWS["expected"]["optimal_S"]
    errs = []
    for S in (200, 5000):
        reps = []
        for seed in range(3):
            res, _ = opt.solve_variant(pack, pack.variants[0], mc.sample_paths(pack, S, 100 + seed))
            reps.append(res.levels[0, 0])
        # the SAA quantile's standard error: sqrt(q(1-q)/S) / f(S*)
        se = np.sqrt(0.7955 * 0.2045 / S) / (np.exp(-0.5 * 0.8255**2) / (8 * np.sqrt(2 * np.pi)))
        assert all(abs(r - s_star) < 4 * se for r in reps)
        errs.append(np.mean(np.abs(np.array(reps) - s_star)))
    assert errs[1] < errs[0]


def test_every_variant_respects_its_constraints_out_of_sample(tiny):
    tiny = roomy(tiny)
    plans = opt.optimize(tiny, n_samples=40, seed=3, quality=False)
    assert set(plans) == {"A", "B", "C"}
    for p in plans.values():
        opt.check_plan(tiny, p.levels, p.prebuild, tiny.budget)
        lv = tiny.levers[tiny.lever_index("temps_n")]
        assert np.all(p.levels[0][: lv.lead_time] == 0)  # nothing before the lead time
        assert p.levels[0].max() <= lv.quota + 1e-9
        m = mc.simulate(tiny, p.inputs(tiny), n_paths=4000, seed=11).metrics
        if p.variant.service == "expected":
            # in-sample the target holds; out of sample within a few standard errors
            assert m["fill_rate"].mean() >= p.variant.target - 4 * m["fill_rate"].std() / np.sqrt(len(m)) - 0.01


def test_stricter_variants_buy_more_service(tiny):
    tiny = roomy(tiny)
    plans = opt.optimize(tiny.replace(penalty=np.array([8.0, 8.0])), n_samples=40, seed=3, quality=False)
    fills = {k: mc.simulate(tiny, p.inputs(tiny), n_paths=4000, seed=5).metrics["fill_rate"] for k, p in plans.items()}
    assert np.quantile(fills["B"], 0.1) >= np.quantile(fills["A"], 0.1) - 1e-9


@pytest.mark.parametrize("broken,pattern", [
    (lambda lv: lv.__setitem__((0, 3), 500.0), "above quota"),
    (lambda lv: lv.__setitem__((0, 0), 5.0), "before its lead time"),
    (lambda lv: lv.__setitem__((2, 1), 5.0), "before its notice"),
])
def test_check_plan_catches_a_dropped_constraint(tiny, broken, pattern):
    plans = opt.optimize(tiny, n_samples=20, seed=1, quality=False, variants=tiny.variants[:1])
    levels = plans["A"].levels.copy()
    broken(levels)
    with pytest.raises(SolverError, match=pattern):
        opt.check_plan(tiny, levels, plans["A"].prebuild)


def test_freeze_and_forbidden_and_budget(tiny):
    freeze = np.array([0, 0, 1, 1, 1, 0], bool)
    pack = tiny.replace(freeze=freeze, forbidden=("overtime_pack",), budget=2000.0)
    plans = opt.optimize(pack, n_samples=30, seed=2, quality=False, variants=(Variant("A", "x", "none", 0.0),))
    y = plans["A"].levels
    assert np.all(np.diff(y, axis=1)[:, 1:4] == 0)  # no change in periods 2..4
    assert np.all(y[1] == 0)  # forbidden flex lever
    assert mc.lever_fixed_cost(pack, y) <= 2000.0 + 1e-6
    with pytest.raises(SolverError, match="forbidden lever used"):
        bad = y.copy()
        bad[1] = 1.0
        opt.check_plan(pack, bad, plans["A"].prebuild)


def test_identical_variants_are_reported_once(tiny):
    v = (Variant("A", "one", "expected", 0.5), Variant("B", "two", "expected", 0.5))
    plans = opt.optimize(tiny, n_samples=20, seed=1, quality=False, variants=v)
    assert plans["B"].identical_to == "A" and plans["A"].identical_to is None


def test_infeasible_target_gives_a_diagnosis(tiny):
    pack = roomy(tiny).replace(budget=100.0)
    with pytest.raises(InfeasibleError, match="no plan meets fill 99.0%") as info:
        opt.optimize(pack, n_samples=20, seed=1, quality=False,
                     variants=(Variant("A", "lean", "expected", 0.99),))
    text = "\n".join(info.value.diagnosis)
    assert "needs budget +" in text and "or accept fill" in text


def test_quality_statistics(tiny):
    plans = opt.optimize(tiny, n_samples=30, seed=4, variants=tiny.variants[:1], eval_paths=3000)
    q = plans["A"].quality
    lo, hi = q["out_of_sample"]["cost_ci95"]
    assert lo <= q["out_of_sample"]["cost_mean"] <= hi
    assert q["saa_gap"]["replications"] == 3 and np.isfinite(q["saa_gap"]["estimate"])
    assert "vss" in q["vss"]


def test_saa_lower_bound_averages_each_replications_proven_bound(tiny, monkeypatch):
    """tiny's temps carry a fixed cost per order: relax-and-fix's objective bounds a replication's SAA optimum from
    above, its LP relaxation (objective less gap) from below; the lower bound must average the latter."""
    real = opt.solve_variant
    seen = []

    def solve_variant(pack, variant, draws, **kw):
        res, m = real(pack, variant, draws, **kw)
        seen.append((variant.service, res))
        return res, m

    monkeypatch.setattr(opt, "solve_variant", solve_variant)
    penalty = tiny.replace(penalty=np.array([80.0, 80.0]))  # orders pay off: relax-and-fix has work to do
    plans = opt.optimize(penalty, n_samples=12, seed=4, variants=penalty.variants[:1], eval_paths=500)
    reps = [res for service, res in seen[1:] if service != "none"]  # after the plan itself; not the mean-value solve
    assert len(reps) == 3 and all(r.status is opt.SolveStatus.OPTIMAL for r in reps)
    assert any(r.gap > 1e-9 for r in reps)  # a relaxation strictly below its relax-and-fix plan
    bounds = [r.objective - r.gap * max(abs(r.objective), 1.0) for r in reps]
    gap = plans["A"].quality["saa_gap"]
    assert gap["lower_bound"] == pytest.approx(np.mean(bounds), rel=1e-12)
    assert gap["lower_bound"] < np.mean([r.objective for r in reps])


def test_a_failed_replication_is_named_in_the_quality_record(tiny, monkeypatch):
    real = opt.solve_variant
    n = [0]

    def solve_variant(pack, variant, draws, **kw):
        n[0] += 1
        if n[0] == 3:  # the second replication (after the plan and the first replication)
            raise InfeasibleError("variant A (lean): no plan meets fill 95.0% on this sample\nmore lines")
        return real(pack, variant, draws, **kw)

    monkeypatch.setattr(opt, "solve_variant", solve_variant)
    plans = opt.optimize(tiny, n_samples=6, seed=4, variants=tiny.variants[:1], eval_paths=300)
    q = plans["A"].quality
    assert q["saa_replications_failed"] == ["InfeasibleError: variant A (lean): no plan meets fill 95.0% on this sample"]
    assert q["saa_gap"]["replications"] == 2


def test_action_schedule_and_scale_down(tiny):
    plans = opt.optimize(tiny.replace(penalty=np.array([80.0, 80.0])), n_samples=30, seed=4, quality=False,
                         variants=tiny.variants[:1])
    p = plans["A"]
    acts = plans_mod.action_schedule(tiny, p)
    temps = acts[acts["lever"] == "temps_n"]
    assert len(temps) >= 1
    assert (temps["decide_by_index"] == temps["start_index"] - 1).all()  # lead time 1
    assert (temps["quantity"] > 0).all()
    down = plans_mod.scale_down(tiny, p)
    assert set(down["lever"]) <= {lv.name for lv in tiny.levers}
    d = plans_mod.plan_to_dict(tiny, p)
    back = plans_mod.plan_from_dict(tiny, json.loads(json.dumps(d)))
    np.testing.assert_array_equal(back.levels, p.levels)


def test_cli_exit_code_3_and_escalation_when_a_target_is_out_of_reach(retail_copy, tmp_path, capsys):
    from peakplan.cli import main

    text = retail_copy.read_text().replace("  - {name: C, label: resilient, service: cvar, level: 0.95}",
                                           "  - {name: C, label: resilient, service: cvar, level: 0.95, target: 1.0, budget: 1000}")
    text = text + "des: {enabled: false}\n"
    retail_copy.write_text(text)
    out = tmp_path / "run"
    code = main(["run", str(retail_copy), "--out", str(out), "--paths", "1000", "--quiet", "--opt-samples", "15",
                 "--no-quality"])
    captured = capsys.readouterr()
    assert code == 3, captured.err
    esc = json.loads((out / "escalations.json").read_text())
    assert esc and esc[0]["kind"] == "infeasible" and "variant C" in esc[0]["message"]
    assert any("budget +" in d for d in esc[0]["diagnosis"])
    assert "ESCALATION" in (out / "report.md").read_text()
    assert (out / "plans" / "A.json").exists() and not (out / "plans" / "C.json").exists()
    assert json.loads((out / "manifest.json").read_text())["status"] == "infeasible"


def test_cli_time_limit_labels_a_stopped_plan_and_rejects_a_bad_value(retail_copy, tmp_path, capsys, monkeypatch):
    """The limit passes once, inside Plan A's solve (the clock check is made to fire at its 150th call; at the 60th Plan A has no checked point yet)."""
    import peakplan.benders as benders_module
    from peakplan.cli import main

    retail_copy.write_text(retail_copy.read_text() + "des: {enabled: false}\n")
    code = main(["run", str(retail_copy), "--out", str(tmp_path / "bad"), "--quiet", "--opt-time-limit", "0"])
    assert code == 2 and "--opt-time-limit must be a positive number of seconds, got 0.0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    calls = []

    def check(deadline):
        assert deadline < float("inf")  # the limit reached the solver
        calls.append(1)
        if len(calls) == 150:
            raise opt._OutOfTime

    monkeypatch.setattr(benders_module, "_check_time", check)
    out = tmp_path / "run"
    code = main(["run", str(retail_copy), "--out", str(out), "--paths", "1000", "--quiet", "--opt-samples", "15",
                 "--no-quality", "--opt-time-limit", "600"])
    assert code == 0, capsys.readouterr().err
    solver = json.loads((out / "manifest.json").read_text())["solver"]
    assert solver["A"]["status"] == "time_limit" and solver["B"]["status"] == "optimal"
    report = (out / "report.md").read_text()
    assert report.count("stopped by its time limit") == 1
    assert json.loads((out / "plans" / "A.json").read_text())["status"] == "time_limit"


class _Clock:
    """A stand-in for ``optimize``'s ``time`` module whose clock jumps by ``step`` seconds on ``jump()``."""

    def __init__(self):
        import time

        self.real, self.shift = time.perf_counter, 0.0

    def perf_counter(self):
        return self.real() + self.shift

    def jump(self, step=1000.0):
        self.shift += step


def test_the_extensive_forms_build_counts_against_the_time_limit(tiny, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(opt, "time", clock)
    real_build = opt.build_model

    def slow_build(*args, **kwargs):
        m = real_build(*args, **kwargs)
        clock.jump()  # the build took the whole limit
        return m

    monkeypatch.setattr(opt, "build_model", slow_build)
    draws = mc.sample_paths(tiny, 3, 0)
    with pytest.raises(TimeLimitError, match="time limit of 60 s passed before a plan"):
        opt.solve_variant(tiny, tiny.variants[0], draws, method="extensive", time_limit=60.0)


def test_no_time_left_for_relax_and_fix_returns_the_relaxed_plan_with_its_orders_charged_in_full(tiny, monkeypatch):
    """tiny's temps carry a fixed cost per order: the limit passes after the relaxed solve."""
    from test_benders import linprog_optimum

    clock = _Clock()
    monkeypatch.setattr(opt, "time", clock)
    real_solver = opt._solver
    calls = []

    def solver(name, limit):
        calls.append(limit)
        clock.jump()  # seen when the relaxed solve returns
        return real_solver(name, limit)

    monkeypatch.setattr(opt, "_solver", solver)
    draws = mc.sample_paths(tiny, 3, 0)
    variant = Variant("N", "none", "none", 0.0)
    m = opt.build_model(tiny, draws, variant)
    res = opt.solve(m, tiny, time_limit=100.0)
    assert len(calls) == 1  # no re-solve
    assert res.status is opt.SolveStatus.TIME_LIMIT and res.gap > 0
    opt.check_plan(tiny, res.levels, res.prebuild)
    fix = {v.name: float(res.levels[i, t]) for (i, t), v in m.y.items()}
    for i, lv in enumerate(tiny.levers):
        if lv.fixed_cost > 0:
            rise = np.diff(res.levels[i], prepend=0.0) > 1e-6
            assert rise.any()  # an order is placed, so charging it in full matters
            fix.update({f"order__{lv.name}__{t}": float(rise[t]) for t in range(tiny.T)})
    exact = linprog_optimum(opt.build_model(tiny, draws, variant).prob, fix=fix)
    assert res.objective == pytest.approx(exact, rel=1e-7)


def test_replications_stopped_by_the_time_limit_stay_out_of_the_saa_lower_bound(tiny, monkeypatch):
    """A stopped replication's objective bounds its SAA optimum from above: averaging it into the lower bound
    would shrink the gap estimate. The limit reaches every quality solve; stopped ones are counted instead."""
    real = opt.solve_variant
    limits, n_rep = [], [0]

    def solve_variant(pack, variant, draws, **kw):
        limits.append(kw.get("time_limit"))
        res, m = real(pack, variant, draws, **kw)
        if variant.service != "none" and len(limits) > 1:  # a replication (not the plan, not the mean-value solve)
            n_rep[0] += 1
            if n_rep[0] == 1:  # the first replication stops early, 1 % above its optimum
                res = opt.SolveResult(opt.SolveStatus.TIME_LIMIT, res.objective * 1.01, res.levels, res.prebuild,
                                      res.seconds, res.solver, 0.01)
            elif n_rep[0] == 2:  # the second stops before it has any plan
                raise TimeLimitError("variant A: the time limit of 900 s passed before a plan ...")
        return res, m

    monkeypatch.setattr(opt, "solve_variant", solve_variant)
    plans = opt.optimize(tiny, n_samples=4, seed=5, variants=tiny.variants[:1], time_limit=900.0, eval_paths=200)
    quality = plans[tiny.variants[0].name].quality
    assert set(limits) == {900.0}  # the plan, three replications and the mean-value solve
    assert len(limits) == 5
    assert quality["saa_replications_stopped_by_time_limit"] == 2
    assert "saa_gap" not in quality  # one optimal replication is too few for a CI


@pytest.mark.parametrize(("strategy", "limit"), [(1, 40), (4, 40), (4, 300)])  # dual / primal simplex
def test_a_stopped_extensive_solve_returns_a_plan_only_if_highs_has_a_feasible_point(monkeypatch, strategy, limit):
    """HiGHS stopped at a simplex iteration limit: pulp calls the stop "Optimal" whenever the objective is finite,
    also at an infeasible iterate. The solve must come back stopped, and with a plan only if that plan's second
    stage is feasible and costs no more than the objective reported."""
    from test_benders import linprog_optimum

    pack = examples.synthetic_pack(8, 2)
    draws = mc.sample_paths(pack, 6, 2)
    variant = examples.DEFAULT_VARIANTS[1]
    real = opt._solver
    monkeypatch.setattr(opt, "_solver", lambda name, tl: real(name, tl) if name != "highs" else
                        __import__("pulp").HiGHS(msg=False, threads=1, simplex_iteration_limit=limit, presolve="off",
                                                 simplex_strategy=strategy))
    m = opt.build_model(pack, draws, variant)
    res = opt.solve(m, pack, time_limit=600.0)
    assert m.prob.status == 1  # pulp's label: "Optimal", at an iteration limit
    h = m.prob.solverModel
    assert h.getModelStatus() == h.getModelStatus().__class__.kIterationLimit
    assert res.status is opt.SolveStatus.TIME_LIMIT
    feasible_point = h.getInfo().primal_solution_status == 2
    assert feasible_point == (limit == 300)  # both cases are exercised
    assert np.isfinite(res.objective) == feasible_point
    if feasible_point:
        fixed = linprog_optimum(opt.build_model(pack, draws, variant).prob,
                                fix={v.name: float(res.levels[i, t]) for (i, t), v in m.y.items()})
        assert fixed is not None and fixed <= res.objective * (1 + 1e-7)


def test_satisfied_rechecks_every_bound_and_row_of_a_solved_model(tiny):
    """The check CBC's time-limited solutions get (HiGHS's are read from HiGHS): true at an optimum, false once a
    row or a bound is broken, or a value is missing."""
    m = opt.build_model(tiny, mc.sample_paths(tiny, 3, 0), tiny.variants[0])
    assert opt.solve(m, tiny).status is opt.SolveStatus.OPTIMAL
    assert opt._satisfied(m.prob)
    v = next(iter(m.y.values()))
    kept = v.varValue
    v.varValue = kept + 1e3  # a lever level far from what its rows allow
    assert not opt._satisfied(m.prob)
    v.varValue = -1.0  # below its lower bound of 0
    assert not opt._satisfied(m.prob)
    v.varValue = None
    assert not opt._satisfied(m.prob)
    v.varValue = kept
    assert opt._satisfied(m.prob)


def test_cbc_is_selectable_from_the_api_the_scenario_and_the_cli(tiny, monkeypatch):
    """CBC (through pulp, with no deprecated class: warnings are errors here) solves the same plans as HiGHS."""
    from peakplan import cli, pipeline
    from peakplan.config import Simulation

    lean = tiny.replace(variants=tiny.variants[:1])
    name = lean.variants[0].name
    highs = opt.optimize(lean, n_samples=3, seed=2, quality=False)[name]
    cbc = opt.optimize(lean, n_samples=3, seed=2, quality=False, solver="cbc")[name]
    assert cbc.constraints["solver"] == "cbc" and highs.constraints["solver"] == "highs"
    assert cbc.constraints["method"] == "extensive"
    assert cbc.objective == pytest.approx(highs.objective, rel=1e-6)
    # the scenario's simulation.opt_solver reaches the pack and is the default
    from_pack = opt.optimize(lean.replace(extra={**lean.extra, "opt_solver": "cbc"}), n_samples=3, seed=2,
                             quality=False)[name]
    assert from_pack.constraints["solver"] == "cbc"
    assert Simulation().opt_solver == "highs"
    # the CLI passes --solver on to the pipeline
    seen = {}

    def fake_run(*args, **kwargs):
        seen.update(kwargs)
        raise opt.InputError("stop here")

    monkeypatch.setattr(pipeline, "run", fake_run)
    assert cli.main(["run", "scenario.yaml", "--out", "nowhere", "--solver", "cbc", "--quiet"]) == 2
    assert seen["opt_solver"] == "cbc"


def test_method_must_be_known(tiny):
    with pytest.raises(opt.InputError, match="method must be one of auto, extensive, benders; got 'dual'"):
        opt.solve_variant(tiny, tiny.variants[0], mc.sample_paths(tiny, 2, 0), method="dual")
    with pytest.raises(opt.InputError, match="needs solver='highs'"):
        opt.solve_variant(tiny, tiny.variants[0], mc.sample_paths(tiny, 2, 0), method="benders", solver="cbc")


def test_benders_equals_extensive_form_on_the_newsvendor():
    pack = examples.newsvendor_pack()
    draws = mc.sample_paths(pack, 60, 3)
    ext, _ = opt.solve_variant(pack, pack.variants[0], draws)
    ben, _ = opt.solve_variant(pack, pack.variants[0], draws, method="benders")
    assert ben.objective == pytest.approx(ext.objective, rel=1e-6)
    np.testing.assert_allclose(ben.levels, ext.levels, atol=1e-4)


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10_000), S=st.integers(2, 8), service=st.sampled_from(["none", "expected"]),
       fixed=st.booleans())
def test_benders_equals_extensive_form_on_random_small_instances(seed, S, service, fixed):
    from dataclasses import replace

    pack = roomy(examples.tiny_pack())
    if not fixed:  # relax-and-fix is a heuristic in both methods; compare the pure LP too
        pack = pack.replace(levers=tuple(replace(lv, fixed_cost=0.0) for lv in pack.levers))
    variant = Variant("A", "x", service, 0.8 if service == "expected" else 0.0)
    draws = mc.sample_paths(pack, S, seed)
    ext = opt.solve(opt.build_model(pack, draws, variant, pack.budget), pack)
    ben, info = opt.solve_benders(pack, draws, variant, pack.budget, tol=1e-9)
    assert ext.status is ben.status
    if ext.status is opt.SolveStatus.OPTIMAL and not fixed:
        assert ben.objective == pytest.approx(ext.objective, rel=1e-6)
        assert info["lower_bound"] <= ben.objective + 1e-6 * abs(ben.objective)
        opt.check_plan(pack, ben.levels, ben.prebuild, pack.budget, info["flex_spend"])


def test_benders_reaches_the_sailco_optimum():
    pack = examples.sailco_pack()
    res, _ = opt.solve_variant(pack, pack.variants[0], mc.sample_paths(pack, 1, 0), method="benders")
    assert res.status is opt.SolveStatus.OPTIMAL
    assert res.objective == pytest.approx(SAILCO["expected"]["min_total_cost"], rel=1e-6)
