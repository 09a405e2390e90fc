"""Chains with ``max_delay >= 2``: :func:`peakplan.recourse.solve_chains` by successive shortest paths
against the reference LP :func:`peakplan.recourse_lp.solve_chain_lp_delay`, which is itself checked
against :func:`peakplan.recourse_lp.solve_chain_lp_series` where both apply (``max_delay`` 0 and 1).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_recourse_series import DELTA, GRID, LOSS, NONNEG, POSITIVE, PRICE, _one, series_chains

from peakplan.recourse import solve_chains, solve_flows
from peakplan.recourse_lp import solve_chain_lp_delay, solve_chain_lp_series


def chains(n_max=3, ks=(2, 3, 4), t_max=9, values=GRID, prices=PRICE, losses=LOSS):
    """``n`` chains of one ``T``, ``J`` (1-3) and ``K``: the series-chain strategy with longer waits."""
    return series_chains(n_max=n_max, j_min=1, j_max=3, values=values, prices=prices, losses=losses, ks=ks,
                         t_max=t_max)


def _scale(d, c, F, u, b, L):
    return max(1.0, float(((b * len(d) + L) * d).sum() + (u * F).sum() + L.max() * c.sum()))


def _lp_tol(d, c, F, u, b, L):
    """The absolute error of the LP reference's cost: HiGHS's feasibility tolerance times the prices, per row."""
    return 1e-7 * (d.size + c.size) * max(1.0, float(u.sum() + b * len(d) + L.max()))


def _r(d, b, L, K):
    """What losing a unit of each arrival costs: it waits min(K, T - t) periods first."""
    T = len(d)
    return b * np.minimum(K, T - np.arange(T)) + L


def _check_flows(x, v, loss, d, c, F, K, tol):
    """Every arrival served within K periods or lost, every resource's capacity, flex caps."""
    T = len(d)
    assert x.shape == (T, K + 1)
    assert np.all(x >= -tol) and np.all(v >= -tol) and np.all(loss >= -tol)
    late = np.arange(T)[:, None] + np.arange(K + 1)[None, :] >= T
    assert np.all(x[late] == 0.0)  # nothing is served after the horizon
    np.testing.assert_allclose(x.sum(axis=1) + loss, d, atol=tol, rtol=0)
    served = np.array([sum(x[t, s - t] for t in range(max(0, s - K), s + 1)) for s in range(T)])
    assert np.all(served[:, None] <= c + v + tol)
    assert np.all(v <= F + tol)
    return served


def _cost_of_flows(x, v, loss, d, u, b, L, K):
    return float((_r(d, b, L, K) * loss).sum() + b * (np.arange(K + 1)[None, :] * x).sum() + (u * v).sum())


def _dual_value(p, q, d, c, F, b, L, K):
    """The dual objective at ``(p, q)`` with the best arrival prices: ``a_t >= r_t - b j - sum_i p_{t+j,i}``."""
    T = len(d)
    r = _r(d, b, L, K)
    P = p.sum(axis=1)
    a = np.zeros(T)
    for t in range(T):
        for j in range(min(K, T - 1 - t) + 1):
            a[t] = max(a[t], r[t] - b * j - P[t + j])
    return float(((r - a) * d).sum() - (p * c).sum() - (q * F).sum())


def _check_cuts(data, chain, cost, p, q, times):
    """``Q(c2, F2) >= Q(c, F) - p (c2 - c) - q (F2 - F)`` at random perturbations, by the reference."""
    d, c, F, u, b, L, K = chain
    for _ in range(times):
        c2 = np.maximum(c + np.array(data.draw(st.lists(DELTA, min_size=c.size, max_size=c.size))).reshape(c.shape), 0)
        F2 = np.maximum(F + np.array(data.draw(st.lists(DELTA, min_size=F.size, max_size=F.size))).reshape(F.shape), 0)
        q2 = solve_chain_lp_delay(d, c2, F2, u, b, L, K)["cost"]
        scale = max(_scale(d, c, F, u, b, L), _scale(d, c2, F2, u, b, L))
        assert q2 >= cost - (p * (c2 - c)).sum() - (q * (F2 - F)).sum() - 1e-7 * scale


@settings(max_examples=40, deadline=None)
@given(chains(n_max=1, ks=(0, 1), values=NONNEG, prices=NONNEG, losses=POSITIVE))
def test_reference_equals_the_max_delay_0_and_1_lp(chain):
    """The general LP (columns by age) is the same LP as the one-period-carry model where both apply."""
    d, c, F, u, b, L, K = _one(chain)
    ref = solve_chain_lp_delay(d, c, F, u, b, L, K)
    old = solve_chain_lp_series(d, c, F, u, b, L, K)
    assert ref["cost"] == pytest.approx(old["cost"], abs=_lp_tol(d, c, F, u, b, L))
    if K == 1:  # a unit not served on arrival waits one period, served or lost
        assert ref["backlog"] == pytest.approx(float((d - ref["served_new"]).sum()), abs=1e-7 * max(1.0, d.sum()))


def test_hand_case_a_unit_waits_two_periods():
    """K=2, d=(10, 0, 0), capacity only in period 2, b=1, L=5.

    Serving arrival 0 in period 2 costs 2 per unit (20 in all) against 2 + 5 = 7 per unit lost:
    it waits. A unit of capacity in period 0 or 1 would save 2 or 1 of backlog (p = 2, 1); one
    more in period 2 serves nothing (p = 0).
    """
    d, c, L = np.array([[10.0, 0.0, 0.0]]), np.array([[0.0, 0.0, 10.0]]), np.array([[5.0, 5.0, 5.0]])
    out = solve_chains(d, c, 0.0, 1.0, 1.0, L, 2)
    assert out["ok"][0]
    assert out["cost"][0] == pytest.approx(20.0, abs=1e-12)
    assert out["backlog"][0] == pytest.approx(20.0, abs=1e-12)
    np.testing.assert_allclose(out["by_age"][0], [[0, 0, 10], [0, 0, 0], [0, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(out["served_old"][0], [0, 0, 10], atol=1e-12)
    np.testing.assert_allclose(out["p"][0], [2.0, 1.0, 0.0], atol=1e-12)
    ref = solve_chain_lp_delay(d[0], c[0], np.zeros(3), 1.0, 1.0, L[0], 2)
    assert ref["cost"] == pytest.approx(20.0, abs=1e-9)
    # with K=1 it cannot wait long enough: all 10 lost at 1 + 5 each
    assert solve_chains(d, c, 0.0, 1.0, 1.0, L, 1)["cost"][0] == pytest.approx(60.0, abs=1e-12)


def test_a_valuable_young_unit_is_served_before_an_old_one_that_is_lost_anyway():
    """K=2, one unit of capacity in period 2 only; arrival 0 (L=1) and arrival 2 (L=10) each 1 unit, b=0.

    Oldest first would serve arrival 0 and lose arrival 2 (cost 10); the optimum serves arrival 2
    and loses arrival 0 (cost 1).
    """
    d, c, L = np.array([[1.0, 0.0, 1.0]]), np.array([[0.0, 0.0, 1.0]]), np.array([[1.0, 1.0, 10.0]])
    out = solve_chains(d, c, 0.0, 0.0, 0.0, L, 2)
    assert out["cost"][0] == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(out["loss"][0], [1.0, 0.0, 0.0], atol=1e-12)


def _check_chain(out, i, chain):
    """Chain ``i`` against the reference: cost, feasible flows that cost what they say, optimal duals."""
    d, c, F, u, b, L, K = _one(chain, i)
    ref = solve_chain_lp_delay(d, c, F, u, b, L, K)
    cost = out["cost"][i]
    scale = _scale(d, c, F, u, b, L)
    tol = 1e-9 * scale if out["ok"][i] else _lp_tol(d, c, F, u, b, L)
    assert cost == pytest.approx(ref["cost"], abs=max(tol, _lp_tol(d, c, F, u, b, L)))
    ftol = (1e-9 if out["ok"][i] else 1e-7) * max(1.0, float(d.max()), float(c.max()), float(F.max()))
    x, v, loss, p, q = (out[k][i] for k in ("by_age", "flex", "loss", "p", "q"))
    served = _check_flows(x, v, loss, d, c, F, K, ftol)
    np.testing.assert_allclose(out["served_new"][i] + out["served_old"][i], served, atol=ftol)
    assert _cost_of_flows(x, v, loss, d, u, b, L, K) == pytest.approx(cost, abs=tol)
    assert out["backlog"][i] == pytest.approx(float((np.arange(K + 1) * x).sum() + (np.minimum(K, len(d) - np.arange(len(d)))
                                                                                    * loss).sum()), abs=ftol * (K + 1) * len(d))
    assert np.all(p >= -tol) and np.all(q >= -tol) and np.all(q >= p - u - tol)
    assert _dual_value(p, q, d, c, F, b, L, K) == pytest.approx(cost, abs=tol)


@settings(max_examples=80, deadline=None)
@given(chain=chains(), data=st.data())
def test_shortest_paths_match_the_reference(chain, data):
    d, c, F, u, b, L, K = chain
    out = solve_chains(d, c, F, u, b, L, K)
    assert out["fallback"] == int((~out["ok"]).sum())
    for i in range(d.shape[0]):
        _check_chain(out, i, chain)
        _check_cuts(data, _one(chain, i), out["cost"][i], out["p"][i], out["q"][i], 2)


@settings(max_examples=40, deadline=None)
@given(chains(values=NONNEG, prices=NONNEG, losses=POSITIVE, t_max=12))
def test_shortest_paths_match_the_reference_on_arbitrary_values(chain):
    d, c, F, u, b, L, K = chain
    out = solve_chains(d, c, F, u, b, L, K)
    for i in range(d.shape[0]):
        _check_chain(out, i, chain)


def test_long_horizons_agree_with_the_reference_and_rarely_fall_back(record_property):
    """T=52 chains like the optimizer's (gamma demand, capacity around it, flex, backlog cost), K=2..5, and
    two streams sharing a chain, K=0..2."""
    rng = np.random.default_rng(np.random.SeedSequence(52))
    C, T = 40, 52
    total = fallbacks = 0
    for J in (1, 2):
        for K in (2, 3, 5):
            d = rng.gamma(4.0, 25.0, (C, T))
            c, F = rng.uniform(50, 130, (C, T, J)), rng.uniform(0, 30, (C, T, J))
            u, b, L = rng.uniform(0.5, 3, (C, J)), rng.uniform(0, 1, C), rng.uniform(2, 10, (C, T))
            chain = (d, c, F, u, b, L, K)
            out = solve_chains(*chain)
            total += C
            fallbacks += out["fallback"]
            for i in range(0, C, 8):
                _check_chain(out, i, chain)
    for K in (0, 1, 2):  # two streams sharing one resource (the shared-capacity chains), against the reference
        d = rng.gamma(4.0, 25.0, (C, T, 2)) * np.array([1.0, 0.5])
        c, F = rng.uniform(75, 195, (C, T, 1)), rng.uniform(0, 30, (C, T, 1))
        u, b, L = rng.uniform(0.5, 3, (C, 1)), rng.uniform(0, 1, C), rng.uniform(2, 10, (C, T, 2))
        out = solve_flows(d, c, F, u, b, L, K)
        total += C
        fallbacks += out["fallback"]
        for i in range(0, C, 8):
            ref = solve_chain_lp_delay(d[i], c[i], F[i], u[i], b[i], L[i], K)
            assert out["cost"][i] == pytest.approx(ref["cost"], rel=1e-9)
    record_property("fallbacks", f"{fallbacks}/{total}")
    assert fallbacks <= total // 20  # the fast path carries the load


@st.composite
def streams(draw, values=GRID):
    """One chain with ``M`` streams of arrivals sharing its capacity: ``(d, c, F, u, b, L, K)``, ``d``/``L`` ``[T, M]``."""
    T, M, J = draw(st.integers(1, 7)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    K = draw(st.sampled_from([0, 1, 2, 3]))

    def arr(elems, shape):
        size = int(np.prod(shape))
        return np.array(draw(st.lists(elems, min_size=size, max_size=size)), float).reshape(shape)

    return (arr(values, (T, M)), arr(values, (T, J)), arr(values, (T, J)), arr(PRICE, (J,)), draw(PRICE),
            arr(LOSS, (T, M)), K)


@settings(max_examples=80, deadline=None)
@given(streams(), st.data())
def test_streams_sharing_a_chain_match_the_reference(chain, data):
    """Segments on one shared resource: each a stream of arrivals, with its own loss weights, one backlog cost."""
    d, c, F, u, b, L, K = chain
    T, M = d.shape
    out = solve_flows(d[None], c[None], F[None], u, b, L[None], K)
    ref = solve_chain_lp_delay(d, c, F, u, b, L, K)
    cost = out["cost"][0]
    scale = _scale(d.sum(axis=1), c, F, u, b, L.max(axis=1))
    tol = 1e-9 * scale if out["ok"][0] else _lp_tol(d, c, F, u, b, L)
    assert cost == pytest.approx(ref["cost"], abs=max(tol, _lp_tol(d, c, F, u, b, L)))
    x, v, loss, p, q = (out[k][0] for k in ("by_age", "flex", "loss", "p", "q"))
    assert x.shape == (T, M, K + 1) and loss.shape == (T, M)
    ftol = 1e-7 * max(1.0, float(d.max()), float(c.max()), float(F.max()))
    np.testing.assert_allclose(x.sum(axis=2) + loss, d, atol=ftol)  # every arrival served or lost
    served = np.array([sum(x[t, :, s - t].sum() for t in range(max(0, s - K), s + 1)) for s in range(T)])
    assert np.all(served[:, None] <= c + v + ftol) and np.all(v <= F + ftol)
    r = b * np.minimum(K, T - np.arange(T))[:, None] + L
    flows = float((r * loss).sum() + b * (np.arange(K + 1) * x).sum() + (u * v).sum())
    assert flows == pytest.approx(cost, abs=max(tol, 1e-7 * scale))
    # optimal duals: a_tm = max(0, r_tm - b j - P_{t+j}) and the dual objective equals the cost
    P = p.sum(axis=1)
    a = np.zeros((T, M))
    for t in range(T):
        for j in range(min(K, T - 1 - t) + 1):
            a[t] = np.maximum(a[t], r[t] - b * j - P[t + j])
    dual = float(((r - a) * d).sum() - (p * c).sum() - (q * F).sum())
    assert dual == pytest.approx(cost, abs=max(tol, 1e-7 * scale))
    # and the cut holds at perturbed capacities
    c2 = np.maximum(c + np.array(data.draw(st.lists(DELTA, min_size=c.size, max_size=c.size))).reshape(c.shape), 0)
    q2 = solve_chain_lp_delay(d, c2, F, u, b, L, K)["cost"]
    assert q2 >= cost - (p * (c2 - c)).sum() - 1e-7 * max(scale, _scale(d.sum(axis=1), c2, F, u, b, L.max(axis=1)))


@settings(max_examples=80, deadline=None)
@given(streams(), st.sampled_from([0, 1]))
def test_the_streams_dp_and_the_shortest_paths_agree(chain, K):
    """``max_delay`` <= 1: the cohort DP and successive shortest paths, two algorithms, give one cost; the DP's
    flows conserve every arrival, keep to capacity and cost what it says."""
    d, c, F, u, b, L, _ = chain
    T, M = d.shape
    args = (d[None], c[None], F[None], u, b, L[None], K)
    dp, sp = solve_flows(*args, fallback=False), solve_flows(*args, fallback=False, dp=False)
    scale = _scale(d.sum(axis=1), c, F, u, b, L.max(axis=1))
    if dp["ok"][0] and sp["ok"][0]:
        assert dp["cost"][0] == pytest.approx(sp["cost"][0], abs=1e-9 * scale)
    x, v, loss = dp["by_age"][0], dp["flex"][0], dp["loss"][0]
    ftol = 1e-9 * scale
    np.testing.assert_allclose(x.sum(axis=2) + loss, d, atol=ftol)
    assert np.all(x >= -ftol) and np.all(loss >= -ftol)
    served = np.array([sum(x[t, :, s - t].sum() for t in range(max(0, s - K), s + 1)) for s in range(T)])
    assert np.all(served[:, None] <= c + v + ftol) and np.all(v <= F + ftol)
    r = b * np.minimum(K, T - np.arange(T))[:, None] + L
    flows = float((r * loss).sum() + b * (np.arange(K + 1) * x).sum() + (u * v).sum())
    assert flows == pytest.approx(dp["cost"][0], abs=1e-9 * scale)
    ref = solve_chain_lp_delay(d, c, F, u, b, L, K)["cost"]
    assert dp["cost"][0] == pytest.approx(ref, abs=max(1e-9 * scale, _lp_tol(d, c, F, u, b, L)))


def test_one_stream_is_the_chain_and_two_identical_streams_are_one_of_twice_the_demand():
    rng = np.random.default_rng(np.random.SeedSequence(9))
    T, K = 12, 2
    d, c, F = rng.uniform(0, 10, (3, T)), rng.uniform(0, 12, (3, T, 1)), rng.uniform(0, 3, (3, T, 1))
    L = rng.uniform(1, 5, (3, T))
    one = solve_chains(d, c, F, 1.0, 0.5, L, K)
    flow = solve_flows(d[:, :, None], c, F, 1.0, 0.5, L[:, :, None], K)
    np.testing.assert_allclose(flow["cost"], one["cost"], rtol=1e-12)
    halves = solve_flows(np.stack([d / 2, d / 2], axis=2), c, F, 1.0, 0.5, np.stack([L, L], axis=2), K)
    np.testing.assert_allclose(halves["cost"], one["cost"], rtol=1e-9)
    np.testing.assert_allclose(halves["p"], one["p"], atol=1e-9)


def test_bad_max_delay_is_refused():
    with pytest.raises(ValueError, match="max_delay >= 0"):
        solve_chains(np.ones((1, 3)), np.ones((1, 3)), 0.0, 1.0, 0.0, np.ones((1, 3)), -1)
    with pytest.raises(ValueError, match="whole number >= 0"):
        solve_chain_lp_delay(np.ones(3), np.ones(3), 0.0, 1.0, 0.0, np.ones(3), 1.5)
