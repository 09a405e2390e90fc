"""The fused numba kernel agrees with the numpy reference, and keeps the seed contract."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peakplan import build_pack, examples, score
from peakplan.pack import Disruption, Event, Lever
from peakplan.rng import block_generators
from peakplan.simulate import kernel, mc
from peakplan.testing import assert_conservation, assert_metrics_equal

#: Largest relative difference allowed between the engines: they draw identical numbers
#: and differ only in floating-point summation order (numpy's BLAS ``@`` and pairwise sums).
RTOL = 1e-9


def assert_engines_agree(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype
    for f in a.dtype.names:
        x, y = a[f].astype(float), b[f].astype(float)
        np.testing.assert_allclose(x, y, rtol=RTOL, atol=1e-9, equal_nan=True, err_msg=f)


def rich_pack(**changes):
    """The tiny pack with every model feature switched on at once."""
    base = examples.tiny_pack()
    T = base.T
    levers = (*base.levers,
              Lever("temps_p", "reserve", 1, unit_cost=9.0, reliability=0.7, tiers=((10.0, 9.0), (20.0, 12.0))),
              Lever("ot_n", "flex", 0, unit_cost=30.0, quota=15.0),
              Lever("ot_n2", "flex", 0, unit_cost=18.0, quota=5.0))
    events = (*base.events,
              Event("storm", 0.3, np.array([0, 0, 0, 1, 1, 1], bool), np.array([False, True]),
                    ("lognormal", (1.2, 1.6)), profile=np.linspace(0.5, 1.5, T)),
              Event("flat", 0.5, np.ones(T, bool), np.array([True, False]), ("uniform", (0.9, 1.1))),
              Event("dip", 0.4, np.ones(T, bool), np.array([True, True]), ("normal", (1.0, 0.1))),
              Event("fixed", 0.2, np.ones(T, bool), np.array([True, True]), ("fixed", (1.05,))))
    pack = base.replace(
        levers=levers, events=events, committed=None,
        disruptions=(*base.disruptions, Disruption("strike", 0.4, 1, 3, 0.3, np.array([True, True]))),
        priority=np.array([0, 1]), storable=np.array([True, False]), storage_cap=np.array([40.0, 0.0]),
        holding_cost=np.array([0.5, 0.0]), initial_stock=np.array([10.0, 0.0]), max_delay=2,
        service_window=np.array([0, 1, 1, 1, 1, 0], bool))
    return pack.replace(**changes) if changes else pack


def rich_plan(pack):
    levels = np.zeros((pack.L, pack.T))
    levels[0, 2:5] = 20.0
    levels[1] = 10.0
    levels[2, 4:] = 5.0
    levels[3] = [0, 5, 10, 15, 20, 25]
    levels[4] = 15.0
    levels[5] = 5.0
    prebuild = np.zeros((pack.T, pack.G))
    prebuild[:3, 0] = 12.0
    return mc.plan_inputs(pack, levels=levels, prebuild=prebuild)


CASES = ["tiny", "tiny-reliable", "rich", "rich-normal", "rich-K0", "rich-K1", "synthetic", "synthetic-diag"]


@pytest.mark.parametrize("case", CASES)
def test_numba_engine_agrees_with_numpy_reference(case):
    if case == "tiny":
        pack, plan = examples.tiny_pack(), None
    elif case == "tiny-reliable":  # one lever per resource: the kernel's one-pass capacity path
        tiny = examples.tiny_pack()
        levers = tuple(Lever(lv.name, lv.kind, lv.resource, unit_cost=lv.unit_cost, quota=lv.quota)
                       for lv in tiny.levers[:1]) + tiny.levers[2:]
        pack = tiny.replace(levers=levers, committed=None)
        plan = mc.plan_inputs(pack, levels=np.array([[0, 10, 20, 20, 10, 0], [0, 5, 5, 5, 5, 0.0]]))
    elif case == "synthetic":  # segments sharing a resource: the general sharing path
        pack, plan = examples.synthetic_pack(T=10, R=3, G=4), None
    elif case == "synthetic-diag":  # every segment alone on its resource: the one-pass path
        pack = examples.synthetic_pack(T=10, R=3)
        levels = np.zeros((pack.L, pack.T))
        levels[::2, 3:7] = 15.0
        levels[1::2] = 8.0
        plan = mc.plan_inputs(pack, levels=levels)
    else:
        changes = {"rich-normal": {"marginal": "normal", "demand_mu": np.full((6, 2), 90.0),
                                   "demand_sigma": np.full((6, 2), 25.0)},
                   "rich-K0": {"max_delay": 0}, "rich-K1": {"max_delay": 1}}.get(case, {})
        pack = rich_pack(**changes)
        plan = rich_plan(pack)
    fast = mc.simulate(pack, plan, n_paths=2300, seed=21, engine="numba", threads=1)
    ref = mc.simulate(pack, plan, n_paths=2300, seed=21, engine="numpy")
    assert (fast.engine, ref.engine) == ("numba", "numpy")
    assert_engines_agree(fast.metrics, ref.metrics)
    # the discrete outcomes come from identical draws, so they agree exactly
    np.testing.assert_array_equal(fast.metrics["event_hits"], ref.metrics["event_hits"])
    np.testing.assert_array_equal(fast.metrics["disruption_hits"], ref.metrics["disruption_hits"])
    assert_conservation(fast.metrics)


def test_kernel_draws_are_the_reference_draws_bit_for_bit():
    pack = rich_pack()
    kp = kernel.kernel_params(pack, mc.plan_inputs(pack), mc._static(pack, mc.plan_inputs(pack)))
    g1, g2 = block_generators(4, 2, 3)[0], block_generators(4, 2, 3)[0]
    n = 700
    sc = kernel._Scratch(kp, n)
    kernel._draw(g1, n, *kp.draw_args, sc.xb, sc.ab, sc.ev_eff, sc.ev_hit, sc.dis_hit, sc.late)
    ref = mc.block_draws(pack, g2, n)
    np.testing.assert_array_equal(sc.ev_hit.T, ref.event_hit)
    np.testing.assert_array_equal(sc.dis_hit.T, ref.disruption_hit)
    np.testing.assert_array_equal(sc.late.T, ref.late)
    np.testing.assert_array_equal(sc.ab.transpose(2, 0, 1), ref.capacity_factor)
    # both generators end in the same state: the kernel drew exactly the same numbers
    assert g1.random() == g2.random()
    # demand: exp of the same exponent, then the same event factors (seg_corr is not the identity
    # here, so the correlation sums may round differently: compare to 1e-14)
    demand = np.exp(sc.xb).transpose(2, 0, 1)
    prof = kp.recur_args[0]
    for k, ev in enumerate(pack.events):
        factor = 1.0 + (sc.ev_eff[k][:, None] - 1.0) * prof[k][None, :]
        demand[:, :, ev.segments] *= factor[:, :, None]
    np.testing.assert_allclose(demand, ref.demand, rtol=1e-14)


def test_kernel_draws_identical_without_correlation():
    pack = examples.synthetic_pack(T=8, R=3)
    plan = mc.plan_inputs(pack)
    kp = kernel.kernel_params(pack, plan, mc._static(pack, plan))
    g1, g2 = block_generators(9, 0, 1)[0], block_generators(9, 0, 1)[0]
    sc = kernel._Scratch(kp, 1000)
    kernel._draw(g1, 1000, *kp.draw_args, sc.xb, sc.ab, sc.ev_eff, sc.ev_hit, sc.dis_hit, sc.late)
    ref = mc.block_draws(pack, g2, 1000)
    demand = np.exp(sc.xb).transpose(2, 0, 1)
    factor = 1.0 + (sc.ev_eff[0][:, None] - 1.0) * kp.recur_args[0][0][None, :]
    demand *= factor[:, :, None]
    np.testing.assert_array_equal(demand, ref.demand)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_count_and_chunk_size_do_not_change_numbers(threads):
    pack = rich_pack()
    plan = rich_plan(pack)
    a = mc.simulate(pack, plan, n_paths=5500, seed=8, threads=1, chunk_size=50_000).metrics
    b = mc.simulate(pack, plan, n_paths=5500, seed=8, threads=threads, chunk_size=2000).metrics
    assert_metrics_equal(a, b)


def test_unknown_engine_is_refused(tiny):
    with pytest.raises(ValueError, match="engine must be one of"):
        mc.simulate(tiny, n_paths=10, engine="gpu")


def test_aggregates_only_mode_keeps_no_rows_and_is_exact():
    pack = rich_pack()
    plan = rich_plan(pack)
    full = mc.simulate(pack, plan, n_paths=23_500, seed=2, chunk_size=3000)
    agg = mc.simulate(pack, plan, n_paths=23_500, seed=2, chunk_size=3000, keep_paths=False)
    assert len(agg.metrics) == 0 and agg.summary is not None
    s = agg.summary
    m = full.metrics
    for level in s.levels:
        assert s.risk("cost", level, "var") == score.var(m["cost"], level)
        assert s.risk("cost", level) == pytest.approx(score.cvar(m["cost"], level), rel=1e-12)
        assert s.risk("lost", level) == pytest.approx(score.cvar(m["lost"], level), rel=1e-12)
        assert s.risk("fill_rate", level, "var") == -score.var(-m["fill_rate"], level)
        assert s.risk("fill_rate", level) == pytest.approx(-score.cvar(-m["fill_rate"], level), rel=1e-12)
    assert s.stat("cost") == pytest.approx(m["cost"].mean(), rel=1e-12)
    assert s.stat("fill_rate", "std") == pytest.approx(m["fill_rate"].std(), rel=1e-9)
    assert s.stat("lost", "max") == m["lost"].max()
    assert s.p_breach == np.mean(m["fill_rate"] < pack.service_target - 1e-12)
    # the streaming pass and the one-shot summary of the full rows agree
    one = mc.summarize(pack, m)
    np.testing.assert_array_equal(one.var, s.var)
    np.testing.assert_allclose(one.cvar, s.cvar, rtol=1e-12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 3000), level=st.sampled_from([0.5, 0.9, 0.95, 0.999]), seed=st.integers(0, 2**31))
def test_streaming_tail_is_exact_for_any_path_count(n, level, seed):
    pack = examples.tiny_pack()
    x = np.zeros(n, dtype=mc.metric_dtype(pack))
    rng = np.random.default_rng(seed)
    x["cost"] = rng.lognormal(0, 1, n).round(1)  # ties included
    x["lost"] = rng.exponential(1, n)
    x["fill_rate"] = rng.uniform(0.8, 1.0, n)
    agg = mc._Streaming(x.dtype, n, (level,), 0.95)
    for i in range(0, n, 97):
        agg.add(x[i:i + 97])
    s = agg.result()
    assert s.risk("cost", level, "var") == score.var(x["cost"], level)
    assert s.risk("cost", level) == pytest.approx(score.cvar(x["cost"], level), rel=1e-12)
    assert s.risk("fill_rate", level) == pytest.approx(-score.cvar(-x["fill_rate"], level), rel=1e-12)


def test_bench_gate_flags_a_drop_beyond_tolerance():
    from peakplan import bench

    base = {"figures": {"a": {"value": 1.0}, "b": {"value": 2.0}, "gone": {"value": 1.0}}}
    ok, lines = bench.check([bench.Figure("a", 0.8, 1e6, "cells", 1e6), bench.Figure("b", 1.9, 1e6, "cells", 1e6)], base)
    assert ok and any("skipped" in line for line in lines)
    ok, lines = bench.check([bench.Figure("a", 0.74, 1e6, "cells", 1e6)], base)
    assert not ok and any("REGRESSION" in line for line in lines)
    assert bench.main(["--check", "/nonexistent/baseline.json", "--repeat", "1", "--quick"]) == 2


def cvar_standard_error(x: np.ndarray, level: float) -> float:
    """Monte Carlo standard error of CVaR (upper tail) from its influence function
    ``VaR + (x - VaR)^+ / (1 - level)`` (Hong & Liu 2009, *Simulating sensitivities of CVaR*)."""
    v = np.quantile(x, level)
    return float((v + np.maximum(x - v, 0.0) / (1.0 - level)).std() / np.sqrt(len(x)))


@pytest.mark.parametrize("which", ["synthetic", "retail", "rich"])
def test_float32_loses_nothing_measurable(which):
    """float32 transforms and recurrence: same draws and outcomes, metrics moved by far less
    than their Monte Carlo standard errors (measured: below 1e-3 SE; asserted: below 1e-2 SE)."""
    if which == "synthetic":
        pack, plan, n = examples.synthetic_pack(T=52, R=8), None, 20_000
    elif which == "retail":
        pack, plan, n = build_pack(Path(__file__).resolve().parents[1] / "scenarios" / "retail_peak.yaml"), None, 20_000
    else:
        pack = rich_pack()
        plan, n = rich_plan(pack), 20_000
    a = mc.simulate(pack, plan, n_paths=n, seed=21).metrics
    b = mc.simulate(pack, plan, n_paths=n, seed=21, dtype="float32").metrics
    np.testing.assert_array_equal(a["event_hits"], b["event_hits"])  # the same draws and outcomes
    np.testing.assert_array_equal(a["disruption_hits"], b["disruption_hits"])
    sa, sb = mc.summarize(pack, a), mc.summarize(pack, b)
    for f in ("fill_rate", "cost", "lost"):
        se = a[f].std() / np.sqrt(n)
        assert abs(sb.stat(f) - sa.stat(f)) < 1e-2 * se, f
    for f, sign in mc.TAIL_METRICS:
        se = cvar_standard_error(sign * a[f], 0.95)
        assert abs(sb.risk(f, 0.95) - sa.risk(f, 0.95)) < 1e-2 * se, f


def test_float32_keeps_the_seed_contract():
    pack = rich_pack()
    plan = rich_plan(pack)
    a = mc.simulate(pack, plan, n_paths=3500, seed=8, threads=1, chunk_size=50_000, dtype="float32").metrics
    b = mc.simulate(pack, plan, n_paths=3500, seed=8, threads=2, chunk_size=2000, dtype="float32").metrics
    assert_metrics_equal(a, b)


def test_bad_dtype_is_refused(tiny):
    with pytest.raises(ValueError, match="dtype must be 'float64' or 'float32', got 'float16'"):
        mc.simulate(tiny, n_paths=10, dtype="float16")
    with pytest.raises(ValueError, match="needs engine='numba'"):
        mc.simulate(tiny, n_paths=10, engine="numpy", dtype="float32")


def test_float32_draws_the_same_stream():
    """float32 casts the float64 draws: same generator state after, same discrete outcomes."""
    pack = rich_pack()
    plan = mc.plan_inputs(pack)
    k64, k32 = (kernel.kernel_params(pack, plan, mc._static(pack, plan), dt) for dt in ("float64", "float32"))
    g1, g2 = block_generators(4, 2, 3)[0], block_generators(4, 2, 3)[0]
    s64, s32 = kernel._Scratch(k64, 700), kernel._Scratch(k32, 700)
    kernel._draw(g1, 700, *k64.draw_args, s64.xb, s64.ab, s64.ev_eff, s64.ev_hit, s64.dis_hit, s64.late)
    kernel._draw(g2, 700, *k32.draw_args, s32.xb, s32.ab, s32.ev_eff, s32.ev_hit, s32.dis_hit, s32.late)
    assert s32.xb.dtype == np.float32 and s32.ab.dtype == np.float32
    assert g1.random() == g2.random()
    for name in ("ev_hit", "dis_hit", "late"):
        np.testing.assert_array_equal(getattr(s64, name), getattr(s32, name))
    np.testing.assert_allclose(s32.ab, s64.ab, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(s32.ev_eff, s64.ev_eff, rtol=1e-6)
