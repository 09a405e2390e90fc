"""``run()``: load -> pack -> simulate -> optimize -> score -> report. The one place that states the order."""

from __future__ import annotations

import datetime as dt
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from peakplan import report
from peakplan.compile import build_pack
from peakplan.errors import InfeasibleError, InputError
from peakplan.loaders import file_sha256, input_files, load_scenario
from peakplan.pack import PlanningPack
from peakplan.rng import root_entropy
from peakplan.score import Scorecard, compare, scorecard
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
        optimize: bool = True, opt_samples: int | None = None, opt_method: str | None = None,
        opt_solver: str | None = None, opt_time_limit: float | None = None,
        quality: bool = True, des: bool = True,
        workers: int = 1,
        progress: Callable[[int, int], None] | None = None) -> RunResult:
    """Run the pipeline on a scenario file and write the run directory ``out`` atomically.

    Stages: load -> pack -> simulate the do-nothing baseline -> optimize Plan A/B/C on an
    SAA sample drawn from an independent child seed -> score every plan out of sample on
    ``max(paths, 10 x SAA sample)`` fresh paths (plus stress tests and the discrete-event
    peak model) -> write. With ``out=None`` nothing is written. ``progress(done, total)`` is
    called as baseline paths finish. An infeasible target does not crash the run: the
    status is ``infeasible`` and the diagnosis is written to ``escalations.json``.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    scenario = Path(scenario)
    if out is not None and Path(out).exists() and not force:
        raise InputError(f"{out}: already exists; choose another --out or pass --force to replace it")
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
    manifest["status"] = "ok"
    extras: dict = {"plans": {}, "escalations": []}

    optimizer = _optimizer() if optimize else None
    if optimizer is not None and pack.variants and pack.levers:
        t2 = time.perf_counter()
        opt_seed = np.random.SeedSequence(root_entropy(s), spawn_key=(1,))
        failed: list[InfeasibleError] = []
        extras["plans"] = optimizer(pack, seed=opt_seed, infeasible=failed, n_samples=opt_samples, method=opt_method,
                                   solver=opt_solver, time_limit=opt_time_limit,
                                   quality=quality and bool(pack.extra.get("plan_quality", True)))
        for exc in failed:
            manifest["status"] = "infeasible"
            extras["escalations"].append({"kind": "infeasible", "message": str(exc), "diagnosis": exc.diagnosis})
            extras["exit_code"] = 3
        timings["optimize_s"] = time.perf_counter() - t2
        manifest["solver"] = {name: {"status": str(getattr(p, "status", "")), "seconds": getattr(p, "solve_seconds", None)}
                              for name, p in extras["plans"].items()}
    t3 = time.perf_counter()
    n_opt = int(opt_samples or pack.extra.get("opt_samples", 0) or 0)
    n_score = max(n, 10 * n_opt) if extras["plans"] else n
    table, details = compare(pack, extras["plans"], n_paths=n_score, seed=s, chunk_size=chunk,
                             des=des, workers=workers, details=True)
    timings["score_s"] = time.perf_counter() - t3
    extras["comparison"] = table
    extras["des"] = details.get("des")
    manifest["n_paths_scoring"] = n_score
    if table.attrs.get("recommended"):
        manifest["recommended"] = table.attrs["recommended"]
    manifest["timings"] = timings
    manifest["high_flags"] = len(pack.high_flags)
    result = RunResult(run_dir=None, pack=pack, baseline=base, sim=sim, manifest=manifest, extras=extras)
    if out is not None:
        result.run_dir = write_run(result, Path(out), force=force)
    return result


def _optimizer():
    """The optimizer stage, or ``None`` in a build without it."""
    try:
        from peakplan.optimize import optimize
    except ImportError:  # pragma: no cover - optimizer not installed in this build
        return None
    return optimize


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
        sections += _write_stages(result, tmp)
        result.manifest["timings"]["write_s"] = time.perf_counter() - t
        report.write_text(tmp / "report.md", report.render_markdown(result.pack, result.manifest, sections))
        report.write_json(tmp / "manifest.json", result.manifest)
    return out


def _write_stages(result: RunResult, tmp: Path) -> list[tuple[str, str]]:
    """Write comparison, plans, discrete-event outputs and escalations; return report sections."""
    ex = result.extras
    sections: list[tuple[str, str]] = []
    report.write_json(tmp / "escalations.json", ex.get("escalations", []))
    for e in ex.get("escalations", []):
        body = e["message"] + "\n\n" + "\n".join(f"- {d}" for d in e.get("diagnosis", []))
        sections.insert(0, ("ESCALATION: no plan meets the targets inside the limits", body))
    table = ex.get("comparison")
    if table is not None and len(table):
        report.write_parquet(tmp / "comparison.parquet", table)
        report.write_csv(tmp / "comparison.csv", table)
        body = report.md_table(table.set_index("plan").T.reset_index().rename(columns={"index": "metric"}))
        if table.attrs.get("rationale"):
            body = f"**Recommended: Plan {table.attrs['recommended']}** — {table.attrs['rationale']}\n\n" + body
        sections.append(("Plans compared out of sample", body))
    if ex.get("plans"):
        sections += report.write_plans(result.pack, ex["plans"], tmp / "plans")
    des = ex.get("des")
    if des is not None and not des.table.empty:
        report.write_parquet(tmp / "des_days.parquet", des.days)
        body = report.md_table(des.table)
        if des.notes:
            body += "\n\n" + "\n".join(f"- {n}" for n in des.notes)
        charts = report.queue_charts(des, tmp / "charts")
        body += "\n\n" + "\n".join(f"![queue over the worst simulated peak day, {name}](charts/{p.name})"
                                      for name, p in charts.items())
        sections.append(("Time to serve inside the peak (discrete-event model)", body))
    return sections
