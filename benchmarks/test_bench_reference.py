"""Per-path pure Python and simpy loops: the baselines for speedup quotes.

Each runs the same model as the engines (checked: means within 4 standard errors), on
few paths of the medium network, and records its cells per second; ``speedup`` in
``extra_info`` is the numba kernel's single-thread throughput (measured in the same run)
divided by the loop's.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import registry
from reference_loops import python_loop, simpy_loop

from peakplan.simulate import mc

CASE = registry.Case("reference", N=300, T=52, R=8, S=0, des_horizon=0.0)


@pytest.fixture(scope="module")
def kernel_rate():
    case = registry.CASES["medium"]
    work = registry.simulate(case, "numba", 1)
    best = min(_time(work.run) for _ in range(3))
    return case.cells / best


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@pytest.mark.parametrize("loop", [python_loop, simpy_loop], ids=["python", "simpy"])
def test_reference_loop(benchmark, loop, kernel_rate):
    pack = registry.pack_for(CASE)
    out = benchmark.pedantic(lambda: loop(pack, CASE.N, seed=1), rounds=3, iterations=1)
    rate = CASE.cells / benchmark.stats.stats.min
    benchmark.extra_info.update(unit="cells", throughput=rate, kernel_throughput=kernel_rate,
                                speedup=kernel_rate / rate)
    ref = mc.simulate(pack, n_paths=20_000, seed=2).metrics
    for j, f in enumerate(("cost", "lost", "fill_rate")):
        se = np.hypot(out[:, j].std() / np.sqrt(len(out)), ref[f].std() / np.sqrt(len(ref)))
        assert abs(out[:, j].mean() - ref[f].mean()) < 4 * se + 1e-12, f
