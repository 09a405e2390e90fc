"""Compile a validated scenario and its tables into a :class:`~peakplan.pack.PlanningPack`.

``build_pack`` maps dates to periods, pivots the tables into ``[T, G]``/``[T, R]`` arrays,
fits the demand marginals, estimates the noise model from history when asked, resolves
every name reference (reporting all bad references at once) and runs the anomaly checks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from peakplan import checks
from peakplan.config import Scenario
from peakplan.errors import InputError
from peakplan.examples import DEFAULT_VARIANTS
from peakplan.loaders import load_scenario, load_tables, parse_tiers
from peakplan.pack import Disruption, Event, Flag, Lever, PlanningPack, StressTest, Variant
from peakplan.score import DEFINITIONS

__all__ = ["build_pack", "fit_lognormal", "period_index"]

Z90 = 1.2815515655446004  # standard normal 0.9 quantile


def fit_lognormal(p50: np.ndarray, p90: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lognormal ``(mu, sigma)`` matching the median and the 90th percentile exactly.

    ``mu = ln p50``, ``sigma = ln(p90 / p50) / z_0.9``. The upper tail drives capacity, so
    p50 and p90 are matched exactly; p10 (if given) is only checked. A zero median gives
    a point mass at zero.
    """
    p50 = np.asarray(p50, float)
    p90 = np.asarray(p90, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(p50 > 0, np.log(np.where(p50 > 0, p50, 1.0)), -np.inf)
        sigma = np.where(p50 > 0, np.log(np.where(p50 > 0, np.maximum(p90, p50), 1.0) / np.where(p50 > 0, p50, 1.0)) / Z90, 0.0)
    return mu, sigma


def lognormal_from_moments(mean: np.ndarray, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lognormal ``(mu, sigma)`` with the given mean and standard deviation (moment match)."""
    mean = np.asarray(mean, float)
    sd = np.asarray(sd, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        s2 = np.where(mean > 0, np.log1p((sd / np.where(mean > 0, mean, 1.0)) ** 2), 0.0)
        mu = np.where(mean > 0, np.log(np.where(mean > 0, mean, 1.0)) - s2 / 2, -np.inf)
    return mu, np.sqrt(s2)


def _step(kind: str) -> dt.timedelta:
    return dt.timedelta(days=7 if kind == "week" else 1)


def period_labels(scn: Scenario) -> tuple[str, ...]:
    step = _step(scn.calendar.period)
    return tuple((scn.calendar.start + k * step).isoformat() for k in range(scn.calendar.horizon))


def period_index(dates, scn: Scenario) -> np.ndarray:
    """Period index of each date (may be negative or >= T for dates outside the horizon)."""
    start = pd.Timestamp(scn.calendar.start)
    days = (pd.to_datetime(pd.Series(dates)) - start).dt.days.to_numpy()
    return np.floor_divide(days, _step(scn.calendar.period).days)


def _ref(ref, scn: Scenario, what: str, problems: list[str]) -> int:
    k = ref if isinstance(ref, int) else int(period_index([ref], scn)[0])
    if not 0 <= k < scn.calendar.horizon:
        problems.append(f"{what}: period {ref} is outside the horizon {period_labels(scn)[0]} .. "
                        f"{period_labels(scn)[-1]} ({scn.calendar.horizon} {scn.calendar.period}s)")
        return -1
    return k


def _mask(refs, scn: Scenario, what: str, problems: list[str]) -> np.ndarray:
    m = np.zeros(scn.calendar.horizon, bool)
    if refs == "all":
        m[:] = True
        return m
    for r in refs:
        k = _ref(r, scn, what, problems)
        if k >= 0:
            m[k] = True
    return m


def _window(w, scn: Scenario, what: str, problems: list[str]) -> np.ndarray:
    m = np.zeros(scn.calendar.horizon, bool)
    a, b = _ref(w.start, scn, what, problems), _ref(w.end, scn, what, problems)
    if a >= 0 and b >= 0:
        if b < a:
            problems.append(f"{what}: end {w.end} is before start {w.start}")
        m[a:b + 1] = True
    return m


def _names_mask(refs, names: tuple[str, ...]) -> np.ndarray:
    if refs == "all":
        return np.ones(len(names), bool)
    return np.array([n in refs for n in names], bool)


def _pivot(df: pd.DataFrame, key: str, names: tuple[str, ...], value_cols: list[str], scn: Scenario,
           table: str, flags: list[Flag], problems: list[str]) -> dict[str, np.ndarray]:
    """Pivot a long table to ``[T, len(names)]`` arrays per value column, flagging gaps."""
    T = scn.calendar.horizon
    labels = period_labels(scn)
    unknown = ~df[key].isin(names)
    for i in np.flatnonzero(unknown.to_numpy()):
        problems.append(f"{table} row {df['_row'].iloc[i]}, column '{key}': unknown {key} "
                        f"{df[key].iloc[i]!r}; the scenario's {key}s are {list(names)}")
    df = df[~unknown].copy()
    df["_t"] = period_index(df["period"], scn)
    outside = (df["_t"] < 0) | (df["_t"] >= T)
    if outside.any():
        flags.append(Flag("outside_horizon", "low", table,
                          f"{int(outside.sum())} row(s) dated outside the horizon were ignored"))
    df = df[~outside]
    dup = df.duplicated(["_t", key], keep="last")
    for _, row in df[df.duplicated(["_t", key], keep=False) & ~dup].iterrows():
        flags.append(Flag("duplicate_period", "high", f"{table}, period {labels[row['_t']]}, {key} {row[key]}",
                          f"several rows for the same period and {key}; kept row {row['_row']}"))
    df = df[~dup]
    out = {}
    for col in value_cols:
        arr = np.full((T, len(names)), np.nan)
        if col in df.columns:
            idx_n = df[key].map({n: j for j, n in enumerate(names)}).to_numpy(int)
            arr[df["_t"].to_numpy(int), idx_n] = df[col].to_numpy(float)
        out[col] = arr
    have = ~np.isnan(out[value_cols[0]])
    if len(value_cols) > 1:
        for c in value_cols[1:]:
            have |= ~np.isnan(out[c])
    for j, n in enumerate(names):
        if not have[:, j].any():
            problems.append(f"{table}: no rows for {key} {n!r} inside the horizon; every {key} needs values")
            continue
        miss = np.flatnonzero(~have[:, j])
        if miss.size:
            shown = ", ".join(labels[t] for t in miss[:6]) + (" ..." if miss.size > 6 else "")
            flags.append(Flag("missing_period", "high", f"{table}, {key} {n}",
                              f"{miss.size} period(s) without a row ({shown}); filled from the nearest periods"))
    for col in value_cols:
        a = out[col]
        for j in range(a.shape[1]):
            s = pd.Series(a[:, j])
            if s.notna().any():
                a[:, j] = s.interpolate(limit_direction="both").to_numpy()
    return out


def _negatives(arr: np.ndarray, table: str, col: str, flags: list[Flag]) -> np.ndarray:
    neg = np.isfinite(arr) & (arr < 0)
    if neg.any():
        flags.append(Flag("negative_value", "high", f"{table}, column {col}",
                          f"{int(neg.sum())} negative value(s), lowest {arr[neg].min():g}; clipped to 0"))
        arr = np.where(neg, 0.0, arr)
    return arr


def _history(df: pd.DataFrame, scn: Scenario, segs: tuple[str, ...], flags: list[Flag],
             problems: list[str]) -> tuple[np.ndarray | None, tuple[str, ...]]:
    unknown = ~df["segment"].isin(segs)
    for i in np.flatnonzero(unknown.to_numpy()):
        problems.append(f"history row {df['_row'].iloc[i]}, column 'segment': unknown segment "
                        f"{df['segment'].iloc[i]!r}; the scenario's segments are {list(segs)}")
    df = df[~unknown].copy()
    if df.empty:
        return None, ()
    df["_t"] = period_index(df["period"], scn)
    dup = df.duplicated(["_t", "segment"], keep="last")
    if dup.any():
        flags.append(Flag("duplicate_period", "high", "history",
                          f"{int(dup.sum())} duplicate period x segment row(s); the last of each kept"))
    df = df[~dup]
    wide = df.pivot(index="_t", columns="segment", values="actual").reindex(columns=list(segs))
    full = range(int(wide.index.min()), int(wide.index.max()) + 1)
    gaps = len(full) - len(wide)
    wide = wide.reindex(full)
    if gaps or wide.isna().any().any():
        flags.append(Flag("missing_period", "high", "history",
                          f"{int(wide.isna().sum().sum())} missing period x segment cell(s); interpolated"))
        wide = wide.interpolate(limit_direction="both")
    step = _step(scn.calendar.period)
    labels = tuple((scn.calendar.start + int(k) * step).isoformat() for k in wide.index)
    arr = _negatives(wide.to_numpy(float), "history", "actual", flags)
    return arr, labels


def history_noise(history: np.ndarray, window: int, cycle: int = 1) -> tuple[np.ndarray, float]:
    """Segment correlation matrix and AR(1) coefficient of log-residuals of ``history``.

    Residual = ``log(actual) - rolling median`` (centred, ``window`` periods), which removes
    level and slow trend; with a ``cycle`` (7 for daily periods) each weekday's median
    residual is removed too. Periods where any segment's residual has a robust z-score above
    3.5 (past events) are dropped. The correlation matrix is repaired to the nearest
    positive definite matrix (eigenvalues clipped at 1e-6); the AR(1) coefficient is the
    mean lag-1 autocorrelation across segments over pairs of consecutive kept periods,
    clipped to [-0.95, 0.95].
    """
    logs = np.log(np.maximum(history, 1e-9))
    trend = pd.DataFrame(logs).rolling(window, center=True, min_periods=1).median().to_numpy()
    res = logs - trend
    if cycle > 1:
        phase = np.arange(len(res)) % cycle
        for ph in range(cycle):
            res[phase == ph] -= np.median(res[phase == ph], axis=0)
    # drop periods where any segment is an outlier (past events would fake a correlation)
    z = np.abs(np.column_stack([checks.robust_z(res[:, g], res[:, g]) for g in range(res.shape[1])]))
    keep = (z <= 3.5).all(axis=1)
    if keep.sum() < 8:
        keep[:] = True
    G = res.shape[1]
    kept = res[keep]
    if G > 1 and len(kept) > 3:
        c = np.corrcoef(kept, rowvar=False)
        c = np.nan_to_num(c, nan=0.0)
        np.fill_diagonal(c, 1.0)
        w, v = np.linalg.eigh(c)
        c = (v * np.maximum(w, 1e-6)) @ v.T
        d = np.sqrt(np.diag(c))
        c = c / d[:, None] / d[None, :]
    else:
        c = np.eye(G)
    pairs = keep[:-1] & keep[1:]
    ac = []
    for g in range(G):
        x0, x1 = res[:-1, g][pairs], res[1:, g][pairs]
        if x0.size > 3 and x0.std() > 0 and x1.std() > 0:
            ac.append(np.corrcoef(x0, x1)[0, 1])
    phi = float(np.clip(np.nanmean(ac), -0.95, 0.95)) if ac else 0.0
    return c, phi


def build_pack(scenario: Scenario | str | Path, tables: dict[str, pd.DataFrame] | None = None) -> PlanningPack:
    """Compile ``scenario`` (a :class:`Scenario` or a path to one) into a :class:`PlanningPack`."""
    scn = load_scenario(scenario) if isinstance(scenario, (str, Path)) else scenario
    tables = load_tables(scn) if tables is None else tables
    T = scn.calendar.horizon
    labels = period_labels(scn)
    segs = tuple(s.name for s in scn.segments)
    ress = tuple(r.name for r in scn.resources)
    flags: list[Flag] = []
    problems: list[str] = []
    fset = scn.flags

    # demand ---------------------------------------------------------------------------
    fc = tables["forecast"]
    cols = [c for c in ("p10", "p50", "p90", "mean", "sd") if c in fc.columns]
    fcp = _pivot(fc, "segment", segs, cols, scn, Path(scn.tables.forecast).name, flags, problems)
    for c in cols:
        fcp[c] = _negatives(fcp[c], "forecast", c, flags)
    if "p50" in fcp and "p90" in fcp:
        use_q = ~np.isnan(fcp["p50"]) & ~np.isnan(fcp["p90"])
    else:
        use_q = np.zeros((T, len(segs)), bool)
    nan = np.full((T, len(segs)), np.nan)
    p50 = fcp.get("p50", nan)
    p90 = fcp.get("p90", nan)
    mean = fcp.get("mean", nan)
    sd = fcp.get("sd", nan)
    if scn.demand.marginal == "lognormal":
        mq, sq = fit_lognormal(np.nan_to_num(p50), np.nan_to_num(p90))
        mm, sm = lognormal_from_moments(np.nan_to_num(mean), np.nan_to_num(sd))
    else:
        mq, sq = np.nan_to_num(p50), np.maximum(np.nan_to_num(p90) - np.nan_to_num(p50), 0) / Z90
        mm, sm = np.nan_to_num(mean), np.nan_to_num(sd)
    mu = np.where(use_q, mq, mm)
    sigma = np.where(use_q, sq, sm)
    degenerate = (sigma == 0) & np.isfinite(mu)
    if degenerate.any():
        t, g = np.argwhere(degenerate)[0]
        flags.append(Flag("degenerate_quantiles", "medium", "forecast",
                          f"{int(degenerate.sum())} cell(s) state no uncertainty (e.g. period {labels[t]}, "
                          f"segment {segs[g]}); demand there is deterministic"))
    median = np.where(use_q, np.nan_to_num(p50), np.where(scn.demand.marginal == "lognormal", np.exp(mu), mu))

    # capacity ---------------------------------------------------------------------------
    capp = _pivot(tables["capacity"], "resource", ress, ["capacity"], scn, Path(scn.tables.capacity).name,
                  flags, problems)
    base = _negatives(capp["capacity"], "capacity", "capacity", flags)

    # levers -----------------------------------------------------------------------------
    levers: list[Lever] = []
    lev_df = tables.get("levers")
    lname = Path(scn.tables.levers).name if scn.tables.levers else "levers"
    if lev_df is not None:
        for _, row in lev_df.iterrows():
            if row["resource"] not in ress:
                problems.append(f"{lname} row {row['_row']}, column 'resource': unknown resource "
                                f"{row['resource']!r}; the scenario's resources are {list(ress)}")
                continue

            def opt(col, default, cast=float, row=row):
                v = row.get(col)
                return default if v is None or pd.isna(v) else cast(v)

            levers.append(Lever(
                name=row["name"], kind=row["kind"], resource=ress.index(row["resource"]),
                lead_time=opt("lead_time", 0, int), unit_cost=float(row["unit_cost"]),
                tiers=parse_tiers(row["tiers"]) if opt("tiers", None, str) else (),
                fixed_cost=opt("fixed_cost", 0.0), quota=opt("quota", float("inf")),
                min_term=opt("min_term", 1, int), notice=opt("notice", 0, int),
                ramp=opt("ramp", float("inf")), reliability=opt("reliability", 1.0)))
    lnames = [lv.name for lv in levers]
    for f in scn.constraints.forbidden_levers:
        if f not in lnames:
            problems.append(f"constraints.forbidden_levers: unknown lever {f!r}; levers are {lnames}")
    committed = np.zeros((len(levers), T))
    cm = tables.get("committed")
    if cm is not None:
        cname = Path(scn.tables.committed).name
        for _, row in cm.iterrows():
            if row["lever"] not in lnames:
                problems.append(f"{cname} row {row['_row']}, column 'lever': unknown lever {row['lever']!r}; levers are {lnames}")
                continue
            a, b = (int(x) for x in period_index([row["start"], row["end"]], scn))
            if b < a:
                problems.append(f"{cname} row {row['_row']}: end {row['end'].date()} is before start {row['start'].date()}")
                continue
            committed[lnames.index(row["lever"]), max(a, 0):min(b, T - 1) + 1] += row["quantity"]

    # events, disruptions, windows -------------------------------------------------------
    events = tuple(
        Event(ev.name, ev.probability, _mask(ev.periods, scn, f"events.{ev.name}.periods", problems),
              _names_mask(ev.segments, segs), ev.uplift.params())
        for ev in scn.events)
    disruptions = []
    for d in scn.disruptions:
        k = _ref(d.start, scn, f"disruptions.{d.name}.start", problems)
        disruptions.append(Disruption(d.name, d.probability, max(k, 0), d.duration, d.depth,
                                      _names_mask(d.resources, ress)))
    cons = scn.constraints
    window = _window(cons.service_window, scn, "constraints.service_window", problems) \
        if cons.service_window else np.ones(T, bool)
    if cons.peak_window:
        peak = _window(cons.peak_window, scn, "constraints.peak_window", problems)
    else:
        peak = np.zeros(T, bool)
        for ev in events:
            peak |= ev.periods
    freeze = np.zeros(T, bool)
    for i, w in enumerate(cons.freeze):
        freeze |= _window(w, scn, f"constraints.freeze.{i}", problems)
    stress = tuple(
        StressTest(st.name, st.demand_factor, st.capacity_factor,
                   _mask(st.periods, scn, f"stress_tests.{st.name}.periods", problems),
                   _names_mask(st.segments, segs), _names_mask(st.resources, ress))
        for st in scn.stress_tests)

    # history and noise ------------------------------------------------------------------
    history, hist_labels = (None, ())
    if "history" in tables:
        history, hist_labels = _history(tables["history"], scn, segs, flags, problems)
    if problems:
        raise InputError(f"{scn.name}: {len(problems)} problem(s) while compiling the planning pack", problems)
    window_len = 29 if scn.calendar.period == "day" else 13
    need_hist = scn.demand.ar1 == "history" or scn.demand.correlation == "history"
    if need_hist and history is None:
        raise InputError(f"{scn.name}: demand.ar1/correlation is 'history' but tables.history is not given")
    if history is not None and len(history) >= 8:
        corr_h, phi_h = history_noise(history, window_len, cycle=7 if scn.calendar.period == "day" else 1)
    else:
        corr_h, phi_h = np.eye(len(segs)), 0.0
    if scn.demand.correlation == "history":
        corr = corr_h
    else:
        corr = np.full((len(segs), len(segs)), float(scn.demand.correlation))
        np.fill_diagonal(corr, 1.0)
    phi = phi_h if scn.demand.ar1 == "history" else float(scn.demand.ar1)

    load = np.zeros((len(segs), len(ress)))
    for s, row in scn.load.items():
        for r, v in row.items():
            load[segs.index(s), ress.index(r)] = v

    # checks -------------------------------------------------------------------------------
    as_of = scn.calendar.as_of
    if as_of is None and "as_of" in fc.columns and fc["as_of"].notna().any():
        as_of = fc["as_of"].max().date()
    avail = np.array([r.availability_mean for r in scn.resources])
    flags += checks.demand_spikes(median, history, labels, segs, fset.spike_z)
    quiet = ~np.any([ev.periods for ev in events], axis=0) if events else np.ones(T, bool)
    flags += checks.level_shift(median, history, segs, fset.recent_periods, fset.level_shift, quiet,
                                 cycle=7 if scn.calendar.period == "day" else 1)
    flags += checks.stale_forecast(as_of, scn.calendar.start, fset.stale_days)
    flags += checks.capacity_below_demand(load, base[0], avail, history, ress, fset.recent_periods)
    flags += checks.event_in_freeze(events, freeze, labels)
    order = {"high": 0, "medium": 1, "low": 2}
    flags.sort(key=lambda f: order[f.severity])

    seg_by = {s.name: s for s in scn.segments}
    if scn.variants:
        variants = tuple(Variant(v.name, v.label or v.name, v.service,
                                 cons.service_target if v.target is None else v.target, v.level, v.budget, v.stress)
                         for v in scn.variants)
    else:
        variants = tuple(Variant(v.name, v.label, v.service, cons.service_target, v.level, v.budget, v.stress)
                         for v in DEFAULT_VARIANTS)
    return PlanningPack(
        name=scn.name,
        periods=labels,
        period_kind=scn.calendar.period,
        segments=segs,
        resources=ress,
        load=load,
        priority=np.array([seg_by[s].priority for s in segs], int),
        demand_mu=mu,
        demand_sigma=sigma,
        base_capacity=base,
        capacity_cost=np.array([r.cost for r in scn.resources]),
        penalty=np.array([cons.penalty_per_lost_unit if seg_by[s].penalty is None else seg_by[s].penalty for s in segs]),
        max_delay=cons.max_delay,
        marginal=scn.demand.marginal,
        ar1=phi,
        seg_corr=corr,
        events=events,
        availability_mean=avail,
        availability_sd=np.array([r.availability_sd for r in scn.resources]),
        disruptions=tuple(disruptions),
        levers=tuple(levers),
        committed=committed,
        backlog_cost=np.array([cons.backlog_cost if seg_by[s].backlog_cost is None else seg_by[s].backlog_cost for s in segs]),
        storable=np.array([seg_by[s].storable for s in segs]),
        holding_cost=np.array([seg_by[s].holding_cost for s in segs]),
        storage_cap=np.array([seg_by[s].storage_cap for s in segs]),
        initial_stock=np.array([seg_by[s].initial_stock for s in segs]),
        service_target=cons.service_target,
        service_window=window,
        peak=peak,
        budget=cons.budget,
        utilization_bounds=(cons.utilization_min, cons.utilization_max),
        freeze=freeze,
        forbidden=tuple(cons.forbidden_levers),
        variants=variants,
        stress_tests=stress,
        definitions=DEFINITIONS,
        flags=tuple(flags),
        n_paths=scn.simulation.paths,
        seed=scn.simulation.seed,
        chunk_size=scn.simulation.chunk_size,
        history=history,
        history_periods=hist_labels,
        des=dataclasses.asdict(scn.des),
        extra={"as_of": as_of.isoformat() if as_of else None, "demand_p50": median.tolist(),
               "opt_samples": scn.simulation.opt_samples, "opt_method": scn.simulation.opt_method,
               "opt_solver": scn.simulation.opt_solver,
               "opt_time_limit": scn.simulation.opt_time_limit,
               "plan_quality": scn.simulation.plan_quality, "currency": scn.currency,
               "resource_units": [r.unit for r in scn.resources],
               "segment_units": [s.unit for s in scn.segments],
               "intraday_profile": {r.name: list(r.intraday_profile) for r in scn.resources if r.intraday_profile},
               "service_time": {r.name: r.service_time for r in scn.resources if r.service_time}},
    )
