"""Scaling plot: wall time against N (paths), T (periods), R (resources) and S (LP sample).

    .venv/bin/python benchmarks/scaling.py            # writes benchmarks/scaling.png and scaling.json (~1 minute)
    .venv/bin/python benchmarks/scaling.py --replot   # redraw the PNG from scaling.json

Log-log axes; the dotted line in each panel is slope 1 (linear scaling) through the first
point. Simulation runs the numba kernel on one thread and the numpy reference for
comparison; the S panel plots the optimizer's own measurements (``optimize_curve.json`` and
``optimize_compare.json``, written by ``test_bench_optimize.py --curve`` / ``--compare``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from peakplan.bench import best_time  # noqa: E402
from peakplan.examples import synthetic_pack
from peakplan.simulate import mc

HERE = Path(__file__).resolve().parent


def timed(fn, repeat=2):
    return best_time(fn, repeat)


def sim_time(N, T, R, engine):
    pack = synthetic_pack(T=T, R=R)
    mc.simulate(pack, n_paths=1000, seed=1, engine=engine, threads=1)
    return timed(lambda: mc.simulate(pack, n_paths=N, seed=3, engine=engine, threads=1))


def sweep():
    data = {"N": {}, "T": {}, "R": {}, "S": {}}
    for engine in ("numba", "numpy"):
        Ns = [1_000, 10_000, 100_000, 1_000_000] if engine == "numba" else [1_000, 10_000, 50_000]
        data["N"][engine] = [(n, sim_time(n, 52, 8, engine)) for n in Ns]
        data["T"][engine] = [(t, sim_time(10_000, t, 8, engine)) for t in (13, 26, 52, 104, 208)]
        data["R"][engine] = [(r, sim_time(10_000, 52, r, engine)) for r in (2, 4, 8, 16, 32)]
    data["S"] = optimizer_points()
    return data


def optimizer_points() -> dict:
    """The S panel: the optimizer's own measurements (test_bench_optimize.py --curve / --compare)."""
    out = {}
    curve, compare = HERE / "optimize_curve.json", HERE / "optimize_compare.json"
    if curve.exists():
        rows = json.loads(curve.read_text())
        for label in dict.fromkeys(r["variant"] for r in rows):
            pts = [(r["S"], r["seconds"]) for r in rows if r["variant"] == label]
            if pts:
                out[f"L-shaped, {label} (0.1 % gap)"] = pts
    if compare.exists():
        pts = [(r["S"], r["extensive_s"]) for r in json.loads(compare.read_text()) if r["variant"] == "lean"]
        if pts:
            out["extensive form, lean"] = pts
    return out


def plot(data, path):
    fig, axes = plt.subplots(1, 4, figsize=(16, 4), constrained_layout=True)
    labels = {"N": "paths N (T=52, R=8)", "T": "periods T (N=1e4, R=8)", "R": "resources R (N=1e4, T=52)",
              "S": "LP sample paths S (T=52, R=8)"}
    for ax, key in zip(axes, ("N", "T", "R", "S"), strict=True):
        for name, pts in data[key].items():
            x, y = np.array(pts, float).T
            ax.loglog(x, y, "o-", label=name)
            ax.loglog(x, y[0] * x / x[0], ":", color="grey")
        if not data[key]:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.text(0.5, 0.5, "optimize not available yet", ha="center", va="center", transform=ax.transAxes)
        if key != "N" and data[key]:
            xs = sorted({pt[0] for pts in data[key].values() for pt in pts})
            ax.set_xticks(xs, [f"{v / 1000:g}k" if v >= 1000 else f"{v:g}" for v in xs])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(labels[key])
        ax.set_ylabel("wall time (s)")
        ax.grid(True, which="both", alpha=0.3)
        if data[key]:
            ax.legend()
    fig.suptitle("peakplan scaling (one thread; dotted: linear)")
    fig.savefig(path, dpi=90)


def main() -> int:
    if "--replot" in sys.argv:  # redraw from scaling.json without measuring
        data = json.loads((HERE / "scaling.json").read_text())
        data["S"] = optimizer_points()
        (HERE / "scaling.json").write_text(json.dumps(data, indent=2) + "\n")
    else:
        data = sweep()
        (HERE / "scaling.json").write_text(json.dumps(data, indent=2) + "\n")
    plot(data, HERE / "scaling.png")
    for key, series in data.items():
        for name, pts in series.items():
            print(key, name, " ".join(f"{x:g}:{y:.3f}s" for x, y in pts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
