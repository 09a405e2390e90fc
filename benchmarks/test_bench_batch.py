"""Batch runner: process-pool speedup and the Dask path's per-task overhead.

Two measurements, both taken in one process so the ratios are comparable (the machine is
shared; absolute seconds drift between runs):

* **Speedup**: the same 40 small retail cases (a 5 x 2 x 4 sweep over uplift, budget and a
  lever's lead time; 2,000 paths each, discrete-event model on) run as a batch on 1 worker
  process and on 2, alternately, ``ROUNDS`` times each; speedup = best 1-worker wall time /
  best 2-worker wall time. Wall time includes starting the pool, materialising inputs,
  the ledger and the summary: everything ``peakplan batch`` does. Both summaries must be
  identical. Target: >= 1.7x on 2 cores.
* **Dask overhead**: a trivial task (``operator.add``) called directly, through a
  ``ProcessPoolExecutor`` and through a Dask ``LocalCluster`` (2 worker processes): the
  round-trip latency of one task (submit, wait) and the amortised cost per task when
  ``N_TASKS`` are submitted at once; plus the cluster's start-up time.

Run either way::

    .venv/bin/python benchmarks/test_bench_batch.py            # prints JSON (~3 min on 2 cores)
    .venv/bin/python -m pytest benchmarks/test_bench_batch.py -q -s
"""

from __future__ import annotations

import json
import multiprocessing as mp
import operator
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
N_CASES = 40
PATHS = 2000
ROUNDS = 3
N_TASKS = 500
LATENCY_TASKS = 50
TARGET_SPEEDUP = 1.7


def make_sweep(folder: Path) -> Path:
    """A 5 x 2 x 4 = 40-case sweep over the retail scenario."""
    spec = {
        "name": "bench_batch",
        "base": str(ROOT / "scenarios" / "retail_peak.yaml"),
        "grid": {
            "events.black_friday_cyber_week.uplift.mode": {"name": "uplift", "values": [1.4, 1.5, 1.6, 1.7, 1.8]},
            "constraints.budget": {"name": "budget", "values": [300000, 450000]},
            "levers.temp_pickers_east.lead_time": {"name": "lead", "values": [1, 2, 3, 4]},
        },
    }
    path = folder / "bench_sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def measure_speedup(rounds: int = ROUNDS, paths: int = PATHS) -> dict:
    """Best wall time of the 40-case batch on 1 and on 2 worker processes, alternating."""
    import pandas as pd

    from peakplan import batch

    times: dict[int, list[float]] = {1: [], 2: []}
    summaries = {}
    with tempfile.TemporaryDirectory() as tmp:
        sweep = make_sweep(Path(tmp))
        assert len(batch.plan_batch([sweep])) == N_CASES
        for r in range(rounds):
            for w in (1, 2):
                out = Path(tmp) / f"w{w}-r{r}"
                t = time.perf_counter()
                res = batch.run_batch([sweep], out, paths=paths, workers=w, progress=False)
                times[w].append(time.perf_counter() - t)
                assert res.exit_code == 0, res.failed
                summaries[w] = res.summary
        pd.testing.assert_frame_equal(summaries[1], summaries[2])
    best1, best2 = min(times[1]), min(times[2])
    return {"n_cases": N_CASES, "paths": paths, "rounds": rounds, "wall_s_1_worker": times[1],
            "wall_s_2_workers": times[2], "per_case_s_1_worker": best1 / N_CASES, "speedup": best1 / best2}


def _latency(submit, n: int = LATENCY_TASKS) -> float:
    t = time.perf_counter()
    for i in range(n):
        submit(operator.add, i, 1).result()
    return (time.perf_counter() - t) / n


def _amortised(submit, n: int = N_TASKS) -> float:
    t = time.perf_counter()
    futs = [submit(operator.add, i, 1) for i in range(n)]
    assert [f.result() for f in futs] == [i + 1 for i in range(n)]
    return (time.perf_counter() - t) / n


def measure_dask_overhead() -> dict:
    """Seconds per trivial task: direct call, process pool, Dask LocalCluster (2 workers)."""
    from distributed import Client, LocalCluster

    t = time.perf_counter()
    for i in range(100_000):
        operator.add(i, 1)
    direct = (time.perf_counter() - t) / 100_000
    with ProcessPoolExecutor(2, mp_context=mp.get_context("forkserver")) as ex:
        ex.submit(operator.add, 0, 0).result()  # start the workers
        pool_latency, pool_amortised = _latency(ex.submit), _amortised(ex.submit)
    t = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        start = time.perf_counter() - t

        def submit(fn, *args):
            return client.submit(fn, *args, pure=False)

        submit(operator.add, 0, 0).result()
        dask_latency, dask_amortised = _latency(submit), _amortised(submit)
    return {"direct_call_s": direct, "process_pool_latency_s": pool_latency,
            "process_pool_amortised_s": pool_amortised, "dask_cluster_start_s": start,
            "dask_latency_s": dask_latency, "dask_amortised_s": dask_amortised, "n_tasks": N_TASKS}


def test_batch_speedup_two_workers(benchmark):
    res = benchmark.pedantic(measure_speedup, rounds=1, iterations=1)
    benchmark.extra_info.update(res)
    print(json.dumps(res, indent=1))
    assert res["speedup"] >= TARGET_SPEEDUP, res


def test_dask_per_task_overhead(benchmark):
    res = benchmark.pedantic(measure_dask_overhead, rounds=1, iterations=1)
    benchmark.extra_info.update(res)
    print(json.dumps(res, indent=1))
    # a batch case takes seconds: a few milliseconds of scheduling per case is noise
    assert res["dask_latency_s"] < 0.05 and res["dask_amortised_s"] < 0.01, res


if __name__ == "__main__":
    what = sys.argv[1:] or ["speedup", "dask"]
    out = {}
    if "dask" in what:
        out["dask_overhead"] = measure_dask_overhead()
    if "speedup" in what:
        out["speedup"] = measure_speedup()
    print(json.dumps(out, indent=1))
