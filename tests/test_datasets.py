"""The Chicago ridership data set, the tables derived from it and the chicago_events scenario."""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import peakplan as pp
from peakplan import datasets
from peakplan.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "chicago"
SCENARIO = ROOT / "scenarios" / "chicago_events.yaml"


@pytest.fixture(scope="module")
def raw():
    return datasets.chicago_ridership()


@pytest.fixture(scope="module")
def tables(raw):
    """The tables as data/make_chicago.py derives them (same defaults)."""
    return datasets.chicago_tables(raw, start="2015-10-05", horizon=56)


@pytest.fixture(scope="module")
def pack():
    return pp.build_pack(pp.load_scenario(SCENARIO))


# -- the loader ---------------------------------------------------------------------------
def test_loader_returns_every_day_with_the_expected_columns(raw):
    assert len(raw) == 5698
    assert list(raw.columns) == list(datasets.COLUMNS)
    assert pd.api.types.is_datetime64_any_dtype(raw["date"])
    assert raw["date"].iloc[0] == pd.Timestamp("2001-01-22")
    assert raw["date"].iloc[-1] == pd.Timestamp("2016-08-28")
    assert (raw["date"].diff().dropna() == pd.Timedelta(days=1)).all()


def test_loader_rejects_a_missing_file(tmp_path):
    with pytest.raises(InputError, match="Chicago ridership file not found"):
        datasets.chicago_ridership(tmp_path / "nope.csv")


def test_loader_names_a_missing_column(tmp_path, raw):
    p = tmp_path / "c.csv"
    pd.read_csv(datasets.CHICAGO_CSV, nrows=5).drop(columns=["Bulls_Home"]).to_csv(p, index=False)
    with pytest.raises(InputError, match=r"missing column\(s\) \['Bulls_Home'\]"):
        datasets.chicago_ridership(p)


def test_loader_lists_bad_dates_and_negative_ridership(tmp_path):
    df = pd.read_csv(datasets.CHICAGO_CSV, nrows=5)
    df.loc[1, "date"] = "2001-13-40"
    df.loc[3, "ridership"] = -1.0
    p = tmp_path / "c.csv"
    df.to_csv(p, index=False)
    with pytest.raises(InputError, match="2 problem") as info:
        datasets.chicago_ridership(p)
    text = "\n".join(info.value.problems)
    assert "row 2, column 'date': found '2001-13-40'" in text
    assert "row 4, column 'ridership'" in text


def test_station_columns_are_lagged_14_days(raw):
    # the source's Clark_Lake column is the unlagged ridership column shifted by 14 days
    lagged = raw.set_index("date")["Clark_Lake"]
    actual = datasets.station_series(raw, "Clark_Lake")
    assert np.allclose(lagged.iloc[14:].to_numpy(), actual.iloc[:-14].to_numpy())
    belmont = datasets.station_series(raw, "Belmont")
    assert belmont.index[-1] == pd.Timestamp("2016-08-14")


def test_baseball_indicators_are_refused(raw):
    with pytest.raises(InputError, match="mark the season, not the games"):
        datasets.game_days(raw, "Cubs")


def test_marathon_rule_and_exception():
    days = datasets.marathon_days("2005-01-01", "2015-12-31")
    assert pd.Timestamp("2006-10-22") in days and pd.Timestamp("2015-10-11") in days
    assert (days.day_of_week == 6).all() and len(days) == 11


def test_lognormal_uplift_needs_data():
    with pytest.raises(InputError, match="cannot estimate an uplift"):
        datasets.lognormal_uplift(pd.Series([], dtype=float))
    est = datasets.lognormal_uplift(pd.Series([0.9, 1.0, 1.1, 1.2, 1.3]))
    assert est["median"] == 1.1 and est["p90"] == pytest.approx(1.26) and est["n"] == 5


# -- the derived tables -------------------------------------------------------------------
def test_shipped_tables_match_the_derivation(tables):
    for name in ("history", "forecast", "capacity", "levers"):
        shipped = pd.read_csv(DATA / f"{name}.csv")
        derived = pd.read_csv(io.StringIO(getattr(tables, name).to_csv(index=False)))
        pd.testing.assert_frame_equal(shipped, derived,
                                      obj=f"{name}.csv (rerun `python data/make_chicago.py`)")
    cal = json.loads((DATA / "calibration.json").read_text())
    assert cal["events"] == tables.events


def test_derived_tables_are_consistent(tables):
    fc, hist, cap = tables.forecast, tables.history, tables.capacity
    days = pd.to_datetime(fc["period"])
    assert list(days) == list(pd.date_range("2015-10-05", periods=56, freq="D"))
    assert pd.to_datetime(hist["period"]).max() == pd.Timestamp("2015-10-04")
    assert (pd.to_datetime(hist["period"]).diff().dropna() == pd.Timedelta(days=1)).all()
    assert (fc["as_of"] == "2015-10-04").all()
    assert (hist["actual"] >= 0).all() and (cap["capacity"] > 0).all()
    assert (fc["p10"] > 0).all() and (fc["p10"] <= fc["p50"]).all() and (fc["p50"] <= fc["p90"]).all()
    assert sorted(cap.groupby("period").size().unique()) == [2]
    assert set(pd.to_datetime(cap["period"])) == set(days)
    assert set(tables.levers["kind"]) == {"reserve", "flex", "release"}
    for ev in tables.events:
        assert all(pd.Timestamp("2015-10-05") <= pd.Timestamp(p) <= pd.Timestamp("2015-11-29") for p in ev["periods"])


def test_uplifts_are_estimated_from_history(tables):
    ev = {e["name"]: e for e in tables.events}
    # the marathon (start/finish in Grant Park) lifts Clark/Lake ridership by about half
    assert ev["chicago_marathon"]["median"] > 1.3 and ev["chicago_marathon"]["n"] >= 14
    # home games of the Blackhawks, Bulls and Bears do not move Clark/Lake: median ratio ~1
    games = [e for n, e in ev.items() if "_home_" in n]
    assert len(games) == 5
    assert all(0.95 < e["median"] < 1.05 and e["n"] >= 50 for e in games)
    assert max(e["median"] for e in games) > 1.0
    # holidays empty the Loop
    assert ev["thanksgiving"]["median"] < 0.2 and ev["columbus_day"]["median"] < 0.9


def test_forecast_backtest_on_quiet_days(tables):
    """Median forecast vs realised ridership on the horizon's non-event days.

    Honest figures (see data/README.md): mean absolute percentage error 2.4% on quiet
    weekdays, 22% on quiet weekends (the seasonal autumn decline and Halloween), 6.6% overall.
    """
    fc = tables.forecast.set_index(pd.to_datetime(tables.forecast["period"]))
    event_days = {pd.Timestamp(p) for e in tables.events for p in e["periods"]}
    quiet = [d for d in fc.index if d not in event_days and not (d.month == 11 and 26 <= d.day <= 27)]
    ape = (fc.loc[quiet, "p50"] / tables.actual[quiet] - 1).abs()
    weekday = ape[ape.index.day_of_week < 5]
    assert len(quiet) >= 30
    assert weekday.mean() < 0.04
    assert ape.mean() < 0.10
    assert tables.calibration["backtest_mape_quiet"] == pytest.approx(ape.mean(), abs=0.01)
    inside = (tables.actual[quiet] >= fc.loc[quiet, "p10"]) & (tables.actual[quiet] <= fc.loc[quiet, "p90"])
    assert inside.mean() >= 0.6


# -- the scenario -------------------------------------------------------------------------
def test_scenario_loads_compiles_and_simulates(pack):
    assert pack.T == 56 and pack.period_kind == "day"
    assert pack.segments == ("clark_lake",) and pack.resources == ("rail_cars", "station_staff")
    assert pack.max_delay == 0 and 0 < pack.ar1 < 0.95
    assert not pack.high_flags
    res = pp.simulate(pack, n_paths=1000, seed=3)
    fill = res.metrics["fill_rate"]
    assert ((fill > 0.9) & (fill <= 1.0)).all()


def test_scenario_events_match_the_estimates(pack, tables):
    est = {e["name"]: e for e in tables.events}
    assert {e.name for e in pack.events} == set(est)
    for e in pack.events:
        assert e.probability == 1.0
        assert e.uplift == ("lognormal", (est[e.name]["median"], est[e.name]["p90"]))
        assert e.periods.sum() == len(est[e.name]["periods"])
