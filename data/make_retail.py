"""Write the retail_peak scenario's tables (data/retail/*.csv), deterministically.

A three-site fulfilment network (east, central, west) with pickers and packers at each
site, weekly periods from 2026-09-28, a Black-Friday/Cyber-week promotion and a Christmas
run-up. The numbers are illustrative but sized like a mid-size e-commerce operation:
~130k orders a week, 0.025 picker-hours and 0.012 packer-hours per order.

Run:  python data/make_retail.py
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "retail"
START = dt.date(2026, 9, 28)
T = 16
SITES = {"east": 40_000, "central": 55_000, "west": 35_000}   # orders per week, business as usual
PICK_H, PACK_H = 0.025, 0.012                                   # hours per order


def main() -> None:
    rng = np.random.default_rng(20261124)
    OUT.mkdir(parents=True, exist_ok=True)
    weeks = [START + dt.timedelta(weeks=k) for k in range(T)]
    season = np.array([1.00, 1.00, 1.01, 1.02, 1.03, 1.04, 1.06, 1.08, 1.10, 1.10, 1.12, 1.10, 0.92, 0.85, 0.90, 0.95])
    growth = 1.04  # year-on-year
    # history: the 52 weeks before the horizon, with last year's peak in the same weeks
    hist_rows = []
    hist_weeks = [START - dt.timedelta(weeks=52 - k) for k in range(52)]
    common = rng.normal(0, 0.05, 52)
    for j, (site, level) in enumerate(SITES.items()):
        z = np.zeros(52)
        for k in range(52):
            z[k] = 0.5 * (z[k - 1] if k else 0) + 0.04 * rng.standard_normal()
        for k, w in enumerate(hist_weeks):
            wk = k - 52 + 52  # week-of-year position relative to START
            s = season[wk % 52] if wk % 52 < T else 1.0
            promo = 1.55 if wk % 52 in (8, 9) else 1.0
            actual = level / growth * s * promo * np.exp(z[k] + common[k]) * (1 + 0.02 * j * np.sin(k / 8))
            hist_rows.append((w.isoformat(), site, round(float(actual), 1)))
    pd.DataFrame(hist_rows, columns=["period", "segment", "actual"]).to_csv(OUT / "history.csv", index=False)
    # forecast: baseline quantiles (the promotion is an event on top, not in the baseline)
    fc_rows = []
    for site, level in SITES.items():
        for k, w in enumerate(weeks):
            p50 = level * season[k]
            spread = 0.08 + 0.01 * k / T   # forecast gets less certain further out
            p10 = p50 * np.exp(-1.2816 * spread)
            p90 = p50 * np.exp(1.2816 * spread)
            fc_rows.append((w.isoformat(), site, round(p10, 1), round(p50, 1), round(p90, 1), "2026-09-21"))
    pd.DataFrame(fc_rows, columns=["period", "segment", "p10", "p50", "p90", "as_of"]).to_csv(OUT / "forecast.csv", index=False)
    # capacity in hours per week; Thanksgiving week (2026-11-23) loses 10%
    cap_rows = []
    for site, level in SITES.items():
        for w in weeks:
            dip = 0.9 if w == dt.date(2026, 11, 23) else 1.0
            cap_rows.append((w.isoformat(), f"pickers_{site}", round(level * PICK_H * 1.12 * dip, 1)))
            cap_rows.append((w.isoformat(), f"packers_{site}", round(level * PACK_H * 1.15 * dip, 1)))
    pd.DataFrame(cap_rows, columns=["period", "resource", "capacity"]).to_csv(OUT / "capacity.csv", index=False)
    # levers
    lev = []
    for site, level in SITES.items():
        pk, pa = level * PICK_H, level * PACK_H
        lev.append((f"temp_pickers_{site}", "reserve", f"pickers_{site}", 28.0, 3, 2500.0, round(0.8 * pk), 4, 1, round(0.4 * pk), 0.9,
                    f"{round(0.3 * pk)}@28;{round(0.6 * pk)}@32;{round(0.8 * pk)}@38"))
        lev.append((f"overtime_pickers_{site}", "flex", f"pickers_{site}", 42.0, 0, 0.0, round(0.25 * pk), 1, 0, None, 1.0, None))
        lev.append((f"temp_packers_{site}", "reserve", f"packers_{site}", 26.0, 2, 1500.0, round(0.8 * pa), 3, 1, None, 0.95, None))
        lev.append((f"overtime_packers_{site}", "flex", f"packers_{site}", 39.0, 0, 0.0, round(0.25 * pa), 1, 0, None, 1.0, None))
    lev.append(("release_packers_west", "release", "packers_west", 23.0, 0, 0.0, 80, 1, 2, None, 1.0, None))
    cols = ["name", "kind", "resource", "unit_cost", "lead_time", "fixed_cost", "quota", "min_term", "notice", "ramp",
            "reliability", "tiers"]
    pd.DataFrame(lev, columns=cols).to_csv(OUT / "levers.csv", index=False)
    pd.DataFrame([("temp_pickers_central", "2026-11-09", "2026-12-20", 120.0)],
                 columns=["lever", "start", "end", "quantity"]).to_csv(OUT / "committed.csv", index=False)


if __name__ == "__main__":
    main()
