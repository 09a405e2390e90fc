"""Performance regression gate (``peakplan bench --check FILE``).

Runs a quick subset of the benchmarks in one process and turns each throughput into a
machine-independent figure by dividing it by a *calibration* measured in the same process
just before: numpy's ``Generator(SFC64).standard_normal`` drawing the same number of
normals the case draws. A figure of 1.0 means "as fast as numpy can merely draw the
random numbers this case needs". Multi-threaded cases are divided by numpy drawing on as
many threads at the same moment, so a busy neighbour on a shared machine lowers both.

``--check FILE`` fails (exit 1) when any figure falls more than ``--tolerance`` (25 %)
below the baseline in ``FILE``; ``--update FILE`` measures and writes a new baseline on
purpose (commit it with the change that justified it). Every case is timed best-of-
``repeat`` (the least disturbed run), calibration included. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["Figure", "check", "main", "measure"]

#: A figure may fall this far (fraction) below its baseline before the gate fails.
TOLERANCE = 0.25


@dataclass(frozen=True)
class Figure:
    """One gate measurement."""

    name: str
    value: float
    """Throughput / calibration (dimensionless; higher is better)."""
    throughput: float
    """Raw throughput in ``unit`` per second."""
    unit: str
    calibration: float
    """numpy normals per second drawing the case's numbers (on as many threads), same process."""


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """Fastest wall time of ``repeat`` calls of ``fn`` (seconds); used by the gate and benchmarks/."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _calibrate(normals: int, repeat: int, threads: int = 1) -> float:
    """numpy normals per second, drawing ``normals`` numbers in blocks like the simulator.

    With ``threads > 1`` the blocks are drawn on that many threads at once (numpy releases
    the GIL while it fills an array), so a figure measured on several threads is compared
    with what numpy gets from the same cores at the same moment.
    """
    from concurrent.futures import ThreadPoolExecutor

    from peakplan.rng import block_generators

    per = 2 * 52 * 8 * 1000
    nblocks = max(threads, -(-normals // per))

    def draw(w: int = 0):
        for g in block_generators(12345, w * nblocks, (w + 1) * nblocks)[::threads]:
            g.standard_normal(per)

    if threads == 1:
        return nblocks * per / best_time(draw, repeat)
    with ThreadPoolExecutor(threads) as pool:
        def run():
            for fu in [pool.submit(draw, w) for w in range(threads)]:
                fu.result()

        return threads * len(range(0, nblocks, threads)) * per / best_time(run, repeat)


def _sim_case(name: str, n: int, engine: str, threads: int, repeat: int) -> Figure:
    from peakplan.examples import synthetic_pack
    from peakplan.simulate import mc

    pack = synthetic_pack(52, 8)
    mc.simulate(pack, n_paths=min(n, 2000), seed=1, engine=engine, threads=threads)  # warm (compile)
    cells = n * pack.T * pack.R
    normals = n * pack.T * (pack.G + pack.R)
    calib = _calibrate(normals, repeat, threads)
    dt = best_time(lambda: mc.simulate(pack, n_paths=n, seed=3, engine=engine, threads=threads), repeat)
    return Figure(name, normals / dt / calib, cells / dt, "cells", calib)


def _draw_case(n: int, repeat: int) -> Figure:
    from peakplan.rng import block_generators
    from peakplan.simulate import kernel

    m = 2 * 52 * 8 * n
    kernel.draw_only(block_generators(1, 0, 1)[0], 1000)
    calib = _calibrate(m, repeat)
    buf = np.empty(1 << 16)

    def run():
        for g in block_generators(7, 0, max(1, n // 1000)):
            kernel.draw_only(g, 2 * 52 * 8 * 1000, buf)

    dt = best_time(run, repeat)
    return Figure("kernel_draw_only", m / dt / calib, m / dt, "normals", calib)


def _chain_case(n: int, repeat: int, K: int = 1) -> Figure:
    """The optimizer's hot loop: the exact chains of :mod:`peakplan.recourse` (chain-periods/s).

    ``K`` is ``max_delay``: 1 times the DP (``recourse_chains``), 2 the successive shortest
    paths (``recourse_chains_delay2``).
    """
    from peakplan.recourse import solve_chains

    T = 52
    rng = np.random.default_rng(11)
    d = rng.lognormal(np.log(100.0), 0.15, (n, T)) * np.where(np.arange(T) >= 40, 1.4, 1.0)
    c = 105.0 * rng.normal(0.96, 0.02, (n, T))
    F = np.full((n, T), 20.0)
    L = np.full((n, T), 50.0)
    solve_chains(d[:10], c[:10], F[:10], 25.0, 1.0, L[:10], K)  # warm (compile)
    calib = _calibrate(n * T, repeat)
    dt = best_time(lambda: solve_chains(d, c, F, 25.0, 1.0, L, K), repeat)
    name = "recourse_chains" if K == 1 else f"recourse_chains_delay{K}"
    return Figure(name, n * T / dt / calib, n * T / dt, "chain-periods", calib)


def _streams_case(n: int, repeat: int) -> Figure:
    """Two streams sharing each chain (``recourse_streams``): the same demand split 2:1, the second stream worth
    1.4x a unit lost, ``max_delay`` 1 (the cohort DP of :func:`peakplan.recourse.solve_flows`)."""
    from peakplan.recourse import solve_flows

    T = 52
    rng = np.random.default_rng(11)
    d = rng.lognormal(np.log(100.0), 0.15, (n, T)) * np.where(np.arange(T) >= 40, 1.4, 1.0)
    d = np.stack([d * 2 / 3, d / 3], axis=2)
    c = 105.0 * rng.normal(0.96, 0.02, (n, T, 1))
    F = np.full((n, T, 1), 20.0)
    L = np.broadcast_to(np.array([50.0, 70.0]), (n, T, 2))

    def run(k=n):
        return solve_flows(d[:k], c[:k], F[:k], 25.0, 1.0, L[:k], 1)

    run(10)  # warm (compile)
    calib = _calibrate(n * T, repeat)
    dt = best_time(run, repeat)
    return Figure("recourse_streams", n * T / dt / calib, n * T / dt, "chain-periods", calib)


def _stock_case(n: int, repeat: int) -> Figure:
    """The storable chains of :mod:`peakplan.recourse_stock` on the same chains with pre-build (``recourse_stock``):
    up to 10 built a period, room for 200, 50 in stock at the start, holding 0.5, ``max_delay`` 1."""
    from peakplan.recourse_stock import solve_stock_chains

    T = 52
    rng = np.random.default_rng(11)
    d = rng.lognormal(np.log(100.0), 0.15, (n, T)) * np.where(np.arange(T) >= 40, 1.4, 1.0)
    c = 105.0 * rng.normal(0.96, 0.02, (n, T, 1))
    F = np.full((n, T, 1), 20.0)
    L = np.full((n, T), 50.0)
    pb = np.full((n, T), 10.0)

    def run(k=n):
        return solve_stock_chains(d[:k], c[:k], F[:k], 25.0, 1.0, L[:k], 1, pb[:k], 200.0, 50.0, 0.5)

    run(10)  # warm (compile)
    calib = _calibrate(n * T, repeat)
    dt = best_time(run, repeat)
    return Figure("recourse_stock", n * T / dt / calib, n * T / dt, "chain-periods", calib)


def measure(quick: bool = False, repeat: int | None = None) -> list[Figure]:
    """Measure the gate's figures (``quick``: smaller sizes, for CI)."""
    rep = repeat or (3 if quick else 5)
    n = 10_000 if quick else 40_000
    figs = [
        _sim_case("simulate_numba_1thread", n, "numba", 1, rep),
        _sim_case("simulate_numpy", n // 5, "numpy", 1, rep),
        _draw_case(n, rep),
        _chain_case(n // 2, rep),
        _chain_case(n // 8, rep, K=2),
        _streams_case(n // 8, rep),
        _stock_case(n // 20, rep),
    ]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores >= 2:
        figs.append(_sim_case("simulate_numba_2threads", 2 * n, "numba", 2, rep))
    return figs


def check(figures: list[Figure], baseline: dict, tolerance: float = TOLERANCE) -> tuple[bool, list[str]]:
    """Compare ``figures`` with a baseline document; returns (ok, report lines)."""
    base = baseline.get("figures", {})
    lines = [f"{'figure':28s} {'baseline':>9s} {'now':>9s} {'ratio':>7s}  raw now"]
    ok = True
    for f in figures:
        if f.name not in base:
            lines.append(f"{f.name:28s} {'-':>9s} {f.value:9.4g} {'-':>7s}  (not in baseline)")
            continue
        ref = float(base[f.name]["value"])
        ratio = f.value / ref
        bad = ratio < 1.0 - tolerance
        ok &= not bad
        lines.append(f"{f.name:28s} {ref:9.4g} {f.value:9.4g} {ratio:7.2f}  {f.throughput / 1e6:7.1f} M {f.unit}/s"
                     + ("  <-- REGRESSION" if bad else ""))
    missing = sorted(set(base) - {f.name for f in figures})
    lines += [f"{name:28s} skipped on this machine" for name in missing]
    return ok, lines


def _document(figures: list[Figure], quick: bool) -> dict:
    return {
        "version": 1,
        "quick": quick,
        "tolerance": TOLERANCE,
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine(),
                    "numpy": np.__version__},
        "figures": {f.name: asdict(f) for f in figures},
    }


def main(argv: list[str] | None = None) -> int:
    """``peakplan bench``: ``--check FILE`` (gate), ``--update FILE`` (new baseline), ``--quick``."""
    ap = argparse.ArgumentParser(prog="peakplan bench", description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--check", metavar="FILE", help="fail if a figure drops > tolerance below FILE")
    group.add_argument("--update", metavar="FILE", help="measure and write FILE as the new baseline")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (CI)")
    ap.add_argument("--repeat", type=int, default=None, help="best of this many runs per figure")
    ap.add_argument("--tolerance", type=float, default=TOLERANCE, help="allowed fractional drop (0.25)")
    ap.add_argument("--json", metavar="OUT", help="also write this run's figures to OUT")
    args = ap.parse_args(argv)
    if args.check and not Path(args.check).exists():
        print(f"bench: baseline {args.check} not found; create it with `peakplan bench --update {args.check}`",
              file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    figures = measure(quick=args.quick, repeat=args.repeat)
    doc = _document(figures, args.quick)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    if args.update:
        Path(args.update).write_text(json.dumps(doc, indent=2) + "\n")
        for f in figures:
            print(f"{f.name:28s} {f.value:9.4g}  {f.throughput / 1e6:7.1f} M {f.unit}/s")
        print(f"baseline written to {args.update} ({time.perf_counter() - t0:.0f} s)")
        return 0
    if args.check:
        ok, lines = check(figures, json.loads(Path(args.check).read_text()), args.tolerance)
        print("\n".join(lines))
        verdict = "ok" if ok else f"FAILED: a figure fell more than {args.tolerance:.0%} below the baseline"
        print(f"bench gate: {verdict} ({time.perf_counter() - t0:.0f} s)")
        return 0 if ok else 1
    for f in figures:
        print(f"{f.name:28s} {f.value:9.4g}  {f.throughput / 1e6:7.1f} M {f.unit}/s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
