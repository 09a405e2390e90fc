"""The other pipeline phases, one driver each (skipped until the phase exists).

``test_bench_des.py`` and ``test_bench_optimize.py`` hold the phase owners' own, deeper
benchmarks; these are the registry's uniform drivers, so every phase shows up in one
results file with the same cases.
"""

from __future__ import annotations

import pytest
import registry

PHASES = ["load", "pack", "optimize", "des", "end_to_end"]
CASES = list(registry.CASES.values())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("phase", PHASES)
def test_phase(benchmark, phase, case):
    if phase in ("load", "pack") and case.name != "small":
        pytest.skip("load and pack read the scenario file: one size only")
    work = registry.DRIVERS[phase](case)
    benchmark.extra_info.update(case=case.name, phase=phase, unit=work.unit)
    benchmark.pedantic(work.run, rounds=3 if case.name != "large" else 1, iterations=1)
    benchmark.extra_info["throughput"] = work.units / benchmark.stats.stats.min
