"""Monte Carlo throughput: the fused numba kernel, the numpy reference, and their floors.

Cells per second, a cell being one (path, period, resource). ``draw_numpy`` (numpy drawing
the same normals) and ``draw_kernel`` (the same normals drawn in a compiled loop) are the
floors the kernel is measured against; ``benchmarks/floor.py`` quotes the ratios at N=1e6.
"""

from __future__ import annotations

import pytest
import registry

CASES = list(registry.CASES.values())
ROUNDS = {"small": 5, "medium": 3, "large": 2}


def _bench(benchmark, case, work):
    benchmark.extra_info.update(case=case.name, N=case.N, T=case.T, R=case.R, unit=work.unit)
    benchmark.pedantic(work.run, rounds=ROUNDS[case.name], iterations=1, warmup_rounds=0)
    benchmark.extra_info["throughput"] = work.units / benchmark.stats.stats.min


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("threads", [1, 2])
def test_simulate_numba(benchmark, case, threads):
    _bench(benchmark, case, registry.simulate(case, "numba", threads))


@pytest.mark.parametrize("case", CASES[:2], ids=lambda c: c.name)
def test_simulate_numpy_reference(benchmark, case):
    _bench(benchmark, case, registry.simulate(case, "numpy"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_simulate_aggregates_only(benchmark, case):
    _bench(benchmark, case, registry.simulate(case, "numba", 1, keep_paths=False))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_floor_draw_numpy(benchmark, case):
    _bench(benchmark, case, registry.draw_numpy(case))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_floor_draw_kernel(benchmark, case):
    _bench(benchmark, case, registry.draw_kernel(case))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_simulate_numba_float32(benchmark, case):
    """The kernel with ``dtype="float32"`` transforms and recurrence (one thread)."""
    from peakplan.simulate import mc

    p = registry.pack_for(case)
    mc.simulate(p, n_paths=1000, seed=1, threads=1, dtype="float32")  # compile / warm
    work = registry.Work(lambda: mc.simulate(p, n_paths=case.N, seed=3, threads=1, dtype="float32"),
                         case.cells, "cells")
    _bench(benchmark, case, work)
