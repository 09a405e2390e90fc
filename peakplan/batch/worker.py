"""The worker side: run one case and install its run directory atomically.

A run directory is staged under ``<out>/.staging/`` and renamed to ``<out>/<case>`` only
when complete, ``case.json`` included, so it is complete or absent at any moment. A worker
never raises for a case's error: bad input, an infeasible plan or a crash inside the
pipeline comes back as a :class:`CaseOutcome` with its status and message.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from peakplan import report
from peakplan.errors import InfeasibleError, InputError, PeakplanError

__all__ = ["COMPLETE", "CaseOutcome", "CaseTask", "run_case"]

#: case.json statuses of a complete run directory (an infeasible run is written with its diagnosis).
COMPLETE = ("ok", "infeasible")


@dataclass(frozen=True)
class CaseTask:
    """What a worker needs to run one case (plain, picklable)."""

    name: str
    key: str
    out: str
    """The batch output folder (absolute)."""
    inputs: str
    """Folder with the materialised ``scenario.yaml`` and tables."""
    seed: int
    paths: int
    chunk_size: int | None = None
    threads: int | None = None
    """Numba threads per case (``PEAKPLAN_THREADS``); None keeps the worker's default."""
    meta: dict = field(default_factory=dict)
    """Written into ``case.json`` (source, overrides, hashes, version)."""


@dataclass(frozen=True)
class CaseOutcome:
    """What a worker reports back."""

    name: str
    key: str
    status: str
    """``ok``, ``failed`` or ``infeasible``."""
    error: str | None = None
    elapsed_s: float = 0.0
    timings: dict = field(default_factory=dict)


def _replace_dir(src: Path, final: Path, trash_root: Path) -> None:
    """Rename ``src`` to ``final``, replacing an earlier batch run dir there."""
    if final.exists():
        if not (final / "case.json").is_file():
            raise InputError(f"{final}: exists and is not a batch run directory (no case.json); "
                             f"remove it or choose another --out")
        trash_root.mkdir(parents=True, exist_ok=True)
        trash = trash_root / f"{final.name}.{uuid.uuid4().hex[:8]}.old"
        os.replace(final, trash)
        os.replace(src, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, final)


def run_case(task: CaseTask) -> CaseOutcome:
    """Run one case and install its run directory atomically; never raises for a case error."""
    t0 = time.perf_counter()
    if task.threads:
        os.environ["PEAKPLAN_THREADS"] = str(task.threads)
    out = Path(task.out)
    stage = out / ".staging" / f"{task.name}.{uuid.uuid4().hex[:8]}"
    status, error, timings = "ok", None, {}
    try:
        from peakplan import pipeline

        stage.mkdir(parents=True)
        run_dir = stage / "run"
        res = pipeline.run(Path(task.inputs) / "scenario.yaml", run_dir, paths=task.paths, seed=task.seed,
                           chunk_size=task.chunk_size)
        timings = {k: float(v) for k, v in res.manifest.get("timings", {}).items()}
        if res.manifest.get("status") == "infeasible":  # written with its diagnosis, but no plan
            status = "infeasible"
            error = "; ".join(e.get("message", "") for e in res.extras.get("escalations", [])) or "infeasible"
        shutil.copytree(task.inputs, run_dir / "inputs")
        timings["case_s"] = time.perf_counter() - t0
        report.write_json(run_dir / "case.json", {
            **task.meta, "name": task.name, "case_key": task.key, "status": status, "error": error,
            "seed": task.seed, "paths": task.paths, "timings": timings,
            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
        _replace_dir(run_dir, out / task.name, out / ".staging")
    except InfeasibleError as exc:
        status, error = "infeasible", f"{type(exc).__name__}: {exc}"
    except PeakplanError as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        status, error = "failed", f"{type(exc).__name__}: {exc} (at {Path(tb.filename).name}:{tb.lineno})"
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return CaseOutcome(task.name, task.key, status, error, time.perf_counter() - t0, timings)
