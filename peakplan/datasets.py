"""Loaders and planning-table helpers for the real public data sets shipped in ``data/``.

Chicago 'L' ridership (``data/chicago/chicago_ridership_daily.csv``): daily entries in
thousands at Chicago Transit Authority rail stations, 2001-01-22 .. 2016-08-28, with
weather and game-day indicators. Source: CTA ridership data as prepared by Kuhn & Johnson,
*Feature Engineering and Selection* (2020), R package ``modeldata`` data set ``Chicago``;
MIT licence, copyright Posit Software, PBC. Keep this attribution wherever the file is
copied.

The helpers turn the raw series into planning tables, all from data dated before the
forecast origin (the day before the horizon starts), so the forecast is a genuine
ex-ante forecast and the realised days of the horizon can serve as a backtest:

- :func:`station_series` gives a station's actual daily ridership (the station columns
  of the source are lagged 14 days; the ``ridership`` column is Clark/Lake, unlagged);
- :func:`event_ratios` measures each event day against comparable quiet days (same
  weekday, up to four weeks either side) and :func:`lognormal_uplift` turns the ratios
  into a lognormal uplift (median, 90th percentile);
- :func:`baseline_forecast` is a same-weekday median of the last eight quiet weeks times a
  seasonal factor from earlier years, and :func:`residual_quantiles` backtests it at many
  earlier origins to calibrate p10/p50/p90;
- :func:`chicago_tables` assembles history, forecast, capacity, levers and events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.holiday import USFederalHolidayCalendar

from peakplan.errors import InputError

__all__ = [
    "CHICAGO_CSV",
    "COLUMNS",
    "GAME_TEAMS",
    "STATIONS",
    "TEAMS",
    "ChicagoTables",
    "baseline_forecast",
    "chicago_ridership",
    "chicago_tables",
    "event_ratios",
    "game_days",
    "holiday_days",
    "lognormal_uplift",
    "marathon_days",
    "quiet_days",
    "residual_quantiles",
    "station_series",
]

#: The shipped raw file (repository checkout).
CHICAGO_CSV = Path(__file__).resolve().parents[1] / "data" / "chicago" / "chicago_ridership_daily.csv"

#: Station columns of the source (ridership lagged 14 days).
STATIONS = (
    "Austin", "Quincy_Wells", "Belmont", "Archer_35th", "Oak_Park", "Western", "Clark_Lake", "Clinton",
    "Merchandise_Mart", "Irving_Park", "Washington_Wells", "Harlem", "Monroe", "Polk", "Ashland", "Kedzie",
    "Addison", "Jefferson_Park", "Montrose", "California",
)

#: Teams with ``<team>_Home`` / ``<team>_Away`` indicator columns.
TEAMS = ("Blackhawks", "Bulls", "Bears", "WhiteSox", "Cubs")

#: Teams whose indicators mark actual game days. In the source the Cubs and White Sox
#: columns are identical to each other, home equals away, and they are 1 on almost every
#: day of the baseball season: they mark the season, not the games, so they are not used.
GAME_TEAMS = ("Blackhawks", "Bulls", "Bears")

STATION_LAG_DAYS = 14
_WEATHER = ("temp_min", "temp", "temp_max", "temp_change", "dew", "humidity", "pressure", "pressure_change",
            "wind", "wind_max", "gust", "gust_max", "percip", "percip_max", "weather_rain", "weather_snow",
            "weather_cloud", "weather_storm")
COLUMNS = ("ridership", *STATIONS, *_WEATHER, *(f"{t}_{s}" for t in TEAMS for s in ("Away", "Home")), "date")


def chicago_ridership(path: str | Path | None = None) -> pd.DataFrame:
    """The Chicago ridership table: one row per day, ``date`` parsed, sorted by date.

    ``path`` defaults to the shipped ``data/chicago/chicago_ridership_daily.csv``. Raises
    :class:`InputError` when the file is missing, a column is missing, a date does not
    parse or repeats, or a ridership value is not a non-negative number.
    """
    p = CHICAGO_CSV if path is None else Path(path)
    if not p.exists():
        raise InputError(f"{p}: Chicago ridership file not found; it ships in data/chicago/ "
                         "(regenerate the tables with `python data/make_chicago.py`)")
    try:
        df = pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot parse the Chicago ridership CSV: {str(exc).splitlines()[0]}") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{p.name}: missing column(s) {missing}; expected the modeldata Chicago columns "
                         f"(ridership, station names, weather, <Team>_Home/_Away, date)")
    problems = []
    dates = pd.to_datetime(df["date"], errors="coerce", format="ISO8601")
    for i in np.flatnonzero(dates.isna().to_numpy())[:10]:
        problems.append(f"{p.name} row {i + 1}, column 'date': found {df['date'].iloc[i]!r}; expected YYYY-MM-DD")
    for i in np.flatnonzero(dates.duplicated(keep="first").to_numpy())[:10]:
        problems.append(f"{p.name} row {i + 1}, column 'date': {df['date'].iloc[i]} appears more than once")
    for col in ("ridership", *STATIONS):
        vals = pd.to_numeric(df[col], errors="coerce")
        for i in np.flatnonzero((vals.isna() | (vals < 0)).to_numpy())[:10]:
            problems.append(f"{p.name} row {i + 1}, column {col!r}: found {df[col].iloc[i]!r}; "
                            "expected a non-negative number (thousands of entries)")
    if problems:
        raise InputError(f"{p.name}: {len(problems)} problem(s) in the Chicago ridership table", problems)
    df["date"] = dates
    return df.sort_values("date").reset_index(drop=True)


def station_series(df: pd.DataFrame, station: str = "Clark_Lake") -> pd.Series:
    """Actual daily ridership (thousands of entries) of ``station``, indexed by date.

    ``Clark_Lake`` is the unlagged ``ridership`` column; other stations' columns hold the
    value of 14 days earlier, so they are shifted back (the last 14 days are then unknown
    and dropped).
    """
    s = df.set_index("date")
    if station == "Clark_Lake":
        return s["ridership"].astype(float).rename("Clark_Lake")
    if station not in STATIONS:
        raise InputError(f"unknown station {station!r}; stations are {list(STATIONS)}")
    out = s[station].astype(float).shift(-STATION_LAG_DAYS).dropna()
    return out.rename(station)


_HOLIDAY_KEYS = {
    "New Year's Day": "new_years_day", "Birthday of Martin Luther King, Jr.": "mlk_day",
    "Washington's Birthday": "presidents_day", "Memorial Day": "memorial_day",
    "Juneteenth National Independence Day": "juneteenth", "Independence Day": "independence_day",
    "Labor Day": "labor_day", "Columbus Day": "columbus_day", "Veterans Day": "veterans_day",
    "Thanksgiving Day": "thanksgiving", "Christmas Day": "christmas_day",
}


def holiday_days(start, end) -> dict[str, pd.DatetimeIndex]:
    """US federal holidays (observed dates) and the day after Thanksgiving, by name."""
    cal = USFederalHolidayCalendar()
    hol = cal.holidays(pd.Timestamp(start), pd.Timestamp(end), return_name=True)
    out: dict[str, list[pd.Timestamp]] = {}
    for day, name in hol.items():
        key = _HOLIDAY_KEYS.get(name, re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_"))
        out.setdefault(key, []).append(day)
        if name == "Thanksgiving Day":
            out.setdefault("day_after_thanksgiving", []).append(day + pd.Timedelta(days=1))
    return {k: pd.DatetimeIndex(v) for k, v in out.items()}


#: Chicago Marathon: the Sunday before Columbus Day, except where listed (it starts and ends
#: in Grant Park, a short walk from Clark/Lake; the ridership spike confirms each date).
MARATHON_EXCEPTIONS = {2006: "2006-10-22"}


def marathon_days(start, end) -> pd.DatetimeIndex:
    """Chicago Marathon days between ``start`` and ``end`` (inclusive)."""
    cal = USFederalHolidayCalendar()
    out = []
    for day, name in cal.holidays(pd.Timestamp(start) - pd.Timedelta(days=7), pd.Timestamp(end) + pd.Timedelta(days=7),
                                  return_name=True).items():
        if name == "Columbus Day":
            d = pd.Timestamp(MARATHON_EXCEPTIONS.get(day.year, day - pd.Timedelta(days=1)))
            if pd.Timestamp(start) <= d <= pd.Timestamp(end):
                out.append(d)
    return pd.DatetimeIndex(out)


def game_days(df: pd.DataFrame, team: str) -> pd.DatetimeIndex:
    """Home-game days of ``team`` (one of :data:`GAME_TEAMS`)."""
    if team not in GAME_TEAMS:
        raise InputError(f"team {team!r}: no usable game-day indicator; use one of {list(GAME_TEAMS)} "
                         "(the Cubs/WhiteSox columns of the source mark the season, not the games)")
    return pd.DatetimeIndex(df.loc[df[f"{team}_Home"] == 1, "date"])


def quiet_days(df: pd.DataFrame) -> pd.Series:
    """Boolean series by date: no home game, no holiday, no marathon, not 20 Dec .. 2 Jan."""
    idx = pd.DatetimeIndex(df["date"])
    games = np.zeros(len(idx), bool)
    for t in GAME_TEAMS:
        games |= (df[f"{t}_Home"] == 1).to_numpy()
    hol = np.zeros(len(idx), bool)
    for days in holiday_days(idx.min(), idx.max()).values():
        hol |= idx.isin(days)
    hol |= idx.isin(marathon_days(idx.min(), idx.max()))
    xmas = ((idx.month == 12) & (idx.day >= 20)) | ((idx.month == 1) & (idx.day <= 2))
    return pd.Series(~games & ~hol & ~xmas, index=idx, name="quiet")


def event_ratios(series: pd.Series, days, quiet: pd.Series, weeks: int = 4) -> pd.Series:
    """Ratio of each event day's ridership to comparable quiet days.

    Comparable days: the same weekday ``1..weeks`` weeks before and after, quiet (see
    :func:`quiet_days`) and inside ``series``; the ratio is ``actual / median(comparable)``,
    dropped when fewer than three comparable days exist.
    """
    q = quiet.reindex(series.index, fill_value=False)
    out = {}
    for d in pd.DatetimeIndex(days):
        if d not in series.index:
            continue
        comp = [d + pd.Timedelta(weeks=k) for k in range(-weeks, weeks + 1) if k]
        comp = [c for c in comp if c in series.index and q[c]]
        if len(comp) >= 3:
            out[d] = float(series[d] / np.median(series[comp].to_numpy()))
    return pd.Series(out, dtype=float, name="ratio")


def lognormal_uplift(ratios: pd.Series) -> dict[str, float]:
    """Lognormal uplift (``median``, ``p90``) from empirical ratios, with ``n`` and ``p10``.

    ``median`` and ``p90`` are the sample median and 90th percentile (linear interpolation);
    ``p90`` is raised to the median if the sample is degenerate.
    """
    r = np.asarray(ratios, float)
    if r.size == 0:
        raise InputError("no event days with comparable quiet days; cannot estimate an uplift")
    med, p10, p90 = (float(np.quantile(r, q)) for q in (0.5, 0.1, 0.9))
    return {"median": round(med, 3), "p90": round(max(p90, med), 3), "p10": round(p10, 3), "n": int(r.size)}


def _weekday_levels(series: pd.Series, ok_all: np.ndarray, origin: pd.Timestamp, weeks: int) -> dict[int, float]:
    idx = series.index
    a, b = idx.searchsorted(origin - pd.Timedelta(weeks=4 * weeks)), idx.searchsorted(origin)
    idx, vals, ok = idx[a:b], series.to_numpy()[a:b], ok_all[a:b]
    dow = idx.day_of_week.to_numpy()
    level = {}
    for w in range(7):
        for span in (weeks, 2 * weeks, 4 * weeks):  # widen when holidays/games leave < 2 quiet days
            sel = ok & (dow == w) & (idx >= origin - pd.Timedelta(weeks=span))
            if sel.sum() >= 2:
                level[w] = float(np.median(vals[sel]))
                break
        else:
            raise InputError(f"origin {origin.date()}: fewer than two quiet {pd.Timestamp(2024, 1, 1 + w).day_name()}s "
                             f"in the {4 * weeks} weeks before; the series is too short or too eventful")
    return level


def baseline_forecast(series: pd.Series, quiet: pd.Series, origin, horizon: int, weeks: int = 8,
                      years: int = 5) -> pd.Series:
    """Point forecast for ``horizon`` days from ``origin`` (the first forecast day).

    Level: for each weekday, the median ridership of the quiet days with that weekday among
    the ``weeks`` weeks before ``origin`` (widened to ``2 * weeks``, then ``4 * weeks``,
    when fewer than two such days exist). Season: times the median over the previous
    ``years`` years (364 days apart, so weekdays align) of ``s_y(d) / L_y``, where ``s_y(d)``
    is the median of the quiet same-weekday days ``d - 364 y + {-7, 0, 7}`` and ``L_y`` the
    level computed at ``origin - 364 y``; years without data or quiet days are skipped.
    Uses no data on or after ``origin``.
    """
    origin = pd.Timestamp(origin)
    vals = series.to_numpy()
    ok_all = quiet.reindex(series.index, fill_value=False).to_numpy() & np.isfinite(vals)
    days = pd.date_range(origin, periods=horizon, freq="D")
    level = _weekday_levels(series, ok_all, origin, weeks)
    out = np.array([level[w] for w in days.day_of_week], float)
    ratios = []
    for y in range(1, years + 1):
        o_y = origin - pd.Timedelta(days=364 * y)
        if o_y - pd.Timedelta(weeks=4 * weeks) < series.index[0]:
            continue
        try:
            lv = _weekday_levels(series, ok_all, o_y, weeks)
        except InputError:
            continue
        base_y = np.array([lv[w] for w in days.day_of_week], float)
        local = np.full((3, horizon), np.nan)
        for k, off in enumerate((-7, 0, 7)):
            pos = series.index.get_indexer(days - pd.Timedelta(days=364 * y - off))
            good = pos >= 0
            good[good] &= ok_all[pos[good]]
            local[k, good] = vals[pos[good]]
        s_y = np.full(horizon, np.nan)
        some = np.isfinite(local).any(axis=0)
        s_y[some] = np.nanmedian(local[:, some], axis=0)
        ratios.append(s_y / base_y)
    if ratios:
        r = np.vstack(ratios)
        have = np.isfinite(r).any(axis=0)
        factor = np.ones(horizon)
        factor[have] = np.nanmedian(r[:, have], axis=0)
        out = out * factor
    return pd.Series(out, index=days, name="forecast", dtype=float)


def residual_quantiles(series: pd.Series, quiet: pd.Series, first_origin, last_day, horizon: int,
                       step_days: int = 14, years: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Backtest :func:`baseline_forecast` at origins every ``step_days`` from ``first_origin``.

    Only horizons that end on or before ``last_day`` are used (no look-ahead past it).
    Returns ``(quantiles, residuals)``: log-residual ``log(actual / forecast)`` quantiles
    q10/q50/q90, sd and count by day type (``weekday`` or ``weekend``), and the residuals
    of quiet days themselves.
    """
    last_day = pd.Timestamp(last_day)
    rows = []
    origin = pd.Timestamp(first_origin)
    q = quiet.reindex(series.index, fill_value=False)
    while origin + pd.Timedelta(days=horizon - 1) <= last_day:
        f = baseline_forecast(series, quiet, origin, horizon, years=years)
        act = series.reindex(f.index)
        ok = q.reindex(f.index, fill_value=False).to_numpy() & act.notna().to_numpy()
        res = np.log(act.to_numpy()[ok] / f.to_numpy()[ok])
        for d, r in zip(f.index[ok], res, strict=True):
            rows.append((origin, d, "weekend" if d.day_of_week >= 5 else "weekday", r))
        origin += pd.Timedelta(days=step_days)
    resid = pd.DataFrame(rows, columns=["origin", "date", "day_type", "log_residual"])
    g = resid.groupby("day_type")["log_residual"]
    quant = pd.DataFrame({"q10": g.quantile(0.1), "q50": g.quantile(0.5), "q90": g.quantile(0.9),
                          "sd": g.std(), "n": g.size()})
    return quant, resid


@dataclass(frozen=True)
class ChicagoTables:
    """The planning tables of the Chicago scenario and the numbers they were derived from."""

    history: pd.DataFrame
    """period, segment, actual (thousands of entries), over the calibration window."""
    forecast: pd.DataFrame
    """period, segment, p10, p50, p90, as_of over the horizon (no event effects)."""
    capacity: pd.DataFrame
    """period, resource, capacity."""
    levers: pd.DataFrame
    """Levers table."""
    events: list[dict]
    """Scenario events: name, periods (ISO dates), uplift (lognormal median/p90), n, p10."""
    calibration: dict = field(default_factory=dict)
    """Calibration window, residual quantiles, backtest figures."""
    actual: pd.Series | None = None
    """Realised ridership over the horizon (for backtests only; not a planning input)."""


#: Illustrative operating assumptions (not from the data): scheduled rail capacity through
#: the station as a multiple of the quiet-day median of the last 8 weeks, by day type
#: (weekend service has more room per rider); agent-hours per thousand entries; rostered
#: agent-hours as a multiple of the hours the scheduled rail capacity would need.
RAIL_HEADROOM = {"weekday": 1.08, "saturday": 1.35, "sunday": 1.35}
AGENT_HOURS_PER_K = 1.6
STAFF_HEADROOM = 1.05
#: Holidays on which the CTA runs its Sunday schedule (the others keep the day's schedule).
SUNDAY_SCHEDULE = ("new_years_day", "memorial_day", "independence_day", "labor_day", "thanksgiving",
                   "christmas_day")


def _day_type(d: pd.Timestamp) -> str:
    return "weekday" if d.day_of_week < 5 else ("saturday" if d.day_of_week == 5 else "sunday")


def chicago_tables(df: pd.DataFrame | None = None, start="2015-10-05", horizon: int = 56,
                   calibration_start="2001-01-22", segment: str = "clark_lake", years: int = 5,
                   step_days: int = 14) -> ChicagoTables:
    """Derive the Chicago scenario's planning tables from the raw data (deterministic).

    ``start`` is the first horizon day; the forecast is made as of the day before, from
    data in ``[calibration_start, start)`` only. Events: home games of the teams in
    :data:`GAME_TEAMS` split by weekday/weekend, holidays and the Chicago Marathon inside
    the horizon, each with a lognormal uplift estimated from the same kind of event in the
    calibration window. The backtest figures in ``calibration`` compare p50 with the
    realised ridership on the horizon's quiet days (APE = ``|p50 / actual - 1|``).
    """
    df = chicago_ridership() if df is None else df
    start = pd.Timestamp(start)
    cal0 = pd.Timestamp(calibration_start)
    end = start + pd.Timedelta(days=horizon - 1)
    as_of = start - pd.Timedelta(days=1)
    if not (df["date"].min() <= cal0 < start and end <= df["date"].max()):
        raise InputError(f"horizon {start.date()} .. {end.date()} with calibration from {cal0.date()} is not "
                         f"inside the data ({df['date'].min().date()} .. {df['date'].max().date()})")
    series = station_series(df)
    quiet = quiet_days(df)
    past = series[(series.index >= cal0) & (series.index < start)]

    # forecast: weekday baseline x calibrated residual quantiles ------------------------------
    quant, resid = residual_quantiles(past, quiet, cal0 + pd.Timedelta(weeks=8), as_of, horizon, step_days, years)
    base = baseline_forecast(past, quiet, start, horizon, years=years)
    kind = np.where(base.index.day_of_week >= 5, "weekend", "weekday")
    qv = quant.loc[kind]
    p10 = base.to_numpy() * np.exp(qv["q10"].to_numpy())
    p50 = base.to_numpy() * np.exp(qv["q50"].to_numpy())
    p90 = base.to_numpy() * np.exp(qv["q90"].to_numpy())
    days = base.index
    forecast = pd.DataFrame({"period": days.strftime("%Y-%m-%d"), "segment": segment,
                             "p10": np.round(p10, 3), "p50": np.round(p50, 3), "p90": np.round(p90, 3),
                             "as_of": as_of.strftime("%Y-%m-%d")})
    history = pd.DataFrame({"period": past.index.strftime("%Y-%m-%d"), "segment": segment,
                            "actual": np.round(past.to_numpy(), 3)})

    # events: estimated from the calibration window ------------------------------------------------
    events = []
    for team in GAME_TEAMS:
        g = game_days(df, team)
        for label, weekend in (("weekday", False), ("weekend", True)):
            sel = g[(g.day_of_week >= 5) == weekend]
            inside = sel[(sel >= start) & (sel <= end) & ~sel.isin(_holiday_set(start, end))]
            if inside.empty:
                continue
            hist = sel[(sel >= cal0) & (sel < start)]
            est = lognormal_uplift(event_ratios(past, hist, quiet))
            events.append({"name": f"{team.lower()}_home_{label}", "periods": [d.strftime("%Y-%m-%d") for d in inside],
                           **est})
    hol_hist = {**holiday_days(cal0, as_of), "chicago_marathon": marathon_days(cal0, as_of)}
    hol_now = {**holiday_days(start, end), "chicago_marathon": marathon_days(start, end)}
    for name, daylist in hol_now.items():
        if daylist.empty:
            continue
        hist = hol_hist.get(name, pd.DatetimeIndex([]))
        ratios = event_ratios(past, hist, quiet)
        if ratios.empty:
            continue
        est = lognormal_uplift(ratios)
        events.append({"name": name, "periods": [d.strftime("%Y-%m-%d") for d in daylist], **est})

    # capacity: scheduled service (major holidays run the Sunday schedule) -----------------------------
    hol_in = pd.DatetimeIndex([d for k, v in holiday_days(start, end).items() if k in SUNDAY_SCHEDULE for d in v])
    recent = past[(past.index >= start - pd.Timedelta(weeks=8)) & quiet.reindex(past.index, fill_value=False)]
    med = {k: float(np.median(recent[[_day_type(d) == k for d in recent.index]])) for k in RAIL_HEADROOM}
    cap_rows = []
    for d in days:
        k = "sunday" if d in hol_in else _day_type(d)
        rail = round(med[k] * RAIL_HEADROOM[k], 1)
        cap_rows.append((d.strftime("%Y-%m-%d"), "rail_cars", rail))
        cap_rows.append((d.strftime("%Y-%m-%d"), "station_staff", round(rail * AGENT_HOURS_PER_K * STAFF_HEADROOM)))
    capacity = pd.DataFrame(cap_rows, columns=["period", "resource", "capacity"])
    wk = med["weekday"]
    levers = pd.DataFrame(
        [("extra_trains", "reserve", "rail_cars", 650.0, 7, 1500.0, round(0.25 * wk, 1), 1, 0, None, 0.95, None),
         ("overtime_agents", "flex", "station_staff", 58.0, 0, 0.0, 16.0, 1, 0, None, 1.0, None),
         ("service_cut", "release", "rail_cars", 520.0, 0, 0.0, round(0.10 * wk, 1), 7, 14, None, 1.0, None)],
        columns=["name", "kind", "resource", "unit_cost", "lead_time", "fixed_cost", "quota", "min_term", "notice",
                 "ramp", "reliability", "tiers"])

    actual = series.reindex(days)
    quiet_h = quiet.reindex(days, fill_value=False).to_numpy() & ~days.isin(_event_days(events))
    ape_all = np.abs(p50 / actual.to_numpy() - 1.0)
    ape = ape_all[quiet_h]
    wkend = days.day_of_week.to_numpy() >= 5
    inside = (actual.to_numpy() >= p10) & (actual.to_numpy() <= p90)
    calibration = {
        "calibration_window": [cal0.strftime("%Y-%m-%d"), as_of.strftime("%Y-%m-%d")],
        "horizon": [start.strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d")],
        "residual_quantiles": {k: {c: round(float(v), 4) for c, v in row.items()} for k, row in quant.iterrows()},
        "residual_sd_all": round(float(resid["log_residual"].std()), 4),
        "backtest_origins": int(resid["origin"].nunique()),
        "backtest_mape_quiet": round(float(ape.mean()), 4),
        "backtest_mape_quiet_weekday": round(float(ape_all[quiet_h & ~wkend].mean()), 4),
        "backtest_mape_quiet_weekend": round(float(ape_all[quiet_h & wkend].mean()), 4),
        "backtest_max_ape_quiet": round(float(ape.max()), 4),
        "backtest_max_ape_quiet_day": days[quiet_h][int(np.argmax(ape))].strftime("%Y-%m-%d"),
        "backtest_quiet_days": int(quiet_h.sum()),
        "backtest_p10_p90_coverage_quiet": round(float(inside[quiet_h].mean()), 3),
        "rail_quiet_median_last_8_weeks": {k: round(v, 3) for k, v in med.items()},
    }
    return ChicagoTables(history=history, forecast=forecast, capacity=capacity, levers=levers, events=events,
                         calibration=calibration, actual=actual)


def _holiday_set(start, end) -> pd.DatetimeIndex:
    out = [d for v in holiday_days(start, end).values() for d in v] + list(marathon_days(start, end))
    return pd.DatetimeIndex(sorted(out))


def _event_days(events: list[dict]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(sorted({pd.Timestamp(p) for ev in events for p in ev["periods"]}))



