"""Optimizer solve time against the SAA sample size S on the synthetic T=52, R=8 network.

The time curve of the L-shaped method (chain subproblems) to a 0.1 % gap, S from 50 to 20,000::

    .venv/bin/python benchmarks/test_bench_optimize.py --curve 50 200 1000 5000 10000 20000

The extensive form against the L-shaped method on the same sample, in the same run
(objectives, relative difference, speedup)::

    .venv/bin/python benchmarks/test_bench_optimize.py --compare 50 200

The extensive form alone (the old curve)::

    .venv/bin/python benchmarks/test_bench_optimize.py --extensive 10 25 50 100

The series network (4 sites, each picked then packed: R=8 resources in series pairs), against
the extensive form at S=50 and then at S=1,000 and 10,000::

    .venv/bin/python benchmarks/test_bench_optimize.py --series --repeat 3

The synthetic network under a lever budget of 50,000 shared with flex spend (it binds: the
plans without it spend about 55,800), against the extensive form at S=50 and then at S=1,000
and 10,000 (each solve stopped at 300 s)::

    .venv/bin/python benchmarks/test_bench_optimize.py --budget --repeat 3

The synthetic network with ``max_delay`` 2 (a unit may wait two periods; chains solved by
successive shortest paths), against the extensive form at S=50 and then at S=1,000 and 10,000::

    .venv/bin/python benchmarks/test_bench_optimize.py --delay --repeat 3

Two segments on every resource (G=16 on R=8; each pair one chain with two streams), against the
extensive form at S=50 and then at S=1,000 and 10,000::

    .venv/bin/python benchmarks/test_bench_optimize.py --shared --repeat 3

Every segment storable (pre-build: room for two periods of its mean capacity, holding 0.5 a
unit and period, half a period's capacity in stock at the start; chains solved as min-cost
flows), against the extensive form at S=50 and then at S=1,000 and 10,000::

    .venv/bin/python benchmarks/test_bench_optimize.py --storage --repeat 3

The shared network with the first segment on every resource storable (pre-build as above, in
its own units; the second segment, half a unit of the resource per unit, cannot be stored:
one chain per resource, a stock and a stream), against the extensive form at S=50 and then at
S=1,000 and 10,000::

    .venv/bin/python benchmarks/test_bench_optimize.py --shared_storage --repeat 3

The retail scenario (its budget shared with overtime) at its own sample size S=300 (seed 7),
extensive form against the L-shaped method at a 1e-6 gap::

    .venv/bin/python benchmarks/test_bench_optimize.py --retail 300

``--curve``, ``--compare``, ``--series``, ``--budget``, ``--delay``, ``--shared``, ``--storage`` and
``--shared_storage`` also write
``benchmarks/optimize_<mode>.json`` (``optimize_curve.json``, ``optimize_compare.json``, ...). Every time is the median of ``--repeat`` runs (default
1 for the long ones) after one warm-up solve that compiles the numba chain solver; the
solve runs on one core (HiGHS ``threads=1``, the chain solver single-threaded).
"""

import importlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from peakplan import benders, examples
from peakplan.pack import Variant
from peakplan.simulate import mc

opt = importlib.import_module("peakplan.optimize")  # the module; `peakplan.optimize` is the function

#: the synthetic pack's Plan A/B/C (examples.DEFAULT_VARIANTS): expected fill >= 95 %, fill >= 95 % on 90 % of
#: paths (CVaR surrogate), R-U CVaR95 bound on lost units beyond 5 %
PLANS = examples.DEFAULT_VARIANTS
LEAN = PLANS[0]
#: an expected fill target close to the most the network can serve: the service constraint binds
TIGHT = Variant("A", "tight", "expected", 0.99995)
#: a CVaR95 bound that binds
TIGHT_CVAR = Variant("C", "resilient-tight", "cvar", 0.9995, level=0.95)
HERE = Path(__file__).parent
#: a lever budget that binds on the synthetic T=52, R=8 network (its plans spend about 55,800 without it)
BUDGET = 50_000.0


def _pack(T: int = 52, R: int = 8, network: str = "synthetic"):
    """The synthetic network (one resource per segment), its series form (R/2 sites, each picked then packed),
    under a binding budget, with ``max_delay`` 2 (``delay``), two segments on every resource (``shared``) or
    every segment storable (``storage``), or the shared network with its first segment on every resource
    storable (``shared_storage``)."""
    if network == "delay":
        return examples.synthetic_pack(T=T, R=R).replace(max_delay=2)
    if network in ("shared", "shared_storage"):  # two segments on every resource, the second half a unit of it
        pack = examples.synthetic_pack(T=T, R=R, G=2 * R)
        load = pack.load.copy()
        load[R:] *= 0.5
        pen = pack.penalty.copy()
        pen[R:] *= 0.7
        pack = pack.replace(load=load, backlog_cost=pack.arr("backlog_cost") * load.sum(axis=1),
                            base_capacity=pack.base_capacity * 0.75, penalty=pen)
        if network == "shared":
            return pack
        mean = np.concatenate([pack.base_capacity.mean(axis=0), np.zeros(R)])  # the first segment: room for 2 periods
        return pack.replace(storable=np.arange(2 * R) < R, storage_cap=2 * mean, holding_cost=np.full(2 * R, 0.5),
                            initial_stock=0.5 * mean)
    if network == "series":
        return examples.series_pack(T=T, G=R // 2)
    if network == "storage":  # every segment storable: room for two periods, half a period in stock at the start
        pack = examples.synthetic_pack(T=T, R=R)
        mean = pack.base_capacity.mean(axis=0)
        return pack.replace(storable=np.ones(pack.G, bool), storage_cap=2 * mean, holding_cost=np.full(pack.G, 0.5),
                            initial_stock=0.5 * mean)
    if network == "budget":
        return examples.synthetic_pack(T=T, R=R).replace(budget=BUDGET)
    return examples.synthetic_pack(T=T, R=R)


def warm_up() -> None:
    """Compile (or load from cache) the numba chain solvers before anything is timed."""
    for network in ("synthetic", "storage"):
        pack = _pack(6, 2, network)
        benders.solve_benders(pack, mc.sample_paths(pack, 3, 0), LEAN, None, tol=1e-3)


def solve_once(S: int, T: int = 52, R: int = 8, variant: Variant = LEAN) -> dict:
    """The extensive form (pulp build + HiGHS solve)."""
    pack = _pack(T, R)
    draws = mc.sample_paths(pack, S, 1)
    t0 = time.perf_counter()
    m = opt.build_model(pack, draws, variant, pack.budget)
    built = time.perf_counter() - t0
    res = opt.solve(m, pack)
    return {"S": S, "T": T, "R": R, "build_s": built, "solve_s": res.seconds, "total_s": built + res.seconds,
            "status": str(res.status), "objective": res.objective, "variables": len(m.prob.variables())}


def benders_once(S: int, T: int = 52, R: int = 8, tol: float = 1e-3, variant: Variant = LEAN,
                 repeat: int = 1, network: str = "synthetic", time_limit: float | None = None) -> dict:
    """The L-shaped method with chain subproblems to relative gap ``tol``: median of ``repeat`` solves."""
    pack = _pack(T, R, network)
    draws = mc.sample_paths(pack, S, 1)
    times, res, info = [], None, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        res, info = benders.solve_benders(pack, draws, variant, pack.budget, tol=tol, time_limit=time_limit)
        times.append(time.perf_counter() - t0)
    return {"S": S, "T": T, "R": R, "network": network, "variant": variant.label, "service": variant.service, "tol": tol,
            "seconds": statistics.median(times),
            "runs": times, "status": str(res.status), "objective": res.objective, "gap": res.gap,
            "lower_bound": info["lower_bound"], "iterations": info["iterations"],
            "oracle_calls": info["oracle_calls"], "clusters": info["clusters"], "lp_fallbacks": info["lp_fallbacks"],
            "subproblem": info["subproblem"], "budget": pack.budget, "flex_spend": info["flex_spend"],
            "stock_chains": info.get("stock_chains", 0), "warm_starts": info.get("warm_starts", 0)}


def compare_once(S: int, T: int = 52, R: int = 8, tol: float = 1e-7, variant: Variant = LEAN,
                 network: str = "synthetic") -> dict:
    """Extensive form and L-shaped method on the same sample: objectives, agreement, speedup."""
    pack = _pack(T, R, network)
    draws = mc.sample_paths(pack, S, 1)
    t0 = time.perf_counter()
    ext = opt.solve(opt.build_model(pack, draws, variant, pack.budget), pack)
    t_ext = time.perf_counter() - t0
    t0 = time.perf_counter()
    ben, info = benders.solve_benders(pack, draws, variant, pack.budget, tol=tol)
    t_ben = time.perf_counter() - t0
    return {"S": S, "network": network, "variant": variant.label, "service": variant.service, "target": variant.target,
            "extensive_s": t_ext, "benders_s": t_ben,
            "speedup": t_ext / t_ben, "extensive_objective": ext.objective, "benders_objective": ben.objective,
            "relative_difference": (ben.objective - ext.objective) / abs(ext.objective),
            "benders_lower_bound": info["lower_bound"], "benders_iterations": info["iterations"],
            "benders_gap": ben.gap, "status": f"{ext.status}/{ben.status}"}


@pytest.mark.parametrize("S", [10, 50])
def test_bench_optimize_extensive_form(benchmark, S):
    out = benchmark.pedantic(solve_once, args=(S,), rounds=1, iterations=1)
    benchmark.extra_info.update(out)
    assert out["status"] == "optimal"


@pytest.mark.parametrize("network", ["synthetic", "delay", "shared", "storage"])
@pytest.mark.parametrize("S", [1000])
def test_bench_optimize_benders_scale(benchmark, S, network):
    warm_up()
    out = benchmark.pedantic(benders_once, args=(S,), kwargs={"network": network}, rounds=1, iterations=1)
    benchmark.extra_info.update(out)
    assert out["status"] == "optimal" and out["gap"] <= 1e-3


def test_bench_optimize_extensive_vs_benders(benchmark):
    warm_up()
    out = benchmark.pedantic(compare_once, args=(50,), rounds=1, iterations=1)
    benchmark.extra_info.update(out)
    assert out["status"] == "optimal/optimal"
    assert abs(out["relative_difference"]) <= 1e-6


def _write(name: str, rows: list) -> None:
    path = HERE / name
    path.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    repeat = 1
    if "--repeat" in args:
        i = args.index("--repeat")
        repeat = int(args[i + 1])
        del args[i:i + 2]
    mode = args[0] if args and args[0].startswith("--") else "--curve"
    sizes = [int(x) for x in args[1:]] if args and args[0].startswith("--") else [int(x) for x in args]
    if mode == "--extensive":
        for S in sizes or [10, 25, 50, 100]:
            print(solve_once(S), flush=True)
        sys.exit(0)
    warm_up()
    rows = []
    if mode == "--compare":
        for S in sizes or [50, 200]:
            for variant in (*PLANS, TIGHT):
                rows.append(compare_once(S, variant=variant))
                print(rows[-1], flush=True)
        _write("optimize_compare.json", rows)
    elif mode == "--series":  # 4 sites picked then packed (R=8): against the extensive form, then the scale points
        for S in (50,):
            for variant in PLANS:
                rows.append(compare_once(S, variant=variant, network="series"))
                print(rows[-1], flush=True)
        for S in sizes or [1000, 10000]:
            for variant in PLANS:
                rows.append(benders_once(S, variant=variant, repeat=repeat if S <= 2000 else 1, network="series"))
                print(rows[-1], flush=True)
        _write("optimize_series.json", rows)
    elif mode in ("--delay", "--budget", "--shared", "--storage", "--shared_storage"):
        # max_delay 2, a binding budget shared with flex spend, two segments on every resource or pre-build:
        # against the extensive form at S=50, then at
        # the scale points (each solve stopped at 300 s)
        network = mode[2:]
        for variant in PLANS:
            rows.append(compare_once(50, variant=variant, network=network))
            print(rows[-1], flush=True)
        for S in sizes or [1000, 10000]:
            for variant in PLANS:
                rows.append(benders_once(S, variant=variant, repeat=repeat if S <= 2000 else 1, network=network,
                                         time_limit=300))
                print(rows[-1], flush=True)
        _write(f"optimize_{network}.json", rows)
    elif mode == "--retail":  # the retail scenario: extensive form against the L-shaped method, same sample
        from peakplan.compile import build_pack

        retail = build_pack(HERE.parent / "scenarios" / "retail_peak.yaml")
        for S in sizes or [300]:
            draws = mc.sample_paths(retail, S, 7)
            for variant in retail.variants:
                t0 = time.perf_counter()
                ext = opt.solve(opt.build_model(retail, draws, variant, retail.budget), retail)
                t_ext = time.perf_counter() - t0
                t0 = time.perf_counter()
                ben, info = benders.solve_benders(retail, draws, variant, retail.budget, tol=1e-6)
                t_ben = time.perf_counter() - t0
                rows.append({"S": S, "variant": variant.label, "service": variant.service, "extensive_s": t_ext,
                             "benders_s": t_ben, "extensive_objective": ext.objective,
                             "benders_objective": ben.objective, "subproblem": info["subproblem"],
                             "relative_difference": (ben.objective - ext.objective) / abs(ext.objective),
                             "benders_iterations": info["iterations"], "status": f"{ext.status}/{ben.status}"})
                print(rows[-1], flush=True)
    elif mode == "--curve":
        for S in sizes or [50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]:
            for variant in (*PLANS, TIGHT, TIGHT_CVAR):
                rows.append(benders_once(S, variant=variant, repeat=repeat if S <= 2000 else 1))
                print(rows[-1], flush=True)
        _write("optimize_curve.json", rows)
    else:
        sys.exit(f"unknown mode {mode}; use --curve, --compare, --series, --budget, --delay, --shared, --storage, "
                 "--shared_storage, --retail or --extensive")
