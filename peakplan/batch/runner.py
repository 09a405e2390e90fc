"""Run a batch: skip complete cases, materialise the rest, run them, record and summarise.

Cases whose run directory is complete with the same key are skipped; the others are
materialised under ``<out>/.inputs/<key>/`` (the scenario and its tables, so workers need
no access to the original data) and run by :func:`~peakplan.batch.worker.run_case` on an
executor (:mod:`peakplan.batch.executors`). Each finished run is appended to the ledger
``<out>/ledger.sqlite`` (by this process only); a failed case (bad input, infeasible,
crashed worker) is recorded with its error and the batch goes on. At the end come
``summary.parquet`` and ``summary.csv`` (:mod:`peakplan.batch.summary`) and
``batch.json`` with the batch's timings.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from peakplan import report
from peakplan.batch.cases import Case, peakplan_version, plan_batch
from peakplan.batch.executors import BatchProgress, dask_client, run_dask, run_inline, run_local, usable_cores
from peakplan.batch.summary import build_summary, run_rows
from peakplan.batch.worker import COMPLETE, CaseOutcome, CaseTask, run_case
from peakplan.errors import InputError
from peakplan.ledger import Ledger, LedgerEntry

__all__ = ["EXIT_FAILED", "EXIT_INPUT", "EXIT_OK", "BatchResult", "case_status", "run_batch"]

EXIT_OK, EXIT_INPUT, EXIT_FAILED = 0, 2, 4


@dataclass
class BatchResult:
    """What :func:`run_batch` did."""

    out: Path
    batch_id: str
    cases: list[Case]
    outcomes: dict[str, CaseOutcome]
    """Outcome per case name (skipped cases: status ``ok``, elapsed 0)."""
    skipped: list[str]
    """Cases found complete with the same key and not run again."""
    summary: pd.DataFrame
    wall_s: float

    @property
    def failed(self) -> list[str]:
        """Names of the cases that did not finish ok."""
        return [n for n, o in self.outcomes.items() if o.status != "ok"]

    @property
    def exit_code(self) -> int:
        """0 if every case is ok, else :data:`EXIT_FAILED` (4)."""
        return EXIT_FAILED if self.failed else EXIT_OK


def _lock(out: Path):
    """Hold ``<out>/.batch.lock`` so two batches never write one folder at once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def held():
        fh = open(out / ".batch.lock", "a+")  # noqa: SIM115 - held for the whole batch
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError(f"{out}: another batch is writing to this folder; wait for it to finish or "
                                 f"choose another --out") from None
            yield
        finally:
            fh.close()

    return held()


def case_status(case: Case, out: Path) -> str:
    """``done`` (complete, same key), ``changed`` (complete, other key), ``new`` or ``error``."""
    if case.error:
        return "error"
    cj = out / case.name / "case.json"
    if not cj.is_file():
        return "new"
    try:
        info = json.loads(cj.read_text())
    except (OSError, ValueError):
        return "changed"
    return "done" if info.get("case_key") == case.key and info.get("status") in COMPLETE else "changed"


def _materialise(case: Case, out: Path) -> Path:
    """Write the case's scenario and tables to ``<out>/.inputs/<key16>/`` (content addressed)."""
    final = out / ".inputs" / case.key[:16]
    if (final / "scenario.yaml").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = out / ".inputs" / f".{case.key[:16]}.{uuid.uuid4().hex[:8]}.partial"
    tmp.mkdir()
    for fname, src in case.files.items():
        if isinstance(src, Path):
            shutil.copyfile(src, tmp / fname)  # an input table as given, byte for byte
        elif fname.endswith((".yaml", ".csv")):
            report.write_text(tmp / fname, src.decode("utf-8"))
        else:  # a rewritten Parquet table: these exact bytes are what the case key hashes
            (tmp / fname).write_bytes(src)
    try:
        os.rename(tmp, final)
    except OSError:  # another process won the race; the content is the same
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _metrics(rows: list[dict]) -> dict[str, dict[str, float]]:
    out = {}
    for r in rows:
        out[r["plan"]] = {k: v for k, v in r.items() if k != "plan" and isinstance(v, (int, float, np.number))
                          and not isinstance(v, bool)}
    return out


def _ledger_entry(case: Case, outcome: CaseOutcome, out: Path, batch_id: str, run_id: str) -> LedgerEntry:
    metrics: dict = {}
    recommended = None
    if outcome.status in COMPLETE and (out / case.name / "case.json").is_file():
        rows, recommended = run_rows(out / case.name)
        metrics = _metrics(rows)
        if recommended not in metrics:
            recommended = None
    return LedgerEntry(
        scenario=case.scenario or case.name, status=outcome.status, run_id=run_id,
        scenario_hash=case.hashes.get("scenario.yaml"),
        input_hashes={k: v for k, v in case.hashes.items() if k != "scenario.yaml"},
        seed=case.seed, version=peakplan_version(), metrics=metrics, recommended=recommended,
        timings={k: v for k, v in {"case_s": outcome.elapsed_s, **outcome.timings}.items() if v is not None},
        error=(outcome.error or "unknown error") if outcome.status != "ok" else None,
        batch_id=batch_id, case_key=case.key)


def _append(ledger: Ledger, case: Case, outcome: CaseOutcome, out: Path, batch_id: str) -> None:
    run_id = f"{case.name}-{case.key[:12]}"
    if outcome.status == "failed" or ledger.find(run_id=run_id):
        run_id = f"{run_id}-{uuid.uuid4().hex[:8]}"
    ledger.append(_ledger_entry(case, outcome, out, batch_id, run_id))


def run_batch(inputs: Sequence[str | Path], out: str | Path, *, paths: int | None = None, seed: int | None = None,
              chunk_size: int | None = None, workers: int | None = None, dask_scheduler: str | None = None,
              dask_local: int | None = None, client=None, force: bool = False, progress: bool = True,
              live: bool | None = None, runner: Callable[[CaseTask], CaseOutcome] = run_case) -> BatchResult:
    """Run every case of ``inputs`` into ``out``; skip cases already complete; write the summary.

    Executors: ``client`` (a Dask client), ``dask_scheduler`` (address of a running Dask
    scheduler), ``dask_local`` (a LocalCluster with that many workers), else a local process
    pool of ``workers`` processes (default: every usable core; ``0`` runs in this process).
    ``force`` re-runs complete cases. ``runner`` runs one case in a worker (a module-level
    function; tests inject failures with it). Bad input in the batch itself raises
    :class:`InputError`; a failing case is recorded and the rest goes on.
    """
    t_start = time.perf_counter()
    out = Path(out).resolve()
    if workers is not None and workers < 0:
        raise InputError(f"--workers must be a positive integer, got {workers}")
    cases = plan_batch(inputs, seed=seed, paths=paths)
    out.mkdir(parents=True, exist_ok=True)
    batch_id = f"batch-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    outcomes: dict[str, CaseOutcome] = {}
    skipped: list[str] = []
    by_name = {c.name: c for c in cases}
    n_work = usable_cores() if workers is None else workers
    parallel = dask_local or n_work or 1
    with _lock(out), Ledger(out / "ledger.sqlite") as ledger:
        shutil.rmtree(out / ".staging", ignore_errors=True)  # what a killed batch left half-done
        for partial in (out / ".inputs").glob(".*.partial"):
            shutil.rmtree(partial, ignore_errors=True)
        todo: list[Case] = []
        for c in cases:
            st = case_status(c, out)
            if st == "done" and not force:
                skipped.append(c.name)
                info = json.loads((out / c.name / "case.json").read_text())
                timings = info.get("timings", {})
                outcomes[c.name] = CaseOutcome(c.name, c.key, info["status"], info.get("error"),
                                               timings.get("case_s", 0.0), timings)
                if not ledger.find(case_key=c.key, status=info["status"]):  # finished, killed before its row
                    _append(ledger, c, outcomes[c.name], out, batch_id)
            else:
                todo.append(c)
        prog = BatchProgress(len(cases), skipped=len(skipped), live=live, enabled=progress)

        def on_start(task: CaseTask) -> None:
            prog.started(task.name)

        def on_done(o: CaseOutcome) -> None:
            outcomes[o.name] = o
            _append(ledger, by_name[o.name], o, out, batch_id)
            prog.finished(o.name, o.status, o.elapsed_s, o.error)

        threads = max(1, usable_cores() // max(1, parallel)) if client is None and not dask_scheduler else None
        tasks = []
        try:
            for c in todo:
                if c.error:
                    on_start(CaseTask(c.name, c.key, str(out), "", 0, 0))
                    on_done(CaseOutcome(c.name, c.key, "failed", c.error))
                    continue
                meta = {"source": str(c.source), "overrides": c.overrides, "scenario": c.scenario,
                        "input_hashes": c.hashes, "peakplan": peakplan_version()}
                tasks.append(CaseTask(c.name, c.key, str(out), str(_materialise(c, out)), c.seed, c.paths,
                                      chunk_size, threads, json.loads(json.dumps(meta, default=str))))
            if tasks:
                if client is not None:
                    run_dask(tasks, client, runner, on_start, on_done)
                elif dask_scheduler or dask_local:
                    with dask_client(dask_scheduler, dask_local) as cl:
                        run_dask(tasks, cl, runner, on_start, on_done)
                elif n_work == 0:
                    run_inline(tasks, runner, on_start, on_done)
                else:
                    run_local(tasks, n_work, runner, on_start, on_done)
        finally:
            prog.close()
        with contextlib.suppress(OSError):
            (out / ".staging").rmdir()  # only when empty
        summary = build_summary(cases, outcomes, out)
        report.write_parquet(out / "summary.parquet", summary)
        report.write_csv(out / "summary.csv", summary)
        wall = time.perf_counter() - t_start
        executor = ("dask:" + str(dask_scheduler) if dask_scheduler else f"dask-local:{dask_local}" if dask_local
                    else "dask:client" if client is not None else f"processes:{n_work}")
        report.write_json(out / "batch.json", {
            "batch_id": batch_id, "executor": executor, "wall_s": wall, "n_cases": len(cases),
            "n_skipped": len(skipped), "n_failed": sum(o.status != "ok" for o in outcomes.values()),
            "peakplan": peakplan_version(),
            "cases": [{"name": c.name, "case_key": c.key, "status": outcomes[c.name].status,
                       "skipped": c.name in skipped, "elapsed_s": outcomes[c.name].elapsed_s} for c in cases]})
    return BatchResult(out, batch_id, cases, outcomes, skipped, summary, wall)
