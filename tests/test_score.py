import json

import numpy as np
import pytest
from conftest import REFERENCE
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from peakplan import score

CVAR_REF = json.loads((REFERENCE / "cvar_continuous_distributions.json").read_text())


@pytest.mark.parametrize("a", ["0.9", "0.95", "0.99"])
def test_normal_var_cvar_closed_form_matches_reference(a):
    exp = CVAR_REF["expected"]["normal_mu100_sd20"][a]
    assert score.normal_var(100, 20, float(a)) == pytest.approx(exp["VaR"], abs=1e-6)
    assert score.normal_cvar(100, 20, float(a)) == pytest.approx(exp["CVaR"], abs=1e-6)


@pytest.mark.parametrize("a", ["0.9", "0.95", "0.99"])
def test_sample_cvar_of_normal_converges_to_reference(a):
    x = np.random.default_rng(1).normal(100, 20, 1_000_000)
    exp = CVAR_REF["expected"]["normal_mu100_sd20"][a]["CVaR"]
    # the reference states ~0.01 sigma at a=0.99 with 1e6 draws; allow 0.02 sigma
    assert score.cvar(x, float(a)) == pytest.approx(exp, abs=0.02 * 20)


@pytest.mark.parametrize("a", ["0.9", "0.95", "0.99"])
def test_sample_cvar_of_exponential_matches_reference(a):
    x = np.random.default_rng(2).exponential(1 / 0.5, 1_000_000)
    exp = CVAR_REF["expected"]["exponential_rate0p5_CVaR"][a]
    assert score.cvar(x, float(a)) == pytest.approx(exp, rel=0.01)


def test_cvar_hand_computed_discrete_example():
    # losses 1..10 equally likely, a = 0.75: the worst 25% is 2.5 samples:
    # 10, 9 and half of 8 -> (10 + 9 + 0.5 * 8) / 2.5 = 9.2 ; VaR_0.75 = 8
    x = np.arange(1, 11, dtype=float)
    assert score.var(x, 0.75) == 8.0
    assert score.cvar(x, 0.75) == pytest.approx(9.2, abs=1e-12)
    # a = 0.9: exactly the worst sample
    assert score.cvar(x, 0.9) == pytest.approx(10.0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=60), st.floats(0.01, 0.99))
def test_cvar_equals_rockafellar_uryasev_minimum(xs, a):
    x = np.array(xs)
    # the R-U objective is piecewise linear in t, minimised at a sample point
    obj = [t + np.maximum(x - t, 0).mean() / (1 - a) for t in x]
    assert score.cvar(x, a) == pytest.approx(min(obj), rel=1e-9, abs=1e-9)
    assert score.cvar(x, a) >= score.var(x, a) - 1e-9
    assert score.cvar(x, a) >= x.mean() - 1e-9


def test_var_rejects_bad_alpha():
    with pytest.raises(ValueError, match="alpha must be in"):
        score.var([1.0, 2.0], 1.0)


def test_mean_ci_covers_known_mean():
    x = np.random.default_rng(3).normal(5, 2, 10_000)
    m, lo, hi = score.mean_ci(x)
    half = stats.norm.ppf(0.975) * 2 / 100
    assert lo < 5 < hi
    assert hi - lo == pytest.approx(2 * half, rel=0.05)


def test_apply_stress_scales_demand_and_capacity_only_where_told(tiny):
    from peakplan.pack import StressTest
    from peakplan.simulate import mc

    st = StressTest("x", demand_factor=1.3, capacity_factor=0.5, periods=np.array([0, 0, 1, 1, 0, 0], bool),
                    resources=np.array([True, False]))
    s = score.apply_stress(tiny, st)
    a = mc.sample_paths(tiny, 1000, seed=1).demand
    b = mc.sample_paths(s, 1000, seed=1).demand
    np.testing.assert_allclose(b[:, 2:4] / a[:, 2:4], 1.3)
    np.testing.assert_allclose(b[:, [0, 1, 4, 5]], a[:, [0, 1, 4, 5]])
    np.testing.assert_allclose(s.base_capacity[2:4, 0], tiny.base_capacity[2:4, 0] * 0.5)
    np.testing.assert_allclose(s.base_capacity[:, 1], tiny.base_capacity[:, 1])


def test_dominance_and_recommendation():
    import pandas as pd

    from peakplan import examples

    t = pd.DataFrame([
        {"plan": "A", "cost_mean": 100.0, "cost_cvar95": 150.0, "fill_mean": 0.96, "p_breach": 0.30},
        {"plan": "B", "cost_mean": 103.0, "cost_cvar95": 140.0, "fill_mean": 0.98, "p_breach": 0.10},
        {"plan": "C", "cost_mean": 110.0, "cost_cvar95": 160.0, "fill_mean": 0.97, "p_breach": 0.20},
    ])
    dom = score.dominance(t)
    assert dom["C"] == "dominated by B"
    assert dom["A"] == "efficient" and dom["B"] == "dominates C"
    pack = examples.tiny_pack(service_target=0.95)
    best, why = score.recommend(pack, t)
    assert best == "B" and "halves P(breach)" in why
    best, why = score.recommend(examples.tiny_pack(service_target=0.99), t)
    assert best == "B" and "escalate" in why


def test_plans_equally_cheap_go_to_the_first_in_the_scenarios_order():
    import pandas as pd

    from peakplan import examples

    pack = examples.tiny_pack(service_target=0.95)
    rng = np.random.default_rng(np.random.SeedSequence(5))
    common = rng.normal(1000.0, 100.0, 4000)  # the paths' shared cost: differences between plans are small
    costs = {"A": common + 3.0 + rng.normal(0, 1.0, 4000), "C": common + rng.normal(0, 1.0, 4000)}
    costs["B"] = costs["C"] + 0.01 + rng.normal(0, 1.0, 4000)  # B and C: the same plan within noise
    costs = {p: costs[p] for p in "ABC"}

    def table(costs, **cols):
        return pd.DataFrame([{"plan": p, "cost_mean": c.mean(), "fill_mean": 0.97, "p_breach": 0.1}
                             for p, c in costs.items()]).assign(**cols)

    t = table(costs)
    assert t["cost_mean"].idxmin() == 2  # C is the cheaper by a hair
    # paired: B - C is about 0.01 with a standard error of about 0.016; A is 3 dearer (over 100 standard errors)
    assert score.cost_ties(t, costs, material=0.0) == ["B", "C"]
    assert score.cost_ties(t, material=0.0) == ["C"]  # neither per-path costs nor intervals: exact ties only
    # within 0.1 % of the cheapest (1.0 here) is a tie whatever the noise; A's 3 is not
    assert score.cost_ties(t) == ["B", "C"] and score.cost_ties(t, material=0.005) == ["A", "B", "C"]
    best, why = score.recommend(pack, t, costs)
    assert best == "B" and "C costs the same within 0.1 % or sampling error" in why
    # from the 95% intervals (unpaired: the paths' shared spread of 100 counts, about 2.2 a mean, so A ties too)
    half = 1.959963984540054 * 100.0 / np.sqrt(4000)
    t2 = t.assign(cost_ci_lo=t["cost_mean"] - half, cost_ci_hi=t["cost_mean"] + half)
    assert score.cost_ties(t2, material=0.0) == ["A", "B", "C"]
    # A cheapest but B and C halve its P(breach) for under 5% more: of those two, again the first in order
    costs4 = {**costs, "A": costs["A"] - 10.0}
    t4 = table(costs4, p_breach=[0.3, 0.1, 0.1])
    best, why = score.recommend(pack, t4, costs4)
    assert best == "B" and "B halves P(breach) vs A" in why and "C costs the same within 0.1 %" in why
    # a real difference is not a tie: B dearer by 5 standard errors of the paired difference, and by 0.2 %
    costs["B"] = costs["C"] + 5 / np.sqrt(4000) + rng.normal(0, 1.0, 4000)
    assert score.cost_ties(table(costs), costs, material=0.0) == ["C"]
    costs["B"] = costs["C"] + 2.0
    assert score.cost_ties(table(costs), costs) == ["C"]
    assert score.recommend(pack, table(costs), costs)[0] == "C"


def test_compare_uses_common_random_numbers(tiny):
    from peakplan.simulate import mc

    class Same:
        def inputs(self, pack):
            return mc.plan_inputs(pack)

    t = score.compare(tiny, {"A": Same(), "B": Same()}, n_paths=2000, seed=4)
    rows = t.set_index("plan")
    assert rows.loc["A", "cost_mean"] == rows.loc["B", "cost_mean"] == rows.loc["baseline", "cost_mean"]
    assert "stress: uplift+30%" in t.columns
    assert rows.loc["A", "stress: uplift+30%"] < rows.loc["A", "fill_mean"]
