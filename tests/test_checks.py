"""Anomaly flags: each rule fires on a planted anomaly and stays quiet on clean data."""

import numpy as np
import pytest

import peakplan as pp
from peakplan import checks


def rules(pack):
    return {f.rule: f for f in pack.flags}


def rewrite(path, fn):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(fn(lines)) + "\n")


def test_clean_retail_has_only_the_known_flags(retail_copy):
    found = rules(pp.build_pack(retail_copy))
    assert set(found) == {"event_in_freeze", "history_outlier"}
    assert found["event_in_freeze"].severity == "high"


def test_demand_spike_against_history(retail_copy):
    f = retail_copy.parent.parent / "data" / "retail" / "forecast.csv"
    rewrite(f, lambda ls: [ls[0]] + [ls[1].replace("40000.0,44318.7", "400000.0,443187.0")] + ls[2:])
    flag = rules(pp.build_pack(retail_copy))["demand_spike"]
    assert flag.severity == "high" and "2026-09-28" in flag.location and "east" in flag.location


def test_level_shift(retail_copy):
    f = retail_copy.parent.parent / "data" / "retail" / "forecast.csv"

    def scale(ls):
        out = [ls[0]]
        for line in ls[1:]:
            p = line.split(",")
            if p[1] == "west":
                p[2:5] = [f"{float(x) * 1.6:.1f}" for x in p[2:5]]
            out.append(",".join(p))
        return out

    rewrite(f, scale)
    flag = rules(pp.build_pack(retail_copy))["level_shift"]
    assert "segment west" in flag.location and "+" in flag.evidence


def test_level_shift_matches_weekdays_for_daily_periods():
    week = np.array([100, 100, 100, 100, 100, 40, 40], float)
    history = np.tile(week, 8)[:, None]
    forecast = np.tile(week, 4)[:, None]
    quiet = np.zeros(28, bool)
    quiet[[0, 5, 6, 12, 13, 19, 20, 26, 27]] = True  # weekdays are event days: a weekend-heavy mix
    assert checks.level_shift(forecast, history, ["s"], 8, 0.2, quiet, cycle=7) == []
    assert checks.level_shift(forecast * 1.5, history, ["s"], 8, 0.2, quiet, cycle=7)
    # without weekday matching the weekend-heavy mix fakes a shift
    assert checks.level_shift(forecast, history, ["s"], 8, 0.2, quiet, cycle=1)


def test_stale_forecast(retail_copy):
    f = retail_copy.parent.parent / "data" / "retail" / "forecast.csv"
    f.write_text(f.read_text().replace("2026-09-21", "2026-06-01"))
    flag = rules(pp.build_pack(retail_copy))["stale_forecast"]
    assert flag.severity == "high" and "119 days" in flag.evidence


def test_capacity_below_recent_demand(retail_copy):
    f = retail_copy.parent.parent / "data" / "retail" / "capacity.csv"
    rewrite(f, lambda ls: [ls[0]] + [l.replace(",1120.0", ",500.0") for l in ls[1:]])
    flag = rules(pp.build_pack(retail_copy))["capacity_below_demand"]
    assert "pickers_east" in flag.location and flag.severity == "high"


def test_negative_values_are_flagged_and_clipped(retail_copy):
    f = retail_copy.parent.parent / "data" / "retail" / "capacity.csv"
    rewrite(f, lambda ls: [ls[0], ls[1].replace(",1120.0", ",-5.0")] + ls[2:])
    pack = pp.build_pack(retail_copy)
    assert rules(pack)["negative_value"].severity == "high"
    assert pack.base_capacity.min() >= 0


def test_missing_and_duplicate_periods(retail_copy):
    f = retail_copy.parent.parent / "data" / "retail" / "forecast.csv"
    rewrite(f, lambda ls: [ls[0]] + ls[2:] + [ls[5]])  # drop row 1, repeat row 5
    found = rules(pp.build_pack(retail_copy))
    assert found["missing_period"].severity == "high" and "east" in found["missing_period"].location
    assert found["duplicate_period"].severity == "high"


def test_degenerate_quantiles(retail_copy):
    f = retail_copy.parent.parent / "data" / "retail" / "forecast.csv"
    rewrite(f, lambda ls: [ls[0], "2026-09-28,east,40000.0,40000.0,40000.0,2026-09-21"] + ls[2:])
    pack = pp.build_pack(retail_copy)
    assert rules(pack)["degenerate_quantiles"].severity == "medium"
    assert pack.demand_sigma[0, 0] == 0.0


def test_robust_z_uses_mad():
    ref = np.array([10.0, 11, 9, 10, 10, 50])
    assert checks.robust_z(np.array([10.0]), ref)[0] == pytest.approx(0.0)
    assert checks.robust_z(np.array([50.0]), ref)[0] > 10


def test_history_noise_recovers_ar1_and_correlation():
    from peakplan.compile import history_noise

    rng = np.random.default_rng(0)
    n, phi, rho = 2000, 0.6, 0.5
    chol = np.linalg.cholesky(np.array([[1, rho], [rho, 1]]))
    e = rng.standard_normal((n, 2)) @ chol.T
    z = np.zeros((n, 2))
    for t in range(1, n):
        z[t] = phi * z[t - 1] + np.sqrt(1 - phi**2) * e[t]
    weekday = np.tile([1.0, 1, 1, 1, 1, 0.6, 0.5], n // 7 + 1)[:n, None]
    history = 100 * weekday * np.exp(0.05 * z)
    corr, ar1 = history_noise(history, window=29, cycle=7)
    # the rolling-median detrending absorbs a little of the slow AR(1) component
    assert ar1 == pytest.approx(phi, abs=0.1)
    assert corr[0, 1] == pytest.approx(rho, abs=0.08)
