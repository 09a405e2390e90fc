"""Discrete-event core: speed against a bare simpy M/M/c loop, and a long Erlang C check.

Run with ``make bench`` (``benchmarks/`` is not collected by ``make test``), or just this
file: ``.venv/bin/python -m pytest benchmarks/test_bench_des.py -q``.

Speed is measured in *customers simulated per second* (one arrival event per customer):
both models simulate the same M/M/c queue, so customers per second is the fair unit.
The bare loop is the textbook simpy model - an arrival generator process plus one process
per customer holding a ``simpy.Resource``, with ``random.expovariate`` draws - and it needs
about six simpy events per customer; ``run_station`` needs about two (see the
``peakplan.simulate.des`` module notes) and also builds records and statistics. Events
per second are measured too (a counting ``simpy.Environment`` subclass), to show how much
of the gain is fewer events and how much is cheaper events.

The peak-day model in plan scoring (:func:`peakplan.simulate.peak.peak_service`) must
finish the retail scenario (6 stations, 3 plans + baseline, top 2 + 2 sampled periods)
within :data:`RETAIL_DES_BUDGET_S` on one core.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pytest
import simpy

from peakplan import queueing
from peakplan.simulate import des
from peakplan.simulate.des import run_station

ROOT = Path(__file__).resolve().parents[1]

# The Erlang C call-centre case (shared/reference/erlang_c_call_centre_10_erlangs.json):
# 100 calls per 1800 s, AHT 180 s, 14 agents.
LAM, AHT, AGENTS = 100 / 1800, 180.0, 14
SPEED_CUSTOMERS = 300_000
#: run_station must simulate at least 1 / 1.5 of the bare loop's customers per second.
MIN_SPEED_RATIO = 1 / 1.5
#: Seconds the retail scenario's DES part may take on one core at default settings.
RETAIL_DES_BUDGET_S = 10.0


def bare_simpy_mmc(arrival_rate: float, service_rate: float, servers: int, customers: int,
                   seed: int) -> int:
    """A minimal simpy M/M/c: returns the number of customers served."""
    rnd = random.Random(seed)
    env = simpy.Environment()
    desk = simpy.Resource(env, capacity=servers)
    done = 0

    def customer():
        nonlocal done
        with desk.request() as req:
            yield req
            yield env.timeout(rnd.expovariate(service_rate))
        done += 1

    def source():
        for _ in range(customers):
            yield env.timeout(rnd.expovariate(arrival_rate))
            env.process(customer())

    env.process(source())
    env.run()
    return done


def _run_station_once() -> int:
    res = run_station(LAM, AGENTS, AHT, SPEED_CUSTOMERS / LAM, seed=1, replications=1)
    return int(res.per_replication["customers"][0])


def _best_of(fn, rounds: int = 3) -> tuple[float, int]:
    best, out = float("inf"), 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def test_bench_bare_simpy_mmc(benchmark):
    served = benchmark.pedantic(
        bare_simpy_mmc, args=(LAM, 1 / AHT, AGENTS, SPEED_CUSTOMERS, 1), rounds=3, iterations=1
    )
    assert served == SPEED_CUSTOMERS
    benchmark.extra_info["customers"] = SPEED_CUSTOMERS
    benchmark.extra_info["customers_per_s"] = SPEED_CUSTOMERS / benchmark.stats["min"]


def test_bench_run_station_mmc(benchmark):
    customers = benchmark.pedantic(_run_station_once, rounds=3, iterations=1)
    ours = customers / benchmark.stats["min"]
    bare_s, served = _best_of(lambda: bare_simpy_mmc(LAM, 1 / AHT, AGENTS, SPEED_CUSTOMERS, 1))
    bare = served / bare_s
    ratio = ours / bare
    benchmark.extra_info.update({
        "customers": customers,
        "customers_per_s": ours,
        "bare_simpy_customers_per_s": bare,
        "speed_ratio_vs_bare_simpy": ratio,
    })
    print(f"\nrun_station {ours:,.0f} customers/s; bare simpy {bare:,.0f} customers/s; "
          f"ratio {ratio:.2f}")
    assert ratio >= MIN_SPEED_RATIO


class _CountingEnvironment(simpy.Environment):
    """A ``simpy.Environment`` that counts the events it processes."""

    steps = 0

    def step(self) -> None:
        _CountingEnvironment.steps += 1
        super().step()


def _events(fn) -> tuple[int, int]:
    """(events processed, result) of ``fn()`` with both models on the counting environment."""
    saved = simpy.Environment
    des.simpy.Environment = _CountingEnvironment  # the same module object as ``simpy`` here
    _CountingEnvironment.steps = 0
    try:
        out = fn()
    finally:
        des.simpy.Environment = saved
    return _CountingEnvironment.steps, out


def test_bench_events_per_second_against_bare_simpy(benchmark):
    """Customers/s and events/s of run_station against the bare loop (same M/M/c)."""
    ev_ours, customers = _events(_run_station_once)
    ev_bare, served = _events(lambda: bare_simpy_mmc(LAM, 1 / AHT, AGENTS, SPEED_CUSTOMERS, 1))
    benchmark.pedantic(_run_station_once, rounds=3, iterations=1)
    ours_s = benchmark.stats["min"]
    bare_s, _ = _best_of(lambda: bare_simpy_mmc(LAM, 1 / AHT, AGENTS, SPEED_CUSTOMERS, 1))
    info = {
        "events_per_customer": ev_ours / customers, "bare_events_per_customer": ev_bare / served,
        "events_per_s": ev_ours / ours_s, "bare_events_per_s": ev_bare / bare_s,
        "customers_per_s": customers / ours_s, "bare_customers_per_s": served / bare_s,
    }
    info["customers_per_s_ratio"] = info["customers_per_s"] / info["bare_customers_per_s"]
    info["events_per_s_ratio"] = info["events_per_s"] / info["bare_events_per_s"]
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k} {v:,.2f}" for k, v in info.items()))
    assert info["events_per_customer"] < 2.1 and info["bare_events_per_customer"] > 5.9


def _retail_plans():
    from peakplan.compile import build_pack
    from peakplan.loaders import load_scenario
    from peakplan.simulate import mc

    pack = build_pack(load_scenario(ROOT / "scenarios" / "retail_peak.yaml"))
    base = mc.plan_inputs(pack)
    plans = {"baseline": base}
    for name, share in (("A", 0.3), ("B", 0.6), ("C", 1.0)):  # reserve and flex at a share of quota
        levels = base.levels.copy()
        for i, lever in enumerate(pack.levers):
            if lever.kind in ("reserve", "flex"):
                levels[i, 6:14] = np.maximum(levels[i, 6:14], share * lever.quota)
        plans[name] = mc.plan_inputs(pack, levels)
    return pack, plans


def test_bench_peak_service_retail(benchmark):
    """The DES part of scoring the retail scenario, one core, default DES settings."""
    from peakplan.simulate.peak import peak_service

    pack, plans = _retail_plans()
    res = benchmark.pedantic(peak_service, args=(pack, plans), kwargs={"n_paths": 20_000, "seed": 42},
                             rounds=3, iterations=1)
    days = res.days
    customers = float(((days["demand"] + days["carried"]) * days["scale"]).sum())
    best = benchmark.stats["min"]
    benchmark.extra_info.update({"station_days": len(days), "customers": customers,
                                 "customers_per_s": customers / best, "seconds": best})
    print(f"\npeak_service retail: {len(days)} station-days, {customers:,.0f} customers in {best:.2f} s "
          f"({customers / best:,.0f} customers/s)\n{res.table.to_string()}")
    assert len(res.table) == 4 and (res.table["n_days"] == 6 * 4).all()
    assert (res.table["fluid_gap"].abs() < 0.02).all()  # throughput agrees; waits decide fluid_ok
    assert best < RETAIL_DES_BUDGET_S


def _reference() -> dict | None:
    here = Path(__file__).resolve()
    for base in (here.parents[1], here.parents[2] / "shared", here.parents[2]):
        path = base / "reference" / "erlang_c_call_centre_10_erlangs.json"
        if path.exists():
            return json.loads(path.read_text())
    return None


@pytest.mark.parametrize("case", ["des_check_N14"])
def test_bench_erlang_c_two_million_customers(benchmark, case):
    """Over 2M customers at 14 agents against the reference's DES and closed-form numbers."""
    ref = _reference()
    check = (ref["expected"][case] if ref else
             {"mean_wait_seconds": 7.836448413876626, "P_wait": 0.17396777777777778,
              "customers": 2_000_000, "warmup_frac": 0.1})
    reps = 10
    horizon = check["customers"] / LAM / reps
    kwargs = {"replications": reps, "warmup": check["warmup_frac"] * horizon, "workers": 2,
              "keep_records": False}
    res = benchmark.pedantic(run_station, args=(LAM, AGENTS, AHT, horizon, 1), kwargs=kwargs,
                             rounds=1, iterations=1)
    simulated = int(res.per_replication["customers"].sum())
    assert simulated > 1_000_000
    traffic = LAM * AHT
    assert res.mean_wait.mean == pytest.approx(check["mean_wait_seconds"], rel=0.05)
    assert res.p_wait.mean == pytest.approx(check["P_wait"], rel=0.05)
    assert res.mean_wait.mean == pytest.approx(queueing.asa(AGENTS, traffic, AHT), rel=0.05)
    assert res.p_wait.mean == pytest.approx(queueing.erlang_c(AGENTS, traffic), rel=0.05)
    benchmark.extra_info.update({
        "customers": simulated,
        "customers_per_s": simulated / benchmark.stats["min"],
        "mean_wait": res.mean_wait.mean, "mean_wait_half_width": res.mean_wait.half_width,
        "p_wait": res.p_wait.mean, "p_wait_half_width": res.p_wait.half_width,
    })


@pytest.mark.parametrize(("agents", "customers"), [(13, 1_600_000), (14, 2_100_000),
                                                   (15, 3_000_000)])
def test_bench_erlang_c_plain_estimators(benchmark, agents, customers):
    """The former ``make test`` Erlang C check: plain estimators only, 1.6M to 3M customers.

    ``tests/test_des.py`` now checks the same targets with 1M customers using the
    variance-reduced estimators; this long run keeps the plain ASA and SL estimators (5%
    is about 2.4 of their standard errors here) tested, and records all of them.
    """
    reps = 8
    horizon = customers / LAM / reps
    kwargs = {"replications": reps, "warmup": 0.02 * horizon, "workers": 2}
    res = benchmark.pedantic(run_station, args=(LAM, agents, AHT, horizon, 2024), kwargs=kwargs,
                             rounds=1, iterations=1)
    traffic = LAM * AHT
    estimates = {
        "p_wait": (res.p_wait, queueing.erlang_c(agents, traffic)),
        "asa": (res.mean_wait, queueing.asa(agents, traffic, AHT)),
        "asa_cv": (res.mean_wait_cv(), queueing.asa(agents, traffic, AHT)),
        "sl20": (res.service_level(20.0), queueing.service_level(agents, traffic, AHT, 20.0)),
        "sl20_cv": (res.service_level_cv(20.0),
                    queueing.service_level(agents, traffic, AHT, 20.0)),
    }
    for name, (est, exact) in estimates.items():
        assert est.mean == pytest.approx(exact, rel=0.05), name
        benchmark.extra_info[name] = est.mean
        benchmark.extra_info[f"{name}_half_width"] = est.half_width
    benchmark.extra_info["customers"] = int(res.per_replication["customers"].sum())
