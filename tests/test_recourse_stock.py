"""Storable chains: :func:`peakplan.recourse_stock.solve_stock_chains` (a min-cost flow) against the
reference LP :func:`peakplan.recourse_lp.solve_chain_lp_stock`, which is itself checked against the
extensive form's second stage, and the L-shaped method on storable packs against ``linprog``.
"""

import importlib

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_benders import _check_against_linprog, _shared_pack, linprog_optimum
from test_recourse_series import GRID, series_chains

from peakplan import benders, examples
from peakplan.benders import chain_structure, solve_benders
from peakplan.pack import Variant
from peakplan.recourse import solve_flows
from peakplan.recourse_lp import solve_chain_lp_delay, solve_chain_lp_stock
from peakplan.recourse_stock import STOCK_FIRST, WarmStarts, solve_stock_chains
from peakplan.simulate import mc

opt = importlib.import_module("peakplan.optimize")


@st.composite
def stock_chains(draw, n_max=2, t_max=8, streams=False):
    """``n`` storable chains: the series-chain strategy (J 1-2, any wait 0-3) plus builds, room, stock, holding;
    with ``streams``, also 0-2 streams that share the capacity but cannot be stored (``d2``, ``L2`` last)."""
    d, c, F, u, b, L, K = draw(series_chains(n_max=n_max, j_min=1, j_max=2, ks=(0, 1, 2, 3), t_max=t_max))
    n, T = d.shape

    def arr(elems, shape):
        size = int(np.prod(shape))
        return np.array(draw(st.lists(elems, min_size=size, max_size=size)), float).reshape(shape)

    pb = arr(GRID, (n, T))
    room = arr(st.sampled_from([0.0, 1.0, 3.0, 5.0, 20.0]), (n,))
    s0 = np.minimum(arr(GRID, (n,)), room)  # the initial stock fits its room (else: see the fallback test)
    h = arr(st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0]), (n,))
    if not streams:
        return d, c, F, u, b, L, K, pb, room, s0, h
    M2 = draw(st.integers(0, 2))
    return d, c, F, u, b, L, K, pb, room, s0, h, arr(GRID, (n, T, M2)), arr(GRID, (n, T, M2))


def _ref(chain, i, c=None, F=None, pb=None):
    """The reference LP of chain ``i`` (with ``c``, ``F``, ``pb`` in place of its own where given)."""
    d, c0, F0, u, b, L, K, pb0, room, s0, h, d2, L2 = chain if len(chain) == 13 else (*chain, None, None)
    return solve_chain_lp_stock(d[i], c0[i] if c is None else c, F0[i] if F is None else F, u[i], float(b[i]), L[i],
                                K, pb0[i] if pb is None else pb, float(room[i]), float(s0[i]), float(h[i]),
                                STOCK_FIRST, d2=None if d2 is None else d2[i], L2=None if L2 is None else L2[i])


def _tol(chain, i):
    """HiGHS's feasibility tolerance (1e-7) times the prices, per row of the reference LP."""
    d, c, F, u, b, L, K, pb, room, s0, h = chain[:11]
    T = d.shape[1]
    more = (float(chain[11][i].sum()), float(chain[12][i].max(initial=0.0))) if len(chain) == 13 else (0.0, 0.0)
    return 1e-7 * (6 * T + c[i].size) * max(1.0, float(u[i].sum() + b[i] * T + max(L[i].max(), more[1]) + h[i] * T)) \
        * max(1.0, float(d[i].sum() + s0[i] + more[0]))


@settings(max_examples=150, deadline=None)
@example(chain=(np.array([[0.0, 5.0, 5.0]]), np.array([[[5.0], [0.0], [0.0]]]), np.zeros((1, 3, 1)), np.zeros((1, 1)),
                np.array([1.0]), np.full((1, 3), 10.0), 0, np.array([[5.0, 0.0, 0.0]]), np.array([5.0]),
                np.array([3.0]), np.array([0.5])))  # build in 0 for 1, initial stock for 2, room binds
@given(chain=stock_chains(streams=True))
def test_stock_chains_match_the_reference_lp(chain):
    """Cost, feasible flows that cost what they say, and duals that make a valid cut for capacity, flex and builds;
    with 0-2 more streams sharing the capacity that cannot be stored."""
    if len(chain) == 11:  # the explicit example
        chain = (*chain, np.zeros((*chain[0].shape, 0)), np.zeros((*chain[0].shape, 0)))
    d, c, F, u, b, L, K, pb, room, s0, h, d2, L2 = chain
    out = solve_stock_chains(d, c, F, u, b, L, K, pb, room, s0, h, fallback=False, d2=d2, L2=L2)
    for i in range(d.shape[0]):
        ref = _ref(chain, i)
        tol = _tol(chain, i)
        if out["ok"][i]:
            assert out["cost"][i] == pytest.approx(ref["cost"], abs=tol)
        # the flows: every arrival served within its wait or lost, the cost recomputed from them
        T = d.shape[1]
        x = out["by_age"][i]
        assert np.all(x >= -1e-9) and np.all(out["loss"][i] >= -1e-9)
        assert np.allclose(x.sum(axis=1) + out["loss"][i], d[i], atol=1e-9 * max(1.0, d[i].max()))
        x2, loss2 = out["by_age2"][i], out["loss2"][i]
        assert np.all(x2 >= -1e-9) and np.all(loss2 >= -1e-9)
        assert np.allclose(x2.sum(axis=2) + loss2, d2[i], atol=1e-9 * max(1.0, d2[i].max(initial=0.0)))
        for t in range(T):
            assert np.all(x[t, T - t:] == 0.0) and np.all(x2[t, :, T - t:] == 0.0)  # nothing served after the horizon
        flex = out["flex"][i]
        assert np.all(flex <= F[i] + 1e-9) and np.all(flex >= 0)
        wait = np.minimum(K, T - np.arange(T))
        ages = np.arange(K + 1)
        backlog = float((ages * x).sum() + (wait * out["loss"][i]).sum() + (ages * x2).sum()
                        + (wait[:, None] * loss2).sum())
        assert out["backlog"][i] == pytest.approx(backlog, abs=1e-9 * max(1.0, backlog))
        if out["ok"][i]:
            recomputed = (b[i] * backlog + float((L[i] * out["loss"][i]).sum() + (L2[i] * loss2).sum()
                                                 + (flex * u[i]).sum())
                          + h[i] * out["stock"][i] - STOCK_FIRST * out["take"][i])
            assert out["cost"][i] == pytest.approx(recomputed, abs=1e-9 * max(1.0, abs(recomputed)))
        # nothing taken that was not there, nothing held beyond the room
        assert -1e-9 <= out["take"][i] <= s0[i] + pb[i].sum() + 1e-9
        assert -1e-9 <= out["stock"][i] <= room[i] * T + 1e-9
        # the cut: Q(c', F', pb') >= Q + sum(-p dc - q dF - pb_dual dpb), checked by the reference LP
        rng = np.random.default_rng(int(d[i].sum() * 7 + T))
        for _ in range(2):
            c2 = np.maximum(c[i] + rng.choice([-2.0, 0.0, 1.0, 3.0], c[i].shape), 0.0)
            F2 = np.maximum(F[i] + rng.choice([-1.0, 0.0, 2.0], F[i].shape), 0.0)
            pb2 = np.maximum(pb[i] + rng.choice([-2.0, 0.0, 2.0], T), 0.0)
            q2 = _ref(chain, i, c2, F2, pb2)["cost"]
            lin = (out["cost"][i] - (out["p"][i] * (c2 - c[i])).sum() - (out["q"][i] * (F2 - F[i])).sum()
                   - (out["pb_dual"][i] * (pb2 - pb[i])).sum())
            assert lin <= q2 + 10 * tol


@settings(max_examples=40, deadline=None)
@given(chain=stock_chains())
def test_without_builds_or_stock_a_storable_chain_is_the_plain_chain(chain):
    """No build cap and no initial stock: the same cost as the delay kernel (another algorithm), and no stock."""
    d, c, F, u, b, L, K, pb, room, s0, h = chain
    out = solve_stock_chains(d, c, F, u, b, L, K, np.zeros_like(pb), room, 0.0, h)
    plain = solve_flows(d[:, :, None], c, F, u, b, L[:, :, None], K)
    assert np.allclose(out["cost"], plain["cost"], rtol=1e-9, atol=1e-9)
    assert np.all(out["stock"] == 0.0) and np.all(out["take"] == 0.0)


def test_the_reference_lp_without_stock_is_the_delay_lp():
    rng = np.random.default_rng(5)
    T, J = 7, 2
    d, c, F = rng.uniform(0, 9, T), rng.uniform(0, 9, (T, J)), rng.uniform(0, 3, (T, J))
    u, L = rng.uniform(0, 2, J), rng.uniform(1, 5, T)
    for K in (0, 1, 3):
        ref = solve_chain_lp_stock(d, c, F, u, 0.5, L, K, np.zeros(T), 10.0, 0.0, 1.0)
        assert ref["cost"] == pytest.approx(solve_chain_lp_delay(d, c, F, u, 0.5, L, K)["cost"], rel=1e-9)
        assert ref["stock"] == 0.0 and ref["take"] == 0.0


def test_pre_building_by_hand():
    """Demand 0, 10, 10 on capacity 10, 5, 5; up to 5 built in period 0 at 1 a period held, losses at 10.

    Serve 5 + 5 in periods 1 and 2 from capacity, build 5 in 0 for period 1 (held 1 period: 1 x 5) and
    the 5 left (capacity 10 - 5) could go to period 2 only through a second build, which the cap stops:
    lost 5. Cost 5 (holding) + 50 (lost) - 5e-5 (taken from stock) = 54.99995.
    """
    d = np.array([[0.0, 10.0, 10.0]])
    c = np.array([[[10.0], [5.0], [5.0]]])
    out = solve_stock_chains(d, c, 0.0, 0.0, 0.0, np.full((1, 3), 10.0), 0, np.array([[5.0, 0.0, 0.0]]), 20.0, 0.0,
                             1.0)
    assert out["ok"][0]
    assert out["cost"][0] == pytest.approx(5.0 + 50.0 - 5 * STOCK_FIRST, abs=1e-9)
    assert out["stock"][0] == pytest.approx(5.0) and out["take"][0] == pytest.approx(5.0)
    assert out["loss"][0].tolist() == pytest.approx([0.0, 0.0, 5.0])
    # a unit more build cap in 0 saves a lost unit in 2 less two periods' holding: 10 - 2
    assert out["pb_dual"][0, 0] == pytest.approx(10.0 - 2.0 + STOCK_FIRST)


def test_initial_stock_beyond_its_room_goes_to_the_lp():
    """More initial stock than room: the flow's circulation does not fit; the LP decides (take at once)."""
    d = np.array([[8.0, 1.0]])
    c = np.array([[[0.0], [0.0]]])
    out = solve_stock_chains(d, c, 0.0, 0.0, 0.0, np.full((1, 2), 10.0), 0, np.zeros((1, 2)), 2.0, 6.0, 1.0)
    assert not out["ok"][0] and out["fallback"] == 1
    # 6 taken in period 0 (4 must go, the room is 2): 2 lost then, 1 lost in period 1; nothing held
    assert out["cost"][0] == pytest.approx(20.0 + 10.0 - 6 * STOCK_FIRST, abs=1e-6)


def test_stock_chains_reject_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        solve_stock_chains(np.ones((1, 2)), np.ones((1, 2, 1)), 0.0, 0.0, 0.0, np.ones((1, 2)), 0, -np.ones((1, 2)),
                           1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"d must be \[C, T\] or \[C, T, P\]"):
        solve_stock_chains(np.ones(2), np.ones((1, 2, 1)), 0.0, 0.0, 0.0, np.ones((1, 2)), 0, np.ones((1, 2)), 1.0,
                           0.0, 1.0)
    with pytest.raises(ValueError, match="need both d2 and L2"):
        solve_stock_chains(np.ones((1, 2)), np.ones((1, 2, 1)), 0.0, 0.0, 0.0, np.ones((1, 2)), 0, np.ones((1, 2)),
                           1.0, 0.0, 1.0, d2=np.ones((1, 2, 1)))
    with pytest.raises(ValueError, match=r"d2 must be \[C, T, M2\]"):
        solve_stock_chains(np.ones((1, 2)), np.ones((1, 2, 1)), 0.0, 0.0, 0.0, np.ones((1, 2)), 0, np.ones((1, 2)),
                           1.0, 0.0, 1.0, d2=np.ones((1, 2)), L2=np.ones((1, 2)))


def test_two_stocks_on_one_capacity_by_hand():
    """Capacity 10 in each of 3 periods, demand 0, 0, 30 for stream 0 and 0, 0, 0 for stream 1 with room 10 and
    builds up to 10 a period for both, holding 1 (stream 0) and 2 (stream 1), losses at 100: stream 0 builds
    10 in periods 0 and 1 (held 2 and 1 periods: 30) and serves 10 from capacity in 2; nothing lost."""
    d = np.array([[[0.0, 0.0], [0.0, 0.0], [30.0, 0.0]]])
    c = np.full((1, 3, 1), 10.0)
    out = solve_stock_chains(d, c, 0.0, 0.0, 0.0, 100.0, 0, np.full((1, 3, 2), 10.0), np.array([[20.0, 20.0]]),
                             0.0, np.array([[1.0, 2.0]]))
    assert out["ok"][0]
    assert out["stock"][0].tolist() == pytest.approx([30.0, 0.0])
    assert out["take"][0].tolist() == pytest.approx([20.0, 0.0])
    assert out["cost"][0] == pytest.approx(30.0 - 20 * STOCK_FIRST, abs=1e-9)
    assert out["loss"].shape == (1, 3, 2) and np.all(out["loss"] == 0.0)
    # a unit more build cap for stream 0 in period 1 is worth nothing (capacity binds), and none for stream 1
    assert out["pb_dual"][0, :, 1].tolist() == pytest.approx([0.0, 0.0, 0.0])


def _storable(pack, rng, share=1.0):
    """``pack`` with some segments storable: room for 1-3 periods of demand, holding 0.1-1, initial stock."""
    G = pack.G
    flag = rng.random(G) < share
    flag[0] = True
    mean = pack.base_capacity.mean(axis=0)[:G]
    return pack.replace(storable=flag, storage_cap=np.where(flag, mean * rng.uniform(1, 3, G), 0.0),
                        holding_cost=rng.uniform(0.1, 1.0, G),
                        initial_stock=np.where(flag & (rng.random(G) < 0.5), mean * rng.uniform(0, 1, G), 0.0))


@settings(max_examples=8, deadline=None)
@example(T=6, R=2, seed=1, S=3, service="expected", target=0.99, penalty=5.0, K=1, share=1.0)
@example(T=7, R=2, seed=2, S=4, service="cvar", target=0.995, penalty=5.0, K=0, share=0.5)
@example(T=6, R=1, seed=3, S=3, service="none", target=0.5, penalty=50.0, K=2, share=1.0)
@given(T=st.integers(4, 8), R=st.integers(1, 3), seed=st.integers(0, 10_000), S=st.integers(2, 5),
       service=st.sampled_from(["none", "expected", "quantile", "cvar"]),
       target=st.one_of(st.sampled_from([0.9, 0.99, 0.999]), st.floats(0.5, 0.999)),
       penalty=st.sampled_from([50.0, 5.0]), K=st.sampled_from([0, 1, 2]), share=st.sampled_from([0.5, 1.0]))
def test_storable_chain_benders_equals_the_extensive_form(T, R, seed, S, service, target, penalty, K, share):
    """Pre-build on the L-shaped method: the same optimum as the extensive form by linprog, planned builds and all."""
    rng = np.random.default_rng(seed)
    pack = examples.synthetic_pack(T, R, seed=seed % 50)
    pack = _storable(pack.replace(penalty=np.full(pack.G, penalty), max_delay=K), rng, share)
    draws = mc.sample_paths(pack, S, seed)
    variant = Variant("V", "v", service, 0.0 if service == "none" else target,
                      level=0.9 if service == "quantile" else 0.95)
    assert isinstance(chain_structure(pack, variant, None), dict)
    _benders_matches_linprog(pack, draws, variant)


def _benders_matches_linprog(pack, draws, variant):
    """The L-shaped method on chains against linprog: the same optimum, a checked plan, builds only where storable."""
    res, info = solve_benders(pack, draws, variant, tol=1e-9, subproblem="chains")
    assert info["subproblem"] == "chains"
    model = opt.build_model(pack, draws, variant)
    if linprog_optimum(model.prob) is None:
        assert res.status is opt.SolveStatus.INFEASIBLE
        return
    _check_against_linprog(pack, draws, variant, res, info)
    opt.check_plan(pack, res.levels, res.prebuild, None, info["flex_spend"])
    assert np.all(res.prebuild[:, ~pack.arr("storable").astype(bool)] == 0.0)


@settings(max_examples=12, deadline=None)
@example(T=6, R=1, seed=1, S=3, service="expected", target=0.99, penalty=5.0, K=1, half=True, which=0)
@example(T=6, R=2, seed=2, S=3, service="cvar", target=0.99, penalty=5.0, K=0, half=False, which=1)
@example(T=5, R=1, seed=3, S=3, service="none", target=0.5, penalty=50.0, K=2, half=True, which=1)
# a build's dual counted in units of the segment, not of the resource, fails these two
@example(T=6, R=2, seed=15, S=3, service="expected", target=0.99, penalty=5.0, K=1, half=True, which=1)
@example(T=6, R=1, seed=18, S=3, service="cvar", target=0.99, penalty=5.0, K=1, half=True, which=1)
@example(T=6, R=2, seed=4, S=3, service="expected", target=0.99, penalty=5.0, K=1, half=True, which=2)
@example(T=5, R=1, seed=5, S=3, service="quantile", target=0.95, penalty=5.0, K=2, half=False, which=2)
@given(T=st.integers(4, 7), R=st.integers(1, 2), seed=st.integers(0, 10_000), S=st.integers(2, 4),
       service=st.sampled_from(["none", "expected", "quantile", "cvar"]),
       target=st.sampled_from([0.9, 0.95, 0.99]), penalty=st.sampled_from([50.0, 5.0]), K=st.sampled_from([0, 1, 2]),
       half=st.booleans(), which=st.sampled_from([0, 1, 2]))
def test_storable_segments_sharing_a_resource_equal_the_extensive_form(T, R, seed, S, service, target, penalty, K,
                                                                       half, which):
    """Two segments per resource, one of them storable (``which`` 0: the first; 1: the second, which with ``half``
    takes half a unit of the resource per unit) or both (2): one chain with a stock per storable segment and
    the other a stream that cannot be stored, on the L-shaped method, against the extensive form by linprog."""
    rng = np.random.default_rng(seed)
    pack = _shared_pack(T, R, seed, penalty, half)
    flag = np.zeros(pack.G, bool)
    flag[which * R:(which + 1) * R] = True
    if which == 2:
        flag[:] = True
    mean = pack.base_capacity.mean(axis=0)[np.arange(pack.G) % R]
    pack = pack.replace(max_delay=K, storable=flag,
                        storage_cap=np.where(flag, mean * rng.uniform(1, 3, pack.G), 0.0),
                        holding_cost=rng.uniform(0.1, 1.0, pack.G),
                        initial_stock=np.where(flag & (rng.random(pack.G) < 0.5), mean * rng.uniform(0, 1, pack.G),
                                               0.0))
    draws = mc.sample_paths(pack, S, seed)
    variant = Variant("V", "v", service, 0.0 if service == "none" else target,
                      level=0.9 if service == "quantile" else 0.95)
    ok = chain_structure(pack, variant, None)
    assert [len(x) for x in ok["segments"]] == [2] * R
    _benders_matches_linprog(pack, draws, variant)


@settings(max_examples=150, deadline=None)
@given(chain=stock_chains(streams=True), seed=st.integers(0, 2**32 - 1))
def test_a_warm_start_gives_the_cold_optimum(chain, seed):
    """Solved once, then again at another point (capacity, flex, builds, loss, backlog, holding and flex prices,
    the take bonus, arrivals and initial stock all moved, the loss prices down as well as up) from the first
    solve's flows and prices: the same optimum as from zero flows, under the same certificate. At the first
    point again every chain starts warm and nothing moves."""
    d, c, F, u, b, L, K, pb, room, s0, h, d2, L2 = chain
    n, T = d.shape
    M2, J = d2.shape[2], c.shape[2]
    warm = WarmStarts(n, T, K, 1, M2, J)
    one = solve_stock_chains(d, c, F, u, b, L, K, pb, room, s0, h, fallback=False, d2=d2, L2=L2, warm=warm)
    assert one["warm"] == 0 and warm.have.tolist() == one["ok"].tolist()
    rng = np.random.default_rng(seed)

    def move(x, steps):
        return np.maximum(x + rng.choice(steps, np.shape(x)), 0.0)

    point = (move(d, [-1.0, 0.0, 0.0, 2.0]), move(c, [-2.0, 0.0, 1.0, 3.0]), move(F, [-1.0, 0.0, 2.0]),
             u * rng.choice([0.5, 1.0, 2.0], u.shape), b * rng.choice([0.0, 1.0, 2.0], b.shape),
             L * rng.choice([0.3, 1.0, 3.0], L.shape), K, move(pb, [-2.0, 0.0, 2.0]), room,
             np.minimum(move(s0, [-1.0, 0.0, 1.0]), room), h * rng.choice([0.0, 1.0, 2.0], h.shape))
    eps = STOCK_FIRST * rng.choice([0.0, 1.0, 2.0])
    L2b = L2 * rng.choice([0.3, 1.0, 3.0], L2.shape)
    cold = solve_stock_chains(*point, eps, fallback=False, d2=d2, L2=L2b)
    hot = solve_stock_chains(*point, eps, fallback=False, d2=d2, L2=L2b, warm=warm)
    assert hot["ok"].tolist() == cold["ok"].tolist()
    assert hot["warm"] == int((one["ok"] & cold["ok"]).sum())  # every chain solved before started from it
    scale = max(1.0, float(np.abs(cold["cost"]).max()))
    assert np.allclose(hot["cost"][cold["ok"]], cold["cost"][cold["ok"]], rtol=1e-9, atol=1e-9 * scale)
    dd = point[0]
    assert np.allclose(hot["by_age"].sum(axis=2) + hot["loss"], dd, atol=1e-9 * max(1.0, dd.max()))
    assert np.allclose(hot["by_age2"].sum(axis=3) + hot["loss2"], d2, atol=1e-9 * max(1.0, d2.max(initial=0.0)))
    again = solve_stock_chains(*point, eps, fallback=False, d2=d2, L2=L2b, warm=warm)
    assert again["warm"] == int(hot["ok"].sum())
    assert np.allclose(again["cost"][hot["ok"]], hot["cost"][hot["ok"]], rtol=1e-12, atol=1e-12 * scale)


def test_warm_starts_reject_other_shapes_and_slots():
    d, c = np.ones((2, 3)), np.ones((2, 3, 1))
    args = (d, c, 0.0, 0.0, 0.0, np.ones((2, 3)), 0, np.ones((2, 3)), 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"warm starts kept for \(T, K, P, M2, J\) = \(4, 0, 1, 0, 1\)"):
        solve_stock_chains(*args, warm=WarmStarts(2, 4, 0))
    with pytest.raises(ValueError, match="slots must be 2 indices below 2"):
        solve_stock_chains(*args, warm=WarmStarts(2, 3, 0), slots=[0, 2])
    warm = WarmStarts(5, 3, 0)
    out = solve_stock_chains(*args, warm=warm, slots=[4, 1])
    assert warm.have.tolist() == [False, True, False, False, True] and out["warm"] == 0
    assert solve_stock_chains(*args, warm=warm, slots=[1, 4])["warm"] == 2


@pytest.mark.parametrize("service", ["expected", "cvar"])
def test_warm_starts_change_nothing_but_the_work(service, monkeypatch):
    """The L-shaped method on storable chains with each path's warm start and with none (no room for them):
    the same optimum to its tolerance; only the first run started chains warm."""
    rng = np.random.default_rng(5)
    pack = _storable(examples.synthetic_pack(8, 2, seed=3).replace(max_delay=1), rng)
    draws = mc.sample_paths(pack, 40, 2)
    variant = Variant("V", "v", service, 0.99, level=0.95)
    warm, info = solve_benders(pack, draws, variant, tol=1e-8, subproblem="chains")
    assert info["warm_starts"] > 0 and info["stock_chains"] > info["warm_starts"]
    monkeypatch.setattr(benders, "WARM_BYTES", 0)
    cold, info_cold = solve_benders(pack, draws, variant, tol=1e-8, subproblem="chains")
    assert info_cold["warm_starts"] == 0 and info_cold["stock_chains"] > 0
    assert warm.status is cold.status is opt.SolveStatus.OPTIMAL
    assert warm.objective == pytest.approx(cold.objective, rel=2e-8)


def test_the_full_sample_takes_the_sub_samples_warm_starts():
    """An oracle on the first paths of a sample hands its chains' warm starts to the full sample's: those paths
    start warm there at the same point, with the same costs, the others cold."""
    pack = _storable(examples.synthetic_pack(6, 2, seed=1), np.random.default_rng(4))
    draws = mc.sample_paths(pack, 8, 3)
    variant = Variant("V", "v", "none", 0.0)
    structure = chain_structure(pack, variant, None)
    sub = mc.Draws(*(getattr(draws, f)[:2] for f in ("demand", "capacity_factor", "late", "event_hit",
                                                      "disruption_hit")))
    small, full = benders.ChainOracle(pack, sub, structure), benders.ChainOracle(pack, draws, structure)
    levels = np.zeros((pack.L + int(pack.arr("storable").sum()), pack.T))
    small.evaluate(0, levels, 0.0)
    full.adopt(small.warm)
    assert full.warm[0].have.tolist() == [True, True] + [False] * 6
    assert np.array_equal(full.warm[0].flows[:2], small.warm[0].flows)
    out = full.chains(0, levels, np.zeros(8), np.arange(8))
    assert full.stock_solves == [8, 2]
    assert np.allclose(out["q"][:2], small.chains(0, levels, np.zeros(2), np.arange(2))["q"], rtol=1e-12)
