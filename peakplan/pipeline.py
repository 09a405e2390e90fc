"""``run()``: load -> pack -> simulate -> optimize -> score -> report. The one place that states the order."""

from __future__ import annotations

import datetime as dt
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from peakplan import report
from peakplan.compile import build_pack
from peakplan.loaders import file_sha256, input_files, load_scenario
from peakplan.pack import PlanningPack
from peakplan.rng import root_entropy
from peakplan.score import Scorecard, scorecard
from peakplan.simulate.mc import SimResult, simulate

__all__ = ["RunResult", "manifest_base", "run", "summary_table"]

_PACKAGES = ("peakplan", "numpy", "scipy", "pandas", "pyarrow", "pulp", "highspy", "simpy", "pydantic")


def versions() -> dict[str, str]:
    """Versions of peakplan, Python and the numerical packages."""
    out = {"python": platform.python_version()}
    for p in _PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:  # pragma: no cover
            out[p] = "missing"
    return out


@dataclass
class RunResult:
    """What :func:`run` produced."""

    run_dir: Path | None
    """The run directory (``None`` when nothing was written)."""
    pack: PlanningPack
    """The compiled planning pack."""
    baseline: Scorecard
    """Scorecard of the do-nothing baseline."""
    sim: SimResult
    """Per-path metrics of the baseline."""
    manifest: dict
    """What ``manifest.json`` holds."""
    extras: dict = field(default_factory=dict)
    """Later stages' outputs (plans, comparison)."""


def manifest_base(scenario_path: Path, scn, seed: int, n_paths: int, chunk: int) -> dict:
    """The provenance part of ``manifest.json``: input SHA-256s, seed, versions."""
    inputs = {"scenario": file_sha256(scenario_path)}
    inputs.update({k: file_sha256(p) for k, p in input_files(scn).items()})
    return {
        "scenario": scn.name,
        "scenario_path": str(scenario_path),
        "inputs": inputs,
        "seed": seed,
        "n_paths": n_paths,
        "chunk_size": chunk,
        "versions": versions(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def summary_table(cards: list[Scorecard]) -> pd.DataFrame:
    """One row per scorecard with the headline columns."""
    return pd.DataFrame([c.as_row() for c in cards])


def run(scenario: str | Path, out: str | Path | None = None, *, paths: int | None = None,
        seed: int | None = None, chunk_size: int | None = None, force: bool = False,
        progress: Callable[[int, int], None] | None = None) -> RunResult:
    """Run the pipeline on a scenario file and write the run directory ``out`` atomically.

    With ``out=None`` nothing is written. ``progress(done, total)`` is called as paths finish.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    scenario = Path(scenario)
    scn = load_scenario(scenario)
    pack = build_pack(scn)
    timings["load_and_pack_s"] = time.perf_counter() - t0
    n = int(paths or pack.n_paths)
    s = int(pack.seed if seed is None else seed)
    chunk = int(chunk_size or pack.chunk_size)
    manifest = manifest_base(scenario, scn, root_entropy(s), n, chunk)

    t1 = time.perf_counter()
    sim = simulate(pack, None, n_paths=n, seed=s, chunk_size=chunk,
                   progress=(lambda d: progress(d, n)) if progress else None)
    timings["simulate_baseline_s"] = time.perf_counter() - t1
    base = scorecard(pack, sim.metrics, "baseline")

    manifest["timings"] = timings
    manifest["status"] = "ok"
    manifest["high_flags"] = len(pack.high_flags)
    result = RunResult(run_dir=None, pack=pack, baseline=base, sim=sim, manifest=manifest)
    if out is not None:
        result.run_dir = write_run(result, Path(out), force=force)
    return result


def summary_dict(result: RunResult) -> dict:
    """The content of ``summary.json``."""
    b = result.baseline
    return {"scenario": result.pack.name, "status": result.manifest["status"],
            "high_flags": [f.__dict__ for f in result.pack.high_flags],
            "baseline": {**b.as_row(), "cost_components": b.cost_components},
            "service_target": result.pack.service_target}


def write_run(result: RunResult, out: Path, force: bool = False) -> Path:
    """Write the run directory atomically (complete or absent)."""
    t = time.perf_counter()
    with report.atomic_dir(out, force=force) as tmp:
        report.write_pack(result.pack, tmp / "pack")
        report.write_parquet(tmp / "paths.parquet", result.sim.to_frame())
        report.write_json(tmp / "summary.json", summary_dict(result))
        sections = [("Baseline (do nothing)", report.md_table(summary_table([result.baseline]).T.reset_index()
                                                               .rename(columns={"index": "metric", 0: "baseline"}))),
                    ("Baseline cost by component", report.md_table(pd.DataFrame(
                        [{"component": k, "mean": v} for k, v in result.baseline.cost_components.items()])))]
        result.manifest["timings"]["write_s"] = time.perf_counter() - t
        report.write_text(tmp / "report.md", report.render_markdown(result.pack, result.manifest, sections))
        report.write_json(tmp / "manifest.json", result.manifest)
    return out
