"""Many runs at once: scenario files, globs and sweeps; a process pool or Dask; resume.

Stages, in order, one module each:

1. **Plan** (:mod:`~peakplan.batch.sweep`, :mod:`~peakplan.batch.cases`,
   :func:`plan_batch`): every input becomes one or more :class:`Case` objects. A scenario
   file is one case (named after the file); a *sweep spec* (a YAML file with a ``base:``
   key, see ``docs/batch.md``) is a base scenario plus a grid and/or a list of named cases
   of overrides. Overrides are dot paths into the scenario (``constraints.budget``; list
   items by their ``name``: ``events.black_friday_cyber_week.uplift.mode``) or table cells
   (``levers.temp_pickers_east.lead_time`` rewrites a copy of the lever table). Each case
   is validated and keyed by :func:`case_key`: the SHA-256 of the resolved scenario, the
   bytes of every input table, the seed, the number of paths and the peakplan version.
   Files are read by :mod:`peakplan.loaders`.
2. **Run** (:mod:`~peakplan.batch.runner`, :func:`run_batch`): cases whose run directory
   is complete with the same key are skipped; the others are materialised under
   ``<out>/.inputs/<key>/`` (the scenario and its tables, so workers need no access to the
   original data) and run by :func:`run_case` (:mod:`~peakplan.batch.worker`) in a local
   process pool (default), on a Dask cluster, or in process
   (:mod:`~peakplan.batch.executors`). A run directory is staged under
   ``<out>/.staging/`` and renamed to ``<out>/<case>`` only when complete, ``case.json``
   included, so it is complete or absent at any moment.
3. **Record**: each finished run is appended to the ledger ``<out>/ledger.sqlite`` (by
   this process only); a failed case (bad input, infeasible, crashed worker) is recorded
   with its error and the batch goes on.
4. **Summarise** (:mod:`~peakplan.batch.summary`): ``summary.parquet`` and
   ``summary.csv``, one row per case and plan, the override values as columns;
   ``batch.json`` holds the batch's timings.

:func:`simulate_distributed` (:mod:`~peakplan.batch.distributed`) splits one large Monte
Carlo run over workers in blocks of :data:`peakplan.rng.BLOCK_PATHS` paths, with the same
numbers as a single process. :func:`add_cli` (:mod:`~peakplan.batch.cli`) registers the
``batch`` and ``ledger`` commands.
"""

from peakplan.batch.cases import Case, case_key, peakplan_version, plan_batch, resolve_case
from peakplan.batch.cli import add_cli, main
from peakplan.batch.distributed import simulate_distributed
from peakplan.batch.executors import BatchProgress, dask_client, usable_cores
from peakplan.batch.runner import EXIT_FAILED, EXIT_INPUT, EXIT_OK, BatchResult, case_status, run_batch
from peakplan.batch.summary import build_summary, effective_values, override_columns
from peakplan.batch.sweep import (
    ROW_KEYS,
    TABLES,
    CaseSpec,
    apply_overrides,
    get_path,
    is_sweep,
    load_sweep,
    override_table,
    set_path,
)
from peakplan.batch.worker import CaseOutcome, CaseTask, run_case

__all__ = [
    "EXIT_FAILED",
    "EXIT_INPUT",
    "EXIT_OK",
    "ROW_KEYS",
    "TABLES",
    "BatchProgress",
    "BatchResult",
    "Case",
    "CaseOutcome",
    "CaseSpec",
    "CaseTask",
    "add_cli",
    "apply_overrides",
    "build_summary",
    "case_key",
    "case_status",
    "dask_client",
    "effective_values",
    "get_path",
    "is_sweep",
    "load_sweep",
    "main",
    "override_columns",
    "override_table",
    "peakplan_version",
    "plan_batch",
    "resolve_case",
    "run_batch",
    "run_case",
    "set_path",
    "simulate_distributed",
    "usable_cores",
]
