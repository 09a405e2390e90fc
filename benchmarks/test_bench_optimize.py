"""Optimizer solve time against the SAA sample size S on the synthetic T=52, R=8 network.

Run alone for the time curve:  .venv/bin/python benchmarks/test_bench_optimize.py
"""

import importlib
import sys
import time

import pytest

from peakplan import examples
from peakplan.pack import Variant
from peakplan.simulate import mc

opt = importlib.import_module("peakplan.optimize")  # the module; `peakplan.optimize` is the function

LEAN = Variant("A", "lean", "expected", 0.95)


def solve_once(S: int, T: int = 52, R: int = 8) -> dict:
    pack = examples.synthetic_pack(T=T, R=R)
    draws = mc.sample_paths(pack, S, 1)
    t0 = time.perf_counter()
    m = opt.build_model(pack, draws, LEAN, pack.budget)
    built = time.perf_counter() - t0
    res = opt.solve(m, pack)
    return {"S": S, "T": T, "R": R, "build_s": built, "solve_s": res.seconds, "total_s": built + res.seconds,
            "status": str(res.status), "objective": res.objective, "variables": len(m.prob.variables())}


@pytest.mark.parametrize("S", [10, 50])
def test_bench_optimize_extensive_form(benchmark, S):
    out = benchmark.pedantic(solve_once, args=(S,), rounds=1, iterations=1)
    benchmark.extra_info.update(out)
    assert out["status"] == "optimal"


if __name__ == "__main__":
    sizes = [int(x) for x in sys.argv[1:]] or [10, 25, 50, 100, 200]
    for S in sizes:
        print(solve_once(S), flush=True)
