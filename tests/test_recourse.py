"""The chain DP of :mod:`peakplan.recourse` against the chain LP solved by HiGHS."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_recourse_series import _check_flows as series_flows

from peakplan.recourse import solve_chain_lp, solve_chains

# small values with many exact ties (u == L, b + L == u, c == d, ...) and some arbitrary ones
NONNEG = st.one_of(st.sampled_from([0.0, 0.0, 0.5, 1.0, 1.0, 2.0, 3.0]),
                   st.floats(0.0, 10.0, allow_nan=False, allow_infinity=False))
POSITIVE = st.one_of(st.sampled_from([0.5, 1.0, 2.0, 3.0]), st.floats(0.01, 10.0, allow_nan=False))


@st.composite
def chains(draw, n_max=1):
    """``n`` chains of one length ``T`` and one ``K``: ``(d, c, F, u, b, L, K)`` with ``[n, T]`` arrays."""
    n = draw(st.integers(1, n_max))
    T = draw(st.integers(1, 8))
    K = draw(st.sampled_from([0, 1]))

    def arr(elems):
        return np.array(draw(st.lists(st.lists(elems, min_size=T, max_size=T), min_size=n, max_size=n)), float)

    d, c, F, L = arr(NONNEG), arr(NONNEG), arr(NONNEG), arr(POSITIVE)
    u = np.array(draw(st.lists(NONNEG, min_size=n, max_size=n)), float)
    b = np.array(draw(st.lists(NONNEG, min_size=n, max_size=n)), float)
    return d, c, F, u, b, L, K


def _scale(d, c, F, u, b, L):
    """A cost scale of a chain: what losing or flexing everything would cost."""
    return max(1.0, float(((b + L) * d).sum() + u * F.sum() + L.max() * c.sum()))


def _lp_tol(u, b, L):
    """The absolute error of the LP reference's cost: HiGHS's feasibility tolerance times the prices."""
    return 1e-7 * len(L) * max(1.0, float(u + b + L.max()))


def _cost_of_flows(out, i, d, u, b, L, K):
    """The LP objective of chain ``i``'s returned flows."""
    n, v, loss = out["served_new"][i], out["flex"][i], out["loss"][i]
    if K == 1:
        return float((b * (d - n)).sum() + (L * loss).sum() + u * v.sum())
    return float((L * loss).sum() + u * v.sum())


def _check_flows(out, i, d, c, F, K, tol):
    n, o, v, loss = (out[k][i] for k in ("served_new", "served_old", "flex", "loss"))
    series_flows(n, o, v[:, None], loss, d, c[:, None], F[:, None], K, tol)  # one resource is a series of one


@settings(max_examples=300, deadline=None)
@given(chains())
def test_dp_cost_equals_lp_cost_and_flows_are_feasible(chain):
    d, c, F, u, b, L, K = chain
    out = solve_chains(d, c, F, u, b, L, K)
    ref = solve_chain_lp(d[0], c[0], F[0], float(u[0]), float(b[0]), L[0], K)
    # HiGHS meets its rows to ~1e-7 absolute, so its cost is off by up to ~1e-7 per row times the prices
    assert out["cost"][0] == pytest.approx(ref["cost"], rel=1e-7, abs=_lp_tol(u[0], b[0], L[0]))
    assert out["fallback"] == int((~out["ok"]).sum())
    scale = _scale(d[0], c[0], F[0], u[0], b[0], L[0])
    tol = 1e-9 * max(1.0, float(d.max()), float(c.max()), float(F.max()))
    _check_flows(out, 0, d[0], c[0], F[0], K, tol)
    # the returned flows cost what the solver says they cost
    assert _cost_of_flows(out, 0, d[0], u[0], b[0], L[0], K) == pytest.approx(out["cost"][0], abs=1e-9 * scale)
    # dual feasibility of the prices
    assert np.all(out["p"][0] >= -1e-9 * scale) and np.all(out["q"][0] >= -1e-9 * scale)


@settings(max_examples=150, deadline=None)
@given(chains(), st.data())
def test_duals_give_a_valid_benders_cut(chain, data):
    """``Q(c2, F2) >= Q(c, F) - p (c2 - c) - q (F2 - F)`` for every capacity and flex cap."""
    d, c, F, u, b, L, K = chain
    T = d.shape[1]
    out = solve_chains(d, c, F, u, b, L, K)
    p, q, cost = out["p"][0], out["q"][0], out["cost"][0]
    for _ in range(4):
        c2 = np.array(data.draw(st.lists(NONNEG, min_size=T, max_size=T)), float)
        F2 = np.array(data.draw(st.lists(NONNEG, min_size=T, max_size=T)), float)
        q2 = solve_chain_lp(d[0], c2, F2, float(u[0]), float(b[0]), L[0], K)["cost"]
        cut = cost - p @ (c2 - c[0]) - q @ (F2 - F[0])
        scale = max(_scale(d[0], c[0], F[0], u[0], b[0], L[0]), _scale(d[0], c2, F2, u[0], b[0], L[0]))
        assert q2 >= cut - 1e-7 * scale


def test_small_perturbations_of_capacity_match_the_duals():
    """Near a point with a unique dual, the cut is tight: ``Q(c + e) = Q(c) - p e`` for small ``e``."""
    d = np.array([[10.0, 12.0, 8.0, 15.0]])
    c = np.array([[7.0, 9.5, 11.0, 6.0]])
    F = np.array([[2.0, 1.0, 0.0, 3.0]])
    L = np.array([[20.0, 21.0, 22.0, 23.0]])
    for K in (0, 1):
        out = solve_chains(d, c, F, 5.0, 1.5, L, K)
        assert out["ok"][0]
        for t in range(4):
            for eps in (1e-3, -1e-3):
                c2 = c[0].copy()
                c2[t] += eps
                q2 = solve_chain_lp(d[0], c2, F[0], 5.0, 1.5, L[0], K)["cost"]
                assert q2 == pytest.approx(out["cost"][0] - out["p"][0, t] * eps, abs=1e-8)


def test_backlog_cost_makes_serving_the_new_unit_optimal():
    """One unit waits from t=0; at t=1 capacity serves one unit and a new one arrives; nothing after.

    FIFO serves the old unit and loses the new one: b (old waits) + b (new waits) + L (new
    lost) = 2b + L. The LP serves the new unit and loses the old one: b + L.
    """
    b, Lw = 1.0, 10.0
    d = np.array([[1.0, 1.0, 0.0]])
    c = np.array([[0.0, 1.0, 0.0]])
    F = np.zeros((1, 3))
    L = np.full((1, 3), Lw)
    out = solve_chains(d, c, F, 100.0, b, L, 1)
    assert out["cost"][0] == pytest.approx(b + Lw, abs=1e-12)
    assert out["served_new"][0].tolist() == pytest.approx([0.0, 1.0, 0.0], abs=1e-12)
    assert out["served_old"][0].tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-12)
    assert out["loss"][0].tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-12)
    # the LP reference agrees, and the DP's prices are subgradients: p_0 >= b + L (one unit
    # of capacity at t=0 saves b + L), L <= p_1 <= b + L (its one-sided derivatives)
    assert solve_chain_lp(d[0], c[0], F[0], 100.0, b, L[0], 1)["cost"] == pytest.approx(b + Lw, abs=1e-9)
    p = out["p"][0]
    assert p[0] >= b + Lw - 1e-9
    assert Lw - 1e-9 <= p[1] <= b + Lw + 1e-9


@pytest.mark.parametrize("u,flexed,cost", [(2.0, 1.0, 2.0), (5.0, 0.0, 3.0)])
def test_flex_only_where_it_is_cheaper_than_losing(u, flexed, cost):
    """K=0, one unit, no capacity, one unit of flex: flex at price u or lose at L=3."""
    out = solve_chains(np.ones((1, 1)), np.zeros((1, 1)), np.ones((1, 1)), u, 0.0, np.full((1, 1), 3.0), 0)
    assert out["flex"][0, 0] == pytest.approx(flexed, abs=1e-12)
    assert out["loss"][0, 0] == pytest.approx(1.0 - flexed, abs=1e-12)
    assert out["cost"][0] == pytest.approx(cost, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(chains(n_max=6))
def test_many_chains_in_one_call_equal_one_by_one(chain):
    d, c, F, u, b, L, K = chain
    out = solve_chains(d, c, F, u, b, L, K)
    keys = ("served_new", "served_old", "flex", "loss", "p", "q")
    for i in range(d.shape[0]):
        one = solve_chains(d[i:i + 1], c[i:i + 1], F[i:i + 1], u[i:i + 1], b[i:i + 1], L[i:i + 1], K)
        assert out["cost"][i] == pytest.approx(one["cost"][0], rel=1e-12, abs=1e-12)
        assert out["ok"][i] == one["ok"][0]
        for k in keys:
            np.testing.assert_allclose(out[k][i], one[k][0], rtol=1e-12, atol=1e-12)


def test_scalar_u_b_and_capacity_broadcast():
    rng = np.random.default_rng(4)
    d = rng.uniform(0, 10, (5, 6))
    c = rng.uniform(0, 10, 6)
    L = rng.uniform(1, 30, (5, 6))
    out = solve_chains(d, c, 1.0, 4.0, 0.5, L, 1)
    full = solve_chains(d, np.tile(c, (5, 1)), np.ones((5, 6)), np.full(5, 4.0), np.full(5, 0.5), L, 1)
    np.testing.assert_array_equal(out["cost"], full["cost"])
    np.testing.assert_array_equal(out["p"], full["p"])
    for i in range(5):
        ref = solve_chain_lp(d[i], c, np.ones(6), 4.0, 0.5, L[i], 1)
        assert out["cost"][i] == pytest.approx(ref["cost"], rel=1e-7)


def test_bad_input_is_refused():
    ones = np.ones((1, 3))
    with pytest.raises(ValueError, match="whole max_delay >= 0"):
        solve_chains(ones, ones, ones, 1.0, 1.0, ones, 1.5)
    with pytest.raises(ValueError, match="non-negative"):
        solve_chains(ones, -ones, ones, 1.0, 1.0, ones, 1)
    with pytest.raises(ValueError, match="non-negative"):
        solve_chains(-ones, ones, ones, 1.0, 1.0, ones, 0)
    # series input (review findings): a NaN capacity ran the DP's segment search off its buffer, a negative
    # flex price broke the tiers' order (a wrong cost marked verified), and J=0 read an empty array
    c2, F2 = np.ones((1, 3, 2)), np.ones((1, 3, 2))
    nan = c2.copy()
    nan[0, 1, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        solve_chains(ones, nan, F2, np.ones(2), 0.5, ones, 1)
    with pytest.raises(ValueError, match="finite"):
        solve_chains(ones, c2, F2, np.ones(2), 0.5, np.full((1, 3), np.inf), 1)
    with pytest.raises(ValueError, match="flex prices"):
        solve_chains(ones, c2, F2, np.array([-1.0, 2.0]), 0.5, ones, 1)
    with pytest.raises(ValueError, match="at least one resource"):
        solve_chains(ones, np.ones((1, 3, 0)), np.ones((1, 3, 0)), np.ones(0), 0.5, ones, 1)
