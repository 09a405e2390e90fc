"""Chains served by ``J`` resources in series: the reference LP of :mod:`peakplan.recourse_lp`, and the DP.

The first half tests :func:`peakplan.recourse_lp.solve_chain_lp_series` on its own (against the
one-resource LP, hand cases, strong duality and the cut property). The second half compares
:func:`peakplan.recourse.solve_chains` with 3-D ``c``/``F`` (``[C, T, J]``) against that
reference.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peakplan.recourse import solve_chain_lp, solve_chains
from peakplan.recourse_lp import solve_chain_lp_series

# small values with many exact ties (c_t1 == c_t2, u == L, b + L == u, c == d, ...)
GRID = st.sampled_from([0.0, 0.0, 0.5, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0])
PRICE = st.sampled_from([0.0, 0.0, 0.5, 1.0, 1.0, 2.0, 3.0, 5.0])
LOSS = st.sampled_from([0.5, 1.0, 1.0, 2.0, 3.0, 5.0, 10.0])
# arbitrary values, for the checks that do not need exact arithmetic
NONNEG = st.one_of(GRID, st.floats(0.0, 10.0, allow_nan=False, allow_infinity=False))
POSITIVE = st.one_of(LOSS, st.floats(0.01, 10.0, allow_nan=False))
DELTA = st.sampled_from([-3.0, -1.0, -0.5, 0.0, 0.0, 0.5, 1.0, 2.0, 5.0])


@st.composite
def series_chains(draw, n_max=1, j_min=2, j_max=3, values=GRID, prices=PRICE, losses=LOSS, ks=(0, 1), t_max=8):
    """``n`` chains of one ``T``, ``J`` and ``K``: ``(d, c, F, u, b, L, K)``, ``c``/``F`` ``[n, T, J]``."""
    n = draw(st.integers(1, n_max))
    T = draw(st.integers(1, t_max))
    J = draw(st.integers(j_min, j_max))
    K = draw(st.sampled_from(ks))

    def arr(elems, shape):
        size = int(np.prod(shape))
        return np.array(draw(st.lists(elems, min_size=size, max_size=size)), float).reshape(shape)

    d, c, F = arr(values, (n, T)), arr(values, (n, T, J)), arr(values, (n, T, J))
    flex = draw(st.sampled_from(["all", "none", "some"]))
    if flex == "none":
        F[:] = 0.0
    elif flex == "some":  # some resources have no flex at all
        F[:, :, ~np.array(draw(st.lists(st.booleans(), min_size=J, max_size=J)))] = 0.0
    u, b, L = arr(prices, (n, J)), arr(prices, (n,)), arr(losses, (n, T))
    return d, c, F, u, b, L, K


def _one(chain, i=0):
    """Chain ``i`` of a batch, as the reference LP's arguments."""
    d, c, F, u, b, L, K = chain
    return d[i], c[i], F[i], u[i], float(b[i]), L[i], K


def _scale(d, c, F, u, b, L):
    """A cost scale of a chain: what losing or flexing everything would cost."""
    return max(1.0, float(((b + L) * d).sum() + (u * F).sum() + L.max() * c.sum()))


def _lp_tol(d, c, F, u, b, L):
    """The absolute error of the LP reference's cost: HiGHS's feasibility tolerance times the prices, per row."""
    return 1e-7 * (d.size + c.size) * max(1.0, float(u.sum() + b + L.max()))


def _cost_of_flows(n, v, loss, d, u, b, L, K):
    """The chain's objective at flows ``n``, ``v`` [T, J] and ``loss`` (per arrival)."""
    backlog = float((b * (d - n)).sum()) if K == 1 else 0.0
    return backlog + float((L * loss).sum() + (v * u).sum())


def _check_flows(n, o, v, loss, d, c, F, K, tol):
    """Non-negativity, conservation of every arrival and every series resource's capacity."""
    for x in (n, o, v, loss):
        assert np.all(x >= -tol)
    assert o[0] == pytest.approx(0.0, abs=tol)  # nothing is carried into the first period
    if K == 1:
        np.testing.assert_allclose(n + np.append(o[1:], 0.0) + loss, d, atol=tol, rtol=0)
    else:
        np.testing.assert_allclose(o, 0.0, atol=tol)
        np.testing.assert_allclose(n + loss, d, atol=tol, rtol=0)
    assert np.all((n + o)[:, None] <= c + v + tol)  # every unit served needs every resource
    assert np.all(v <= F + tol)


def _dual_value(p, q, d, c, F, u, b, L, K):
    """The dual objective at ``(p, q)`` with the best arrival prices ``a``; a lower bound on the cost.

    Dual constraints: ``a_t + sum_j p_tj >= b + L_t`` (n_t), ``a_t + sum_j p_{t+1,j} >= L_t``
    (o_{t+1}), ``q_tj >= p_tj - u_j`` (v_tj); all prices >= 0. Equal to the cost iff ``(p, q)``
    is an optimal dual, and then ``-p``, ``-q`` are subgradients of the cost in ``c``, ``F``.
    """
    P = p.sum(axis=1)
    if K == 1:
        a = np.maximum(b + L - P, 0.0)
        a[:-1] = np.maximum(a[:-1], L[:-1] - P[1:])
        const = (b + L) * d
    else:
        a = np.maximum(L - P, 0.0)
        const = L * d
    return float((const - a * d).sum() - (p * c).sum() - (q * F).sum())


def _check_duals(cost, p, q, d, c, F, u, b, L, K, tol):
    assert np.all(p >= -tol) and np.all(q >= -tol)
    assert np.all(q >= p - u - tol)  # dual feasibility of the flex columns
    assert _dual_value(p, q, d, c, F, u, b, L, K) == pytest.approx(cost, abs=tol)


def _perturbed(data, c, F):
    """Random ``c + delta``, ``F + eps``, kept non-negative."""
    c2 = np.maximum(c + np.array(data.draw(st.lists(DELTA, min_size=c.size, max_size=c.size))).reshape(c.shape), 0)
    F2 = np.maximum(F + np.array(data.draw(st.lists(DELTA, min_size=F.size, max_size=F.size))).reshape(F.shape), 0)
    return c2, F2


# ---------------------------------------------------------------------------------------------
# the reference LP


@settings(max_examples=40, deadline=None)
@given(series_chains(j_min=1, j_max=1, values=NONNEG, prices=NONNEG, losses=POSITIVE))
def test_one_resource_equals_solve_chain_lp(chain):
    d, c, F, u, b, L, K = _one(chain)
    ser = solve_chain_lp_series(d, c, F, u, b, L, K)
    ref = solve_chain_lp(d, c[:, 0], F[:, 0], float(u[0]), b, L, K)
    assert ser["cost"] == pytest.approx(ref["cost"], rel=1e-12, abs=1e-12)
    assert ser["flex"].shape == ser["p"].shape == ser["q"].shape == (len(d), 1)
    for k in ("served_new", "served_old", "loss"):
        np.testing.assert_allclose(ser[k], ref[k], rtol=0, atol=1e-12)
    for k in ("flex", "p", "q"):
        np.testing.assert_allclose(ser[k][:, 0], ref[k], rtol=0, atol=1e-12)


def test_two_resources_with_flex_in_use():
    """K=0, one period, d=10, c=(6, 8), F=(5, 5), u=(1, 2), L=10.

    Serving x costs 1 max(0, x - 6) + 2 max(0, x - 8), up to x = 11 > d: serve all 10 for
    4 + 4 = 8. Both flexes are strictly inside (0, F), so p = u = (1, 2) and q = 0.
    """
    out = solve_chain_lp_series([10.0], [[6.0, 8.0]], [[5.0, 5.0]], [1.0, 2.0], 0.0, [10.0], 0)
    assert out["cost"] == pytest.approx(8.0, abs=1e-9)
    assert out["served_new"] == pytest.approx([10.0], abs=1e-9)
    assert out["served_old"] == pytest.approx([0.0], abs=1e-9)
    assert out["loss"] == pytest.approx([0.0], abs=1e-9)
    np.testing.assert_allclose(out["flex"], [[4.0, 2.0]], atol=1e-9)
    np.testing.assert_allclose(out["p"], [[1.0, 2.0]], atol=1e-9)
    np.testing.assert_allclose(out["q"], [[0.0, 0.0]], atol=1e-9)


def test_resource_without_flex_caps_service():
    """K=0, one period, d=10, c=(4, 6), F=(10, 0), u=(1, 1), L=5.

    Resource 2 has no flex and caps service at 6: flex 2 units on resource 1 (cost 2) and
    lose 4 (cost 20), total 22. The duals are unique: p_1 = u_1 = 1 (flex inside its cap),
    p_1 + p_2 = L (a served unit saves L), so p_2 = 4; its flex cap (F = 0, a fixed column)
    is worth q_2 = p_2 - u_2 = 3.
    """
    d, c, F, u, L = [10.0], [[4.0, 6.0]], [[10.0, 0.0]], [1.0, 1.0], [5.0]
    out = solve_chain_lp_series(d, c, F, u, 0.0, L, 0)
    assert out["cost"] == pytest.approx(22.0, abs=1e-9)
    assert out["served_new"] == pytest.approx([6.0], abs=1e-9)
    assert out["loss"] == pytest.approx([4.0], abs=1e-9)
    np.testing.assert_allclose(out["flex"], [[2.0, 0.0]], atol=1e-9)
    np.testing.assert_allclose(out["p"], [[1.0, 4.0]], atol=1e-9)
    np.testing.assert_allclose(out["q"], [[0.0, 3.0]], atol=1e-9)
    # the duals are the derivatives: one more unit of c_2 or of F_2
    assert solve_chain_lp_series(d, [[4.0, 7.0]], F, u, 0.0, L, 0)["cost"] == pytest.approx(22.0 - 4.0, abs=1e-9)
    assert solve_chain_lp_series(d, c, [[10.0, 1.0]], u, 0.0, L, 0)["cost"] == pytest.approx(22.0 - 3.0, abs=1e-9)


def test_backlog_through_two_different_bottlenecks():
    """K=1, d=(10, 0), c=((10, 4), (6, 10)), no flex, b=1, L=5.

    Resource 2 lets 4 through at t=0, resource 1 lets the other 6 through at t=1: cost
    b * 6 = 6. The duals are not unique: with ``a_0`` in [0, 5], p_{0,2} = 6 - a_0 and
    p_{1,1} = 5 - a_0 (the slack resources are free), so p_{0,2} - p_{1,1} = b.
    """
    d, c, L = [10.0, 0.0], [[10.0, 4.0], [6.0, 10.0]], [5.0, 5.0]
    out = solve_chain_lp_series(d, c, np.zeros((2, 2)), [1.0, 1.0], 1.0, L, 1)
    assert out["cost"] == pytest.approx(6.0, abs=1e-9)
    assert out["served_new"] == pytest.approx([4.0, 0.0], abs=1e-9)
    assert out["served_old"] == pytest.approx([0.0, 6.0], abs=1e-9)
    assert out["loss"] == pytest.approx([0.0, 0.0], abs=1e-9)
    p = out["p"]
    assert p[0, 0] == pytest.approx(0.0, abs=1e-9) and p[1, 1] == pytest.approx(0.0, abs=1e-9)
    assert p[0, 1] - p[1, 0] == pytest.approx(1.0, abs=1e-9)
    assert -1e-9 <= p[1, 0] <= 5.0 + 1e-9
    np.testing.assert_allclose(out["q"], np.maximum(p - 1.0, 0.0), atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(series_chains(j_min=1, j_max=3, values=NONNEG, prices=NONNEG, losses=POSITIVE))
def test_reference_flows_are_feasible_and_cost_what_it_says(chain):
    d, c, F, u, b, L, K = _one(chain)
    out = solve_chain_lp_series(d, c, F, u, b, L, K)
    _check_flows(out["served_new"], out["served_old"], out["flex"], out["loss"], d, c, F, K, 1e-7 * max(1.0, c.max()))
    cost = _cost_of_flows(out["served_new"], out["flex"], out["loss"], d, u, b, L, K)
    assert cost == pytest.approx(out["cost"], abs=_lp_tol(d, c, F, u, b, L))


@settings(max_examples=40, deadline=None)
@given(series_chains(j_min=1, j_max=3), st.data())
def test_reference_duals_are_optimal_and_give_valid_cuts(chain, data):
    """Strong duality at the returned ``(p, q)``, and ``Q(c2, F2) >= Q(c, F) - p (c2 - c) - q (F2 - F)``."""
    d, c, F, u, b, L, K = _one(chain)
    out = solve_chain_lp_series(d, c, F, u, b, L, K)
    cost, p, q = out["cost"], out["p"], out["q"]
    _check_duals(cost, p, q, d, c, F, u, b, L, K, _lp_tol(d, c, F, u, b, L))
    _check_cuts(data, (d, c, F, u, b, L, K), cost, p, q, 3)


def _check_cuts(data, chain, cost, p, q, times):
    """The duals ``p``, ``q`` give valid cuts: the reference cost at perturbed ``c``, ``F`` is above the cut."""
    d, c, F, u, b, L, K = chain
    for _ in range(times):
        c2, F2 = _perturbed(data, c, F)
        q2 = solve_chain_lp_series(d, c2, F2, u, b, L, K)["cost"]
        scale = max(_scale(d, c, F, u, b, L), _scale(d, c2, F2, u, b, L))
        assert q2 >= cost - (p * (c2 - c)).sum() - (q * (F2 - F)).sum() - 1e-7 * scale


@settings(max_examples=30, deadline=None)
@given(series_chains(j_min=1, j_max=1), st.sampled_from([0.0, 1.0, 2.0]))
def test_series_invariants(chain, u2):
    """A resource twice (prices ``u1``, ``u2``) is one resource at ``u1 + u2``; an ample one changes nothing."""
    d, c, F, u, b, L, K = _one(chain)
    one = solve_chain_lp_series(d, c, F, u, b, L, K)["cost"]
    twice = solve_chain_lp_series(d, np.hstack([c, c]), np.hstack([F, F]), [u[0], u2], b, L, K)["cost"]
    merged = solve_chain_lp_series(d, c, F, u + u2, b, L, K)["cost"]
    assert twice == pytest.approx(merged, abs=1e-9 * _scale(d, c, F, u + u2, b, L))
    ample = np.full_like(c, 100.0)
    padded = solve_chain_lp_series(d, np.hstack([ample, c]), np.hstack([F, F]), [u2, u[0]], b, L, K)["cost"]
    assert padded == pytest.approx(one, abs=1e-9 * _scale(d, c, F, u, b, L))


def test_reference_refuses_bad_input():
    ones = np.ones((3, 2))
    with pytest.raises(ValueError, match="max_delay 0 or 1"):
        solve_chain_lp_series(np.ones(3), ones, ones, [1.0, 1.0], 1.0, np.ones(3), 2)
    with pytest.raises(ValueError, match="non-negative"):
        solve_chain_lp_series(np.ones(3), -ones, ones, [1.0, 1.0], 1.0, np.ones(3), 1)
    with pytest.raises(ValueError, match="shapes"):
        solve_chain_lp_series(np.ones(3), np.ones((4, 2)), ones, [1.0, 1.0], 1.0, np.ones(3), 1)


# ---------------------------------------------------------------------------------------------
# the DP against the reference (J >= 2); skipped until solve_chains takes [C, T, J] capacities


def _check_dp_chain(out, i, chain, cost_tol):
    """Chain ``i`` of a DP answer against the reference: cost, feasible flows, their cost, optimal duals."""
    d, c, F, u, b, L, K = _one(chain, i)
    ref = solve_chain_lp_series(d, c, F, u, b, L, K)
    cost = out["cost"][i]
    assert cost == pytest.approx(ref["cost"], rel=1e-9, abs=cost_tol)
    scale = _scale(d, c, F, u, b, L)
    # a chain the DP handed to the LP fallback (ok False) is exact to HiGHS's tolerances only
    tol, ftol = (1e-9 * scale, 1e-9) if out["ok"][i] else (_lp_tol(d, c, F, u, b, L), 1e-7)
    n, o, v, loss, p, q = (out[k][i] for k in ("served_new", "served_old", "flex", "loss", "p", "q"))
    assert v.shape == p.shape == q.shape == c.shape
    _check_flows(n, o, v, loss, d, c, F, K, ftol * max(1.0, float(d.max()), float(c.max()), float(F.max())))
    assert _cost_of_flows(n, v, loss, d, u, b, L, K) == pytest.approx(cost, abs=tol)
    _check_duals(cost, p, q, d, c, F, u, b, L, K, tol)
    return ref


@settings(max_examples=60, deadline=None)
@given(series_chains(n_max=4), st.data())
def test_dp_series_matches_reference(chain, data):
    d, c, F, u, b, L, K = chain
    out = solve_chains(d, c, F, u, b, L, K)
    assert out["fallback"] == int((~out["ok"]).sum())
    for i in range(d.shape[0]):
        di, ci, Fi, ui, bi, Li, _ = _one(chain, i)
        _check_dp_chain(out, i, chain, 1e-9 * _scale(di, ci, Fi, ui, bi, Li))
        # the DP's duals give valid cuts (implied by the strong duality checked above; checked directly)
        _check_cuts(data, (di, ci, Fi, ui, bi, Li, K), out["cost"][i], out["p"][i], out["q"][i], 2)


@settings(max_examples=30, deadline=None)
@given(series_chains(n_max=3, values=NONNEG, prices=NONNEG, losses=POSITIVE))
def test_dp_series_matches_reference_on_arbitrary_values(chain):
    """As above off the grid; the reference's cost is then good to HiGHS's tolerances only."""
    d, c, F, u, b, L, K = chain
    out = solve_chains(d, c, F, u, b, L, K)
    for i in range(d.shape[0]):
        _check_dp_chain(out, i, chain, _lp_tol(*_one(chain, i)[:6]))


def test_dp_series_hand_cases():
    d = np.array([[10.0]])
    out = solve_chains(d, [[[6.0, 8.0]]], [[[5.0, 5.0]]], [[1.0, 2.0]], 0.0, [[10.0]], 0)
    assert out["cost"][0] == pytest.approx(8.0, abs=1e-12)
    np.testing.assert_allclose(out["flex"][0], [[4.0, 2.0]], atol=1e-12)
    np.testing.assert_allclose(out["p"][0], [[1.0, 2.0]], atol=1e-12)
    out = solve_chains(d, [[[4.0, 6.0]]], [[[10.0, 0.0]]], [[1.0, 1.0]], 0.0, [[5.0]], 0)
    assert out["cost"][0] == pytest.approx(22.0, abs=1e-12)
    assert out["loss"][0] == pytest.approx([4.0], abs=1e-12)
    np.testing.assert_allclose(out["p"][0], [[1.0, 4.0]], atol=1e-12)
    np.testing.assert_allclose(out["q"][0], [[0.0, 3.0]], atol=1e-12)


def test_dp_series_broadcasts_u_and_b():
    rng = np.random.default_rng(7)
    C, T, J = 5, 6, 3
    d = rng.integers(0, 10, (C, T)).astype(float)
    c = rng.integers(0, 10, (C, T, J)).astype(float)
    F = rng.integers(0, 3, (C, T, J)).astype(float)
    L = rng.integers(1, 10, (C, T)).astype(float)
    u = np.array([1.0, 0.0, 2.0])
    for K in (0, 1):
        out = solve_chains(d, c, F, u, 0.5, L, K)
        full = solve_chains(d, c, F, np.tile(u, (C, 1)), np.full(C, 0.5), L, K)
        np.testing.assert_array_equal(out["cost"], full["cost"])
        np.testing.assert_array_equal(out["p"], full["p"])


def test_dp_one_series_resource_equals_the_2d_call():
    """``c``, ``F`` ``[C, T, 1]`` is the single-resource chain of the 2-D call."""
    rng = np.random.default_rng(8)
    C, T = 6, 7
    d = rng.integers(0, 10, (C, T)).astype(float)
    c = rng.integers(0, 10, (C, T)).astype(float)
    F = rng.integers(0, 3, (C, T)).astype(float)
    L = rng.integers(1, 10, (C, T)).astype(float)
    u = rng.integers(0, 4, C).astype(float)
    for K in (0, 1):
        flat = solve_chains(d, c, F, u, 1.0, L, K)
        ser = solve_chains(d, c[..., None], F[..., None], u[:, None], 1.0, L, K)
        np.testing.assert_allclose(ser["cost"], flat["cost"], rtol=1e-12, atol=1e-12)
        for k in ("flex", "p", "q"):
            np.testing.assert_allclose(ser[k][..., 0], flat[k], rtol=1e-12, atol=1e-12)


def test_dp_series_fallback_rate_is_reported(record_property):
    """How often the DP's duals fail to verify (``ok`` False: the LP fallback), on tie-rich chains.

    Reported, not asserted: see the test's ``fallbacks`` property (``--junitxml``) or its output (``-rP``).
    """
    rng = np.random.default_rng(2024)
    grid = np.array([0.0, 0.0, 0.5, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0])
    C, T = 100, 6
    total = fallbacks = 0
    for J in (2, 3):
        for K in (0, 1):
            d, c, F = rng.choice(grid, (C, T)), rng.choice(grid, (C, T, J)), rng.choice(grid, (C, T, J))
            F[: C // 4] = 0.0
            u, b, L = rng.choice(grid[:7], (C, J)), rng.choice(grid[:7], C), rng.choice(grid[2:], (C, T))
            out = solve_chains(d, c, F, u, b, L, K)
            assert out["fallback"] == int((~out["ok"]).sum())
            total += C
            fallbacks += out["fallback"]
            for i in range(0, C, 10):  # a sample against the reference, fallbacks or not
                _check_dp_chain(out, i, (d, c, F, u, b, L, K), 1e-9 * _scale(*_one((d, c, F, u, b, L, K), i)[:6]))
    record_property("fallbacks", f"{fallbacks}/{total}")
    print(f"series DP: {fallbacks} of {total} chains fell back to the LP")
