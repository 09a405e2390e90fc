"""Anomaly checks run while compiling a planning pack.

Each check returns :class:`~peakplan.pack.Flag` records (rule, severity, location,
evidence). Checks never change the data; the repairs they report (clipping a negative,
filling a missing period) are made by :func:`peakplan.pack.build_pack`, which says so in
the flag's evidence.
"""

from __future__ import annotations

import numpy as np

from peakplan.pack import Flag

__all__ = ["RULES", "capacity_below_demand", "demand_spikes", "event_in_freeze", "level_shift",
           "robust_z", "stale_forecast"]

#: Every rule this module (and the pack builder) can raise, with its meaning.
RULES = {
    "demand_spike": "a forecast median far above history (robust z-score, median/MAD)",
    "history_outlier": "a history value far from its segment's typical level (robust z-score)",
    "level_shift": "recent history and the near forecast differ by more than the threshold",
    "degenerate_quantiles": "p10 = p50 = p90 (or sd = 0): no uncertainty stated",
    "missing_period": "a period x segment/resource cell has no row; filled from its neighbours",
    "duplicate_period": "a period x segment/resource cell has several rows; the last one is kept",
    "outside_horizon": "rows dated outside the planning horizon; ignored",
    "stale_forecast": "the forecast was made long before the horizon starts",
    "capacity_below_demand": "baseline capacity below the load of recent actual demand",
    "negative_value": "an impossible negative value; clipped to zero",
    "event_in_freeze": "a demand event falls inside a freeze window: capacity cannot change then",
}


def robust_z(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Robust z-score of ``x`` against ``ref``: ``(x - median) / (1.4826 * MAD)``.

    The factor 1.4826 makes the MAD a consistent estimator of the normal sd
    (Rousseeuw & Croux 1993). A zero MAD falls back to the standard deviation.
    """
    ref = np.asarray(ref, float)
    ref = ref[np.isfinite(ref)]
    if ref.size < 3:
        return np.zeros_like(np.asarray(x, float))
    med = np.median(ref)
    mad = 1.4826 * np.median(np.abs(ref - med))
    scale = mad if mad > 0 else ref.std()
    if scale <= 0:
        return np.zeros_like(np.asarray(x, float))
    return (np.asarray(x, float) - med) / scale


def demand_spikes(p50: np.ndarray, history: np.ndarray | None, periods, segments, z_max: float) -> list[Flag]:
    """Forecast medians whose robust z-score against the segment's history exceeds ``z_max``."""
    flags: list[Flag] = []
    if history is None or len(history) < 3:
        return flags
    for g, seg in enumerate(segments):
        z = robust_z(p50[:, g], history[:, g])
        for t in np.flatnonzero(z > z_max):
            sev = "high" if z[t] > 2 * z_max else "medium"
            flags.append(Flag("demand_spike", sev, f"forecast, period {periods[t]}, segment {seg}",
                              f"p50={p50[t, g]:.4g} has robust z={z[t]:.1f} against history median "
                              f"{np.median(history[:, g]):.4g} (threshold {z_max:g})"))
        zh = robust_z(history[:, g], history[:, g])
        n_out = int((np.abs(zh) > z_max).sum())
        if n_out:
            flags.append(Flag("history_outlier", "low", f"history, segment {seg}",
                              f"{n_out} of {len(zh)} history values have abs(robust z) > {z_max:g}"))
    return flags


def level_shift(p50: np.ndarray, history: np.ndarray | None, segments, recent: int, threshold: float,
                quiet: np.ndarray, cycle: int = 1) -> list[Flag]:
    """Recent history against the near forecast (non-event periods), per segment.

    With a weekly ``cycle`` (7 for daily periods) the comparison is matched by position in
    the cycle: for each weekday the mean of the recent history (``recent`` rounded up to
    whole cycles) is compared with the mean forecast on the same weekday, and the relative
    gaps are averaged, so a different weekday/weekend mix cannot fake a shift. Forecast
    period 0 is assumed to follow the last history period.
    """
    flags: list[Flag] = []
    if history is None or len(history) == 0:
        return flags
    H = len(history)
    n_hist = min(H, -(-recent // cycle) * cycle)
    h_phase = (np.arange(H - n_hist, H) - H) % cycle  # phase relative to forecast period 0
    idx = np.flatnonzero(quiet)[: max(recent, cycle)]
    if idx.size == 0:
        return flags
    f_phase = idx % cycle
    for g, seg in enumerate(segments):
        rels, hs, fs = [], [], []
        for ph in range(cycle):
            hv = history[H - n_hist:, g][h_phase == ph]
            fv = p50[idx[f_phase == ph], g]
            if hv.size and fv.size and hv.mean() > 0:
                rels.append(fv.mean() / hv.mean() - 1.0)
                hs.append(hv.mean())
                fs.append(fv.mean())
        if not rels:
            continue
        rel = float(np.mean(rels))
        if abs(rel) > threshold:
            flags.append(Flag("level_shift", "medium", f"segment {seg}",
                              f"mean of last {n_hist} history periods {np.mean(hs):.4g} vs mean forecast p50 "
                              f"{np.mean(fs):.4g} over {idx.size} non-event periods"
                              f"{' (matched by weekday)' if cycle > 1 else ''} ({rel:+.0%}, threshold {threshold:.0%})"))
    return flags


def stale_forecast(as_of, start, max_days: int) -> list[Flag]:
    """The forecast's as-of date is more than ``max_days`` before the horizon starts."""
    if as_of is None:
        return []
    age = (start - as_of).days
    if age > max_days:
        return [Flag("stale_forecast", "high", "forecast",
                     f"as_of {as_of} is {age} days before the horizon start {start} (limit {max_days} days)")]
    return []


def capacity_below_demand(load: np.ndarray, base0: np.ndarray, avail: np.ndarray, history: np.ndarray | None,
                          resources, recent: int) -> list[Flag]:
    """Baseline capacity (x mean availability) below the load of recent mean actual demand."""
    if history is None or len(history) == 0:
        return []
    d = history[-recent:].mean(axis=0)
    need = d @ load
    have = base0 * avail
    flags = []
    for r, res in enumerate(resources):
        if need[r] > have[r] + 1e-9:
            flags.append(Flag("capacity_below_demand", "high", f"capacity, resource {res}",
                              f"period-0 capacity x availability {have[r]:.4g} is below the load of recent "
                              f"mean actual demand {need[r]:.4g} ({have[r] / need[r] - 1:+.0%})"))
    return flags


def event_in_freeze(events, freeze: np.ndarray, periods) -> list[Flag]:
    """Events whose periods overlap a freeze window."""
    flags = []
    for ev in events:
        both = np.flatnonzero(ev.periods & freeze)
        if both.size:
            flags.append(Flag("event_in_freeze", "high", f"event {ev.name}",
                              f"periods {', '.join(periods[t] for t in both)} are inside a freeze window; "
                              "capacity cannot change for this event there"))
    return flags
