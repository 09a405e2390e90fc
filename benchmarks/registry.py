"""Benchmark registry: named cases and one driver per pipeline phase.

A *case* fixes the problem size: ``N`` Monte Carlo paths, ``T`` periods, ``R`` resources
(one segment per resource, :func:`peakplan.examples.synthetic_pack`), ``S`` LP sample paths,
and the scenario file for the phases that read files. A *driver* turns a case into a
zero-argument callable that runs one phase once, plus the work it does (for throughput).

Drivers import their phase lazily: a phase whose module or function does not exist yet
(the optimizer, for one) makes :func:`require` skip the benchmark cleanly instead of
failing the whole run. ``make bench`` runs every driver on every case; ``peakplan bench``
(the CI gate, :mod:`peakplan.bench`) runs a quick subset.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "retail_peak.yaml"


@dataclass(frozen=True)
class Case:
    """One benchmark size."""

    name: str
    N: int
    """Monte Carlo paths."""
    T: int
    """Periods."""
    R: int
    """Resources (= segments)."""
    S: int
    """Sample paths in the SAA LP."""
    des_horizon: float
    """Simulated time units of the DES station (arrival rate 1)."""

    @property
    def cells(self) -> int:
        """(path, period, resource) cells one simulation touches."""
        return self.N * self.T * self.R


CASES = {
    "small": Case("small", N=2_000, T=13, R=2, S=50, des_horizon=2_000.0),
    "medium": Case("medium", N=20_000, T=52, R=8, S=200, des_horizon=20_000.0),
    "large": Case("large", N=200_000, T=52, R=8, S=1_000, des_horizon=200_000.0),
}


@dataclass(frozen=True)
class Work:
    """A phase ready to run once, and how much work one run is."""

    run: Callable[[], object]
    units: float
    unit: str


def require(module: str, attr: str):
    """``module.attr``, or skip the benchmark if either does not exist yet."""
    mod = pytest.importorskip(module)
    if not hasattr(mod, attr):
        pytest.skip(f"{module}.{attr} not available yet")
    return getattr(mod, attr)


def pack_for(case: Case):
    from peakplan.examples import synthetic_pack

    return synthetic_pack(T=case.T, R=case.R)


# -- drivers, one per phase ------------------------------------------------------------
def load(case: Case) -> Work:
    """Read and validate the scenario file."""
    load_scenario = require("peakplan.loaders", "load_scenario")
    if not SCENARIO.exists():
        pytest.skip(f"{SCENARIO} not there yet")
    return Work(lambda: load_scenario(SCENARIO), 1, "scenarios")


def pack(case: Case) -> Work:
    """Compile the scenario (validated) into a planning pack."""
    load_scenario = require("peakplan.loaders", "load_scenario")
    build_pack = require("peakplan.compile", "build_pack")
    if not SCENARIO.exists():
        pytest.skip(f"{SCENARIO} not there yet")
    scn = load_scenario(SCENARIO)
    return Work(lambda: build_pack(scn), 1, "packs")


def simulate(case: Case, engine: str = "numba", threads: int = 1, keep_paths: bool = True) -> Work:
    """Monte Carlo of the case's synthetic pack (throughput in cells)."""
    from peakplan.simulate import mc

    p = pack_for(case)
    mc.simulate(p, n_paths=1000, seed=1, engine=engine, threads=threads)  # compile / warm
    return Work(lambda: mc.simulate(p, n_paths=case.N, seed=3, engine=engine, threads=threads,
                                    keep_paths=keep_paths), case.cells, "cells")


def draw_numpy(case: Case) -> Work:
    """Calibration: numpy ``Generator(SFC64)`` drawing the normals the simulation draws."""
    from peakplan.rng import BLOCK_PATHS, block_generators

    blocks = -(-case.N // BLOCK_PATHS)
    per = BLOCK_PATHS * case.T * 2 * case.R

    def run():
        for g in block_generators(5, 0, blocks):
            g.standard_normal(per)

    return Work(run, case.cells, "cells")


def draw_kernel(case: Case) -> Work:
    """Floor: the same normals drawn inside a compiled loop (no model at all)."""
    import numpy as np

    from peakplan.rng import BLOCK_PATHS, block_generators
    from peakplan.simulate import kernel

    blocks = -(-case.N // BLOCK_PATHS)
    per = BLOCK_PATHS * case.T * 2 * case.R
    buf = np.empty(1 << 16)
    kernel.draw_only(block_generators(1, 0, 1)[0], 10, buf)

    def run():
        for g in block_generators(5, 0, blocks):
            kernel.draw_only(g, per, buf)

    return Work(run, case.cells, "cells")


def optimize(case: Case) -> Work:
    """SAA LP plans A/B/C on ``S`` sampled paths."""
    opt = require("peakplan.optimize", "optimize")
    p = pack_for(case)
    params = inspect.signature(opt).parameters
    for name in ("n_paths", "n_samples", "samples", "sample_size", "S"):
        if name in params:
            return Work(lambda: opt(p, **{name: case.S}), case.S * case.T * case.R, "LP cells")
    p = p.replace(n_paths=case.S)
    return Work(lambda: opt(p), case.S * case.T * case.R, "LP cells")


def des(case: Case) -> Work:
    """One multi-server station, M/M/c at 90 % load, ``des_horizon`` time units."""
    run_station = require("peakplan.simulate.des", "run_station")
    return Work(lambda: run_station(1.0, 10, 9.0, case.des_horizon, 7, replications=1, keep_records=False),
                case.des_horizon, "customers")


def end_to_end(case: Case) -> Work:
    """The whole pipeline on the scenario file, nothing written."""
    run = require("peakplan.pipeline", "run")
    if not SCENARIO.exists():
        pytest.skip(f"{SCENARIO} not there yet")
    return Work(lambda: run(SCENARIO, None, paths=case.N, seed=1), case.N, "paths")


DRIVERS = {"load": load, "pack": pack, "simulate": simulate, "optimize": optimize, "des": des,
           "end_to_end": end_to_end}


def module_exists(name: str) -> bool:
    """Whether ``name`` imports (for scripts that must not depend on pytest's skipping)."""
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
