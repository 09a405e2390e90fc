import json

import numpy as np
import pytest
from conftest import REFERENCE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peakplan import examples
from peakplan.compile import fit_lognormal
from peakplan.pack import Lever, PlanningPack
from peakplan.simulate import mc
from peakplan.testing import assert_conservation, assert_metrics_equal


def one_segment(demand, capacity, *, max_delay=0, sigma=0.0, **kw) -> PlanningPack:
    demand = np.asarray(demand, float)
    T = len(demand)
    return PlanningPack(
        name="one", periods=tuple(str(t) for t in range(T)), period_kind="day", segments=("s",),
        resources=("r",), load=np.ones((1, 1)), priority=np.zeros(1, int),
        demand_mu=demand[:, None], demand_sigma=np.full((T, 1), sigma), marginal="normal",
        base_capacity=np.asarray(capacity, float)[:, None], capacity_cost=np.zeros(1),
        penalty=np.ones(1), max_delay=max_delay, **kw)


def test_lognormal_fit_recovers_p50_and_p90():
    p50, p90 = np.array([100.0, 40.0]), np.array([130.0, 70.0])
    mu, sigma = fit_lognormal(p50, p90)
    z = np.random.default_rng(0).standard_normal((400_000, 1))
    x = np.exp(mu + sigma * z)
    n = len(x)
    for q, target in ((0.5, p50), (0.9, p90)):
        est = np.quantile(x, q, axis=0)
        # standard error of a sample quantile: sqrt(q(1-q)/n) / f(x_q)
        dens = np.exp(-0.5 * ((np.log(target) - mu) / sigma) ** 2) / (target * sigma * np.sqrt(2 * np.pi))
        se = np.sqrt(q * (1 - q) / n) / dens
        assert np.all(np.abs(est - target) < 4 * se)


def test_zero_variance_equals_hand_computed_recurrence():
    # demand 10, 30, 5, 20 ; capacity 15 ; max_delay 1
    # t0: serve 10, backlog 0 ; t1: req 30, serve 15, backlog(age1) 15
    # t2: req 15+5, serve 15 (all 15 old), new 5 -> backlog 5 ; t3: req 5+20, serve 15 (5 old + 10 new) -> backlog 10
    pack = one_segment([10, 30, 5, 20], [15, 15, 15, 15], max_delay=1)
    m = mc.simulate(pack, n_paths=3, seed=1).metrics
    np.testing.assert_allclose(m["served"], 55.0)
    np.testing.assert_allclose(m["lost"], 0.0)
    np.testing.assert_allclose(m["backlog_end"], 10.0)
    np.testing.assert_allclose(m["fill_rate"], 55 / 65)
    # backlog cost: 15 (t1) + 5 (t2) + 10 (t3) unit-periods ; penalty on backlog left at horizon
    pack2 = one_segment([10, 30, 5, 20], [15] * 4, max_delay=1, backlog_cost=np.array([2.0]))
    m2 = mc.simulate(pack2, n_paths=1, seed=1).metrics
    assert m2["cost_backlog"][0] == pytest.approx(2.0 * 30)
    assert m2["cost_penalty"][0] == pytest.approx(10.0)
    # worst period service: t1 15/30
    assert m2["worst_period_service"][0] == pytest.approx(0.5)


def test_max_delay_zero_loses_immediately_and_delay_two_waits():
    pack = one_segment([30, 0, 0], [10, 10, 10], max_delay=0)
    m = mc.simulate(pack, n_paths=1, seed=0).metrics
    assert m["lost"][0] == pytest.approx(20.0)
    pack = one_segment([30, 0, 0], [10, 10, 10], max_delay=2)
    m = mc.simulate(pack, n_paths=1, seed=0).metrics
    # waits one period (served 10), a second (served 10), then nothing is left
    assert m["served"][0] == pytest.approx(30.0)
    assert m["lost"][0] == 0.0
    pack = one_segment([40, 0, 0, 0], [10, 10, 10, 10], max_delay=2)
    m = mc.simulate(pack, n_paths=1, seed=0).metrics
    assert m["served"][0] == pytest.approx(30.0)
    assert m["lost"][0] == pytest.approx(10.0)


def test_prebuild_serves_peak_from_stock():
    # stock serves demand first, so the build at t1 must cover t1's use of t0's stock:
    # t0 serve 5, build 5 (stock 5) ; t1 serve 5 from stock, build 10 (stock 10) ;
    # t2 serve 10 from stock + 10 from capacity
    pack = one_segment([5, 5, 20], [10, 10, 10], storable=np.array([True]), holding_cost=np.array([1.0]),
                       storage_cap=np.array([100.0]))
    plan = mc.plan_inputs(pack, prebuild=np.array([[5.0], [10.0], [0.0]]))
    m = mc.simulate(pack, plan, n_paths=1, seed=0).metrics
    assert m["served"][0] == pytest.approx(30.0)
    assert m["lost"][0] == pytest.approx(0.0)
    assert m["cost_holding"][0] == pytest.approx(5 + 10)
    # without the pre-build, 10 units are lost at the peak
    m0 = mc.simulate(pack, None, n_paths=1, seed=0).metrics
    assert m0["lost"][0] == pytest.approx(10.0)


def test_flex_is_used_only_when_needed_cheapest_first():
    levers = (Lever("cheap", "flex", 0, unit_cost=2.0, quota=5), Lever("dear", "flex", 0, unit_cost=5.0, quota=50))
    pack = one_segment([10, 20, 8], [10, 10, 10], levers=levers)
    plan = mc.plan_inputs(pack, levels=np.array([[5.0] * 3, [50.0] * 3]))
    m = mc.simulate(pack, plan, n_paths=1, seed=0).metrics
    assert m["lost"][0] == 0.0
    assert m["cost_flex"][0] == pytest.approx(5 * 2 + 5 * 5)


def test_chunk_size_does_not_change_results(tiny):
    a = mc.simulate(tiny, n_paths=5500, seed=11, chunk_size=1000).metrics
    b = mc.simulate(tiny, n_paths=5500, seed=11, chunk_size=50_000).metrics
    c = mc.simulate(tiny, n_paths=5500, seed=11, chunk_size=2500).metrics
    assert_metrics_equal(a, b)
    assert_metrics_equal(a, c)


def test_same_seed_same_numbers_different_seed_different(tiny):
    a = mc.simulate(tiny, n_paths=1000, seed=3).metrics
    b = mc.simulate(tiny, n_paths=1000, seed=3).metrics
    c = mc.simulate(tiny, n_paths=1000, seed=4).metrics
    assert_metrics_equal(a, b)
    assert not np.array_equal(a["cost"], c["cost"])


def test_sample_paths_match_simulation_draws(tiny):
    d = mc.sample_paths(tiny, 1500, seed=5)
    m = mc.simulate(tiny, n_paths=1500, seed=5).metrics
    np.testing.assert_allclose(d.demand.sum(axis=(1, 2)), m["demand"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    T=st.integers(1, 8), K=st.integers(0, 3), seed=st.integers(0, 2**32 - 1),
    cap=st.floats(0.0, 200.0), sigma=st.floats(0.0, 0.8), flex=st.floats(0.0, 50.0),
    stock=st.floats(0.0, 100.0),
)
def test_conservation_served_backlog_lost_equals_demand(T, K, seed, cap, sigma, flex, stock):
    base = examples.tiny_pack()
    pack = base.replace(
        periods=base.periods[:1] * T if T <= 6 else tuple(f"p{t}" for t in range(T)),
        demand_mu=np.log(np.full((T, 2), 80.0)), demand_sigma=np.full((T, 2), sigma),
        base_capacity=np.full((T, 2), cap), max_delay=K, events=(), disruptions=(),
        peak=None, committed=None, storable=np.array([True, False]), storage_cap=np.array([50.0, 0.0]),
        initial_stock=np.array([stock, 0.0]), holding_cost=np.array([0.5, 0.0]))
    levels = np.zeros((pack.L, T))
    levels[1] = flex
    plan = mc.plan_inputs(pack, levels=levels, prebuild=np.full((T, 2), 10.0))
    m = mc.simulate(pack, plan, n_paths=300, seed=seed).metrics
    assert_conservation(m)
    assert np.all(m["fill_rate"] <= 1 + 1e-12) and np.all(m["fill_rate"] >= 0)
    assert np.all(m["lost"] >= -1e-9) and np.all(m["backlog_end"] >= -1e-9)


def test_newsvendor_expected_cost_at_critical_fractile():
    ref = json.loads((REFERENCE / "newsvendor_normal_snyder_shen_ex4_3.json").read_text())
    e = ref["expected"]
    pack = examples.newsvendor_pack()
    levels = np.array([[e["optimal_S"]]])
    m = mc.simulate(pack, mc.plan_inputs(pack, levels=levels), n_paths=200_000, seed=9).metrics
    # g(S) = h E(S-D)+ + p E(D-S)+ ; our cost = h S + (p + h) E(D-S)+ = g(S) + h E[D]
    g = m["cost"] - 0.18 * m["demand"]
    se = g.std() / np.sqrt(len(g))
    assert abs(g.mean() - e["optimal_expected_cost"]) < 4 * se
    short = m["lost"]
    assert abs(short.mean() - e["expected_shortage_at_Sstar"]) < 4 * short.std() / np.sqrt(len(short))
    csl = (short == 0).mean()
    assert abs(csl - e["cycle_service_level_at_Sstar"]) < 4 * np.sqrt(csl * (1 - csl) / len(short))


def test_events_raise_demand_only_in_their_periods(tiny):
    d = mc.sample_paths(tiny, 4000, seed=2)
    no_ev = mc.sample_paths(tiny.replace(events=()), 4000, seed=2)
    ratio = d.demand.mean(axis=0) / no_ev.demand.mean(axis=0)
    assert np.allclose(ratio[[0, 1, 4, 5]], 1.0)
    # triangular(1.1, 1.3, 1.6) mean 1.333, occurring with p = 0.8 -> 1 + 0.8 * 0.333
    assert ratio[2:4].mean() == pytest.approx(1 + 0.8 * (1.1 + 1.3 + 1.6 - 3) / 3, rel=0.03)
