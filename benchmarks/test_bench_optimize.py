"""Optimizer solve time against the SAA sample size S on the synthetic T=52, R=8 network.

Run alone for the time curve:  .venv/bin/python benchmarks/test_bench_optimize.py [S ...]
Extensive form against Benders:  .venv/bin/python benchmarks/test_bench_optimize.py --compare 10 50
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


def compare_once(S: int, T: int = 52, R: int = 8, tol: float = 1e-7, time_limit: float = 120.0) -> dict:
    """Extensive form and multi-cut L-shaped on the same sample: objectives, agreement, speedup."""
    pack = examples.synthetic_pack(T=T, R=R)
    draws = mc.sample_paths(pack, S, 1)
    t0 = time.perf_counter()
    ext = opt.solve(opt.build_model(pack, draws, LEAN, pack.budget), pack)
    t_ext = time.perf_counter() - t0
    t0 = time.perf_counter()
    ben, info = opt.solve_benders(pack, draws, LEAN, pack.budget, tol=tol, time_limit=time_limit)
    t_ben = time.perf_counter() - t0
    return {"S": S, "extensive_s": t_ext, "benders_s": t_ben, "speedup": t_ext / t_ben,
            "extensive_objective": ext.objective, "benders_objective": ben.objective,
            "relative_difference": (ben.objective - ext.objective) / abs(ext.objective),
            "benders_iterations": info["iterations"], "benders_gap": ben.gap,
            "status": f"{ext.status}/{ben.status}"}


@pytest.mark.parametrize("S", [10, 50])
def test_bench_optimize_extensive_vs_benders(benchmark, S):
    out = benchmark.pedantic(compare_once, args=(S,), rounds=1, iterations=1)
    benchmark.extra_info.update(out)
    # Benders is experimental and may stop at its time limit: the agreement is recorded only
    assert out["status"].startswith("optimal/")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--compare"]:
        for S in [int(x) for x in sys.argv[2:]] or [10, 50]:
            print(compare_once(S), flush=True)
        sys.exit(0)
    sizes = [int(x) for x in sys.argv[1:]] or [10, 25, 50, 100, 200]
    for S in sizes:
        print(solve_once(S), flush=True)
