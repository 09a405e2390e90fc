"""The issue's "done" figures, all from one run: kernel vs its floors and vs the per-path loops.

    .venv/bin/python benchmarks/floor.py             # N=1e6, T=52, R=8 (about 2 minutes on 2 cores)
    .venv/bin/python benchmarks/floor.py --n 200000  # quicker

Throughputs are in cells per second (cell = one path x period x resource), best of
``--repeat`` runs. Writes ``benchmarks/floor.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import registry
from reference_loops import python_loop, simpy_loop

from peakplan.simulate import mc
from peakplan.testing import assert_metrics_equal

HERE = Path(__file__).resolve().parent


def best(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--loop-paths", type=int, default=300)
    args = ap.parse_args(argv)
    case = registry.Case("floor", N=args.n, T=52, R=8, S=0, des_horizon=0.0)
    pack = registry.pack_for(case)
    rate = {}
    for name, work in (("numpy_draw", registry.draw_numpy(case)), ("kernel_draw", registry.draw_kernel(case))):
        rate[name] = case.cells / best(work.run, args.repeat)[0]
    mc.simulate(pack, n_paths=2000, seed=1, threads=1)
    results = {}
    for th in (1, 2):
        dt, res = best(lambda th=th: mc.simulate(pack, n_paths=case.N, seed=3, threads=th), args.repeat)
        rate[f"kernel_{th}thread"] = case.cells / dt
        results[th] = res.metrics
    assert_metrics_equal(results[1], results[2])
    del results
    ref = registry.Case("loops", N=args.loop_paths, T=52, R=8, S=0, des_horizon=0.0)
    for name, loop in (("python_loop", python_loop), ("simpy_loop", simpy_loop)):
        rate[name] = ref.cells / best(lambda loop=loop: loop(pack, ref.N, seed=1), 2)[0]
    k1 = rate["kernel_1thread"]
    ratios = {
        "kernel_1thread / numpy_draw (>= 1.0)": k1 / rate["numpy_draw"],
        "kernel_1thread / kernel_draw (aim >= 0.6)": k1 / rate["kernel_draw"],
        "kernel_2threads / kernel_1thread (>= 1.8, identical results)": rate["kernel_2thread"] / k1,
        "kernel_1thread / python_loop (>= 80)": k1 / rate["python_loop"],
        "kernel_1thread / simpy_loop (>= 250)": k1 / rate["simpy_loop"],
    }
    print(f"N={case.N:,} T=52 R=8, best of {args.repeat}\n")
    print("| throughput | M cells/s |\n|---|---:|")
    for k, v in rate.items():
        print(f"| {k} | {v / 1e6:.2f} |")
    print("\n| ratio | value |\n|---|---:|")
    for k, v in ratios.items():
        print(f"| {k} | {v:.2f} |")
    doc = {"N": case.N, "T": 52, "R": 8, "repeat": args.repeat, "cells_per_s": rate, "ratios": ratios,
           "numpy": np.__version__}
    (HERE / "floor.json").write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
