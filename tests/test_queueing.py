"""Closed-form queueing formulas against a published example, direct formulas and invariants."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from peakplan.errors import InputError
from peakplan.queueing import (
    asa,
    erlang_b,
    erlang_c,
    mm1_metrics,
    mmc_metrics,
    occupancy,
    required_servers,
    service_level,
)

# Call Centre Helper worked example, as stored in shared/reference/
# erlang_c_call_centre_10_erlangs.json: 100 calls per 30 min, AHT 180 s -> A = 10 erlangs.
CALLS, INTERVAL, AHT, TARGET_T = 100, 1800.0, 180.0, 20.0
LAM = CALLS / INTERVAL
REFERENCE = {  # agents: (P_wait, service_level_20s, ASA_seconds, occupancy)
    11: (0.6821182046893323, 0.38961381172915344, 122.78127684407981, 0.9090909090909091),
    12: (0.4493882242982709, 0.6401580403740066, 40.444940186844384, 0.8333333333333334),
    13: (0.285270453036493, 0.7955947884177831, 17.11622718218958, 0.7692307692307693),
    14: (0.17413193359504983, 0.8883500191794669, 7.835937011777243, 0.7142857142857143),
    15: (0.10204236700798802, 0.9414528428690223, 3.6735252122875686, 0.6666666666666666),
}
REFERENCE_FILE = "erlang_c_call_centre_10_erlangs.json"


def _reference_path() -> Path | None:
    here = Path(__file__).resolve()
    for base in (here.parents[1], here.parents[2] / "shared", here.parents[2]):
        path = base / "reference" / REFERENCE_FILE
        if path.exists():
            return path
    return None


def test_embedded_values_match_the_reference_file():
    path = _reference_path()
    if path is None:
        pytest.skip(f"{REFERENCE_FILE} not found next to the repository")
    ref = json.loads(path.read_text())
    assert ref["expected"]["traffic_erlangs"] == LAM * AHT
    for agents, row in ref["expected"]["by_agents"].items():
        expected = (row["P_wait"], row["service_level_20s"], row["ASA_seconds"], row["occupancy"])
        assert REFERENCE[int(agents)] == expected


@pytest.mark.parametrize("agents", sorted(REFERENCE))
def test_erlang_c_reproduces_the_call_centre_example(agents):
    p_wait, sl20, asa_s, occ = REFERENCE[agents]
    traffic = LAM * AHT
    assert erlang_c(agents, traffic) == pytest.approx(p_wait, abs=1e-6)
    assert service_level(agents, traffic, AHT, TARGET_T) == pytest.approx(sl20, abs=1e-6)
    assert asa(agents, traffic, AHT) == pytest.approx(asa_s, abs=1e-6)
    assert occupancy(agents, traffic) == pytest.approx(occ, abs=1e-6)


def test_required_agents_reproduce_the_call_centre_example():
    assert required_servers(LAM, AHT, 0.8, TARGET_T) == 14
    assert required_servers(LAM, AHT, 0.8, TARGET_T, shrinkage=0.3, max_occupancy=0.85) == 20


def test_required_servers_is_the_smallest_count_meeting_the_target():
    n = required_servers(LAM, AHT, 0.9, TARGET_T)
    assert service_level(n, 10.0, AHT, TARGET_T) >= 0.9
    assert service_level(n - 1, 10.0, AHT, TARGET_T) < 0.9


def test_required_servers_respects_the_occupancy_cap():
    # SL alone needs 14 agents; occupancy <= 0.6 needs ceil(10 / 0.6) = 17.
    assert required_servers(LAM, AHT, 0.8, TARGET_T, max_occupancy=0.6) == 17


def test_required_servers_vectorises_and_needs_none_for_zero_traffic():
    rates = np.array([0.0, 1 / 36, LAM, 1.0])
    got = required_servers(rates, AHT, 0.8, TARGET_T)
    assert got.dtype == np.int64
    assert got.tolist() == [required_servers(float(r), AHT, 0.8, TARGET_T) for r in rates]
    assert got[0] == 0


def test_mm1_closed_forms():
    lam, mu = 0.6, 1.0
    rho = lam / mu
    m = mm1_metrics(lam, mu)
    assert m.p0 == pytest.approx(1 - rho)
    assert m.pw == pytest.approx(rho)
    assert m.l == pytest.approx(rho / (1 - rho))
    assert m.lq == pytest.approx(rho**2 / (1 - rho))
    assert m.w == pytest.approx(1 / (mu - lam))
    assert m.wq == pytest.approx(rho / (mu - lam))
    assert m.utilization == pytest.approx(rho)


def test_mmc_p0_matches_the_direct_sum():
    lam, mu, c = 9.0, 1.0, 10
    a, rho = lam / mu, lam / (c * mu)
    direct = 1.0 / (sum(a**k / math.factorial(k) for k in range(c))
                    + a**c / (math.factorial(c) * (1 - rho)))
    m = mmc_metrics(lam, mu, c)
    assert m.p0 == pytest.approx(direct, rel=1e-12)
    assert m.pw == pytest.approx(a**c / (math.factorial(c) * (1 - rho)) * direct, rel=1e-12)
    assert m.l == pytest.approx(lam * m.w, rel=1e-12)  # Little's law
    assert m.lq == pytest.approx(lam * m.wq, rel=1e-12)


def test_mmc_unstable_queue_has_infinite_waits():
    m = mmc_metrics([5.0, 12.0], 1.0, 10)
    assert m.pw[1] == 1.0 and m.p0[1] == 0.0
    assert np.isinf(m.wq[1]) and np.isinf(m.l[1])
    assert np.isfinite(m.wq[0])
    assert asa(10, 12.0, 1.0) == math.inf
    assert service_level(10, 12.0, 1.0, 0.5) == 0.0


@pytest.mark.parametrize("servers", [0, 1, 2, 5, 17])
@pytest.mark.parametrize("traffic", [0.0, 0.3, 4.0, 12.5])
def test_erlang_b_recursion_matches_the_direct_formula(servers, traffic):
    terms = [traffic**k / math.factorial(k) for k in range(servers + 1)]
    assert erlang_b(servers, traffic) == pytest.approx(terms[-1] / sum(terms), rel=1e-12)


def test_erlang_b_is_stable_for_thousands_of_servers():
    n, a = 2000, 1900.0
    expected = stats.poisson.pmf(n, a) / stats.poisson.cdf(n, a)
    assert erlang_b(n, a) == pytest.approx(expected, rel=1e-9)
    assert 0.0 < erlang_c(n, a) < 1.0


def test_scalars_give_floats_and_arrays_broadcast():
    assert isinstance(erlang_c(14, 10.0), float)
    got = erlang_c(np.array([[13], [14], [15]]), np.array([9.0, 10.0]))
    assert got.shape == (3, 2)
    assert got[1, 1] == pytest.approx(REFERENCE[14][0])
    sl = service_level([13, 14], 10.0, AHT, [20.0, 20.0])
    assert sl == pytest.approx([REFERENCE[13][1], REFERENCE[14][1]])


servers_st = st.integers(min_value=1, max_value=60)
traffic_st = st.floats(min_value=0.01, max_value=80.0)


@settings(max_examples=60, deadline=None)
@given(servers_st, traffic_st)
def test_erlang_c_bounds_erlang_b_and_both_fall_with_servers(n, a):
    b, c = erlang_b(n, a), erlang_c(n, a)
    assert 0.0 <= b <= c <= 1.0
    assert erlang_b(n + 1, a) <= b
    assert erlang_c(n + 1, a) <= c


@settings(max_examples=60, deadline=None)
@given(servers_st, traffic_st, st.floats(min_value=0.0, max_value=50.0))
def test_service_level_rises_with_threshold_and_asa_matches_its_formula(n, a, t):
    if a >= n:
        assert service_level(n, a, 1.0, t) == 0.0
        return
    assert service_level(n, a, 1.0, t) <= service_level(n, a, 1.0, t + 1.0) + 1e-15
    assert service_level(n, a, 1.0, 0.0) == pytest.approx(1.0 - erlang_c(n, a))
    assert asa(n, a, 2.0) == pytest.approx(erlang_c(n, a) * 2.0 / (n - a))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: erlang_b(2.5, 1.0), r"servers must be a whole number >= 0, got 2\.5"),
        (lambda: erlang_b(-1, 1.0), r"servers must be a whole number >= 0, got -1"),
        (lambda: erlang_c(3, [1.0, -2.0]), r"traffic must be finite and in \[0, inf\) "
                                           r"erlangs, got -2\.0"),
        (lambda: erlang_c(3, float("nan")), r"traffic .* got nan"),
        (lambda: erlang_c(3, "ten"), r"traffic must be a number .* got 'ten'"),
        (lambda: service_level(3, 1.0, 0.0, 20.0), r"aht must be finite and in \(0, inf\)"),
        (lambda: service_level(3, 1.0, 1.0, -1.0), r"threshold .* got -1\.0"),
        (lambda: mmc_metrics(1.0, 1.0, 0), r"servers must be >= 1 for an M/M/c queue, got 0"),
        (lambda: mmc_metrics(0.0, 1.0, 1), r"arrival_rate must be finite and in \(0, inf\)"),
        (lambda: occupancy(0, 1.0), r"servers must be >= 1 for occupancy, got 0"),
        (lambda: required_servers(LAM, AHT, 1.0, 20.0), r"target_sl .* in \[0, 1\), got 1\.0"),
        (lambda: required_servers(LAM, AHT, 0.8, 20.0, shrinkage=1.0), r"shrinkage .* 1\.0"),
        (lambda: required_servers(LAM, AHT, 0.8, 20.0, max_occupancy=0.0),
         r"max_occupancy must be finite and in \(0, 1\], got 0\.0"),
    ],
)
def test_bad_arguments_raise_input_error(call, message):
    with pytest.raises(InputError, match=message):
        call()
