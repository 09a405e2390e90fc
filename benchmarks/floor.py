"""The issue's "done" figures, all from one run: kernel vs its floors and vs the per-path loops.

    .venv/bin/python benchmarks/floor.py             # N=1e6, T=52, R=8 (about 2 minutes on 2 cores)
    .venv/bin/python benchmarks/floor.py --n 200000  # quicker

Throughputs are in cells per second (cell = one path x period x resource), best of
``--repeat`` runs: the kernel in float64 (default) and with ``dtype="float32"``, on 1 and 2
threads, plus the time per block of 1,000 paths in each kernel stage (where the time goes).
Writes ``benchmarks/floor.json`` and prints Markdown tables.
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

from peakplan.rng import BLOCK_PATHS, block_generators
from peakplan.simulate import kernel, mc
from peakplan.testing import assert_metrics_equal

HERE = Path(__file__).resolve().parent


def best(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def stages(pack, n_blocks: int, repeat: int, dtype: str = "float64") -> dict[str, float]:
    """Milliseconds per block of 1,000 paths in each kernel stage (one thread, best of ``repeat``):
    ``draw+transforms`` (:func:`kernel._draw`), ``exp`` (numpy's, in place) and ``recurrence``
    (:func:`kernel._recur`)."""
    plan = mc.plan_inputs(pack)
    kp = kernel.kernel_params(pack, plan, mc._static(pack, plan), dtype)
    sc = kernel._Scratch(kp, BLOCK_PATHS)
    out = np.empty((kp.n_columns, BLOCK_PATHS))
    best_ms = {"draw+transforms": np.inf, "exp": np.inf, "recurrence": np.inf}
    for _ in range(repeat):
        tot = dict.fromkeys(best_ms, 0.0)
        for g in block_generators(7, 0, n_blocks):
            t0 = time.perf_counter()
            kernel._draw(g, BLOCK_PATHS, *kp.draw_args, sc.xb, sc.ab, sc.ev_eff, sc.ev_hit, sc.dis_hit, sc.late)
            t1 = time.perf_counter()
            np.exp(sc.xb, out=sc.xb)
            t2 = time.perf_counter()
            kernel._recur(BLOCK_PATHS, kernel.TILE, sc.ev_eff, sc.ev_hit, *kp.recur_args[:2], sc.dis_hit,
                          sc.late, *kp.recur_args[2:], sc.xb, sc.ab, out)
            t3 = time.perf_counter()
            tot["draw+transforms"] += t1 - t0
            tot["exp"] += t2 - t1
            tot["recurrence"] += t3 - t2
        for k, v in tot.items():
            best_ms[k] = min(best_ms[k], 1e3 * v / n_blocks)
    return best_ms


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
    mc.simulate(pack, n_paths=2000, seed=1, threads=1, dtype="float32")
    for th in (1, 2):
        dt = best(lambda th=th: mc.simulate(pack, n_paths=case.N, seed=3, threads=th, dtype="float32"),
                  args.repeat)[0]
        rate[f"kernel_{th}thread_float32"] = case.cells / dt
    n_blocks = min(200, case.N // BLOCK_PATHS)
    ms = {dt: stages(pack, n_blocks, args.repeat, dt) for dt in ("float64", "float32")}
    draw_ms = 1e3 * BLOCK_PATHS * case.T * case.R / rate["kernel_draw"]
    for dt in ms:
        ms[dt]["of which drawing (floor 2)"] = draw_ms
        ms[dt]["total per block (kernel_1thread)"] = 1e3 * BLOCK_PATHS * case.T * case.R / rate[
            "kernel_1thread" if dt == "float64" else "kernel_1thread_float32"]
    ref = registry.Case("loops", N=args.loop_paths, T=52, R=8, S=0, des_horizon=0.0)
    for name, loop in (("python_loop", python_loop), ("simpy_loop", simpy_loop)):
        rate[name] = ref.cells / best(lambda loop=loop: loop(pack, ref.N, seed=1), 2)[0]
    k1 = rate["kernel_1thread"]
    ratios = {
        "kernel_1thread / numpy_draw (>= 1.0)": k1 / rate["numpy_draw"],
        "kernel_1thread / kernel_draw (aim >= 0.6)": k1 / rate["kernel_draw"],
        "kernel_2threads / kernel_1thread (>= 1.8, identical results)": rate["kernel_2thread"] / k1,
        "kernel_1thread_float32 / kernel_draw": rate["kernel_1thread_float32"] / rate["kernel_draw"],
        "kernel_1thread_float32 / kernel_1thread": rate["kernel_1thread_float32"] / k1,
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
    print(f"\n| ms per block of {BLOCK_PATHS} paths (1 thread) | float64 | float32 |\n|---|---:|---:|")
    for k in ms["float64"]:
        print(f"| {k} | {ms['float64'][k]:.2f} | {ms['float32'][k]:.2f} |")
    doc = {"N": case.N, "T": 52, "R": 8, "repeat": args.repeat, "cells_per_s": rate, "ratios": ratios, "stage_ms_per_block": ms,
           "numpy": np.__version__}
    (HERE / "floor.json").write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
