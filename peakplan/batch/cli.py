"""Command line: ``peakplan batch`` and ``peakplan ledger list|show|verify``.

:func:`add_cli` registers both on the ``peakplan`` command's subparsers; ``python -m
peakplan.batch ARGS`` (:func:`main`) is ``peakplan batch ARGS``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from peakplan.batch.cases import plan_batch
from peakplan.batch.runner import EXIT_FAILED, EXIT_OK, case_status, run_batch
from peakplan.errors import InputError
from peakplan.ledger import Ledger

__all__ = ["add_cli", "cmd_batch", "cmd_ledger_list", "cmd_ledger_show", "cmd_ledger_verify", "main"]


def _left(width: int) -> Callable[[Any], str]:
    return lambda v: f"{'' if v is None or v is pd.NA else v!s:<{width}}"


def _print_rows(df: pd.DataFrame, title: str) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for c in df.columns:
            table.add_column(str(c))
        for _, row in df.iterrows():
            table.add_row(*[f"{v:,.4g}" if isinstance(v, float) else ("" if v is None or v is pd.NA else str(v))
                            for v in row])
        Console(width=200).print(table)
    else:
        print(title)
        text = {c: df[c].astype(str).str.len().max() if len(df) else 0 for c in df.columns
                if not pd.api.types.is_numeric_dtype(df[c])}
        fmt = {c: _left(max(w, len(str(c)))) for c, w in text.items()}
        print(df.to_string(index=False, formatters=fmt, justify="left"))


def cmd_batch(args) -> int:
    """``peakplan batch``: exit 0 if every case is ok, 4 if any failed, 2 for bad input."""
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be a positive integer, got {args.workers}")
    if args.dask_local is not None and args.dask_local < 1:
        raise InputError(f"--dask-local must be a positive integer, got {args.dask_local}")
    if args.dry_run:
        cases = plan_batch(args.inputs, seed=args.seed, paths=args.paths)
        rows = []
        for c in cases:
            rows.append({"case": c.name, "key": c.key[:16],
                         "status": case_status(c, args.out.resolve()) if args.out else ("error" if c.error else "new"),
                         "seed": c.seed, "paths": c.paths,
                         "overrides": json.dumps(c.overrides, default=str) if c.overrides else "",
                         "error": (c.error or "").splitlines()[0] if c.error else ""})
        df = pd.DataFrame(rows)
        if not df["error"].astype(bool).any():
            df = df.drop(columns="error")
        _print_rows(df, f"{len(cases)} case(s) (dry run: nothing is run or written)")
        return EXIT_FAILED if any(c.error for c in cases) else EXIT_OK
    if args.out is None:
        raise InputError("peakplan batch needs --out DIR (or --dry-run)")
    res = run_batch(args.inputs, args.out, paths=args.paths, seed=args.seed, chunk_size=args.chunk_size,
                    workers=args.workers, dask_scheduler=args.dask_scheduler, dask_local=args.dask_local,
                    force=args.force, progress=not args.quiet)
    cols = [c for c in ("case", "plan", "status", "cost_mean", "fill_mean", "p_breach", "lost_mean")
            if c in res.summary.columns]
    if not args.quiet:
        _print_rows(res.summary[cols], f"batch {res.batch_id}: {len(res.cases)} case(s), {len(res.skipped)} skipped, "
                                        f"{len(res.failed)} failed, {res.wall_s:.1f} s")
    for name in res.failed:
        err = res.outcomes[name].error or ""
        print(f"FAILED {name}: {err.splitlines()[0] if err else res.outcomes[name].status}", file=sys.stderr)
    print(f"summary: {res.out / 'summary.parquet'} (+ .csv); ledger: {res.out / 'ledger.sqlite'}")
    return res.exit_code


def _ledger_path(p: Path) -> Path:
    path = p / "ledger.sqlite" if p.is_dir() else p
    if not path.is_file():
        raise InputError(f"{path}: no ledger here; give a ledger.sqlite file or a batch --out folder")
    return path


def cmd_ledger_list(args) -> int:
    """``peakplan ledger list``."""
    with Ledger(_ledger_path(args.ledger)) as led:
        df = led.list_runs(status=args.status, scenario=args.scenario, batch_id=args.batch_id,
                           case_key=args.case_key)
    if args.last:
        df = df.tail(args.last)
    if args.json:
        print(df.to_json(orient="records", indent=1, date_format="iso"))
        return EXIT_OK
    view = df[["seq", "run_id", "created_at", "scenario", "status", "recommended", "case_key", "error"]].copy()
    view["case_key"] = view["case_key"].map(lambda k: k[:12] if isinstance(k, str) else k)
    view["error"] = view["error"].map(lambda e: e.splitlines()[0][:80] if isinstance(e, str) else "")
    _print_rows(view, f"{len(df)} run(s)")
    return EXIT_OK


def cmd_ledger_show(args) -> int:
    """``peakplan ledger show RUN_ID``."""
    with Ledger(_ledger_path(args.ledger)) as led:
        print(json.dumps(led.show(args.run_id), indent=2, default=str))
    return EXIT_OK


def cmd_ledger_verify(args) -> int:
    """``peakplan ledger verify``: exit 0 if the hash chain checks out, 1 if not."""
    with Ledger(_ledger_path(args.ledger)) as led:
        res = led.verify(expected_head=args.expected_head)
    print(str(res))
    return EXIT_OK if res.ok else 1


def add_cli(subparsers) -> None:
    """Register ``batch`` and ``ledger list|show|verify`` on an argparse subparsers object."""
    s = subparsers.add_parser(
        "batch", help="run many scenarios or a sweep (process pool or Dask), resumable",
        description="Run scenario files, globs (quote them) or sweep specs; one run directory per case under "
                    "--out, a summary (summary.parquet/.csv) and a ledger (ledger.sqlite). Re-running skips "
                    "complete cases. Exit 0 if every case is ok, 4 if any failed, 2 for bad input.")
    s.add_argument("inputs", nargs="+", help="scenario files, globs or sweep specs (YAML with a 'base:' key)")
    s.add_argument("--out", type=Path, default=None, help="batch folder (required unless --dry-run)")
    s.add_argument("--paths", type=int, default=None, help="Monte Carlo paths of every case")
    s.add_argument("--seed", type=int, default=None, help="root seed of every case")
    s.add_argument("--chunk-size", type=int, default=None, help="paths per chunk (memory; never changes results)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
    g.add_argument("--dask-scheduler", default=None, metavar="ADDR",
                   help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786")
    g.add_argument("--dask-local", type=int, default=None, metavar="N", help="start a Dask LocalCluster of N workers")
    s.add_argument("--dry-run", action="store_true", help="list the cases (name, key, overrides); run nothing")
    s.add_argument("--force", action="store_true", help="re-run cases that are already complete")
    s.add_argument("--quiet", action="store_true", help="no progress or table output")
    s.set_defaults(func=cmd_batch)

    ledger = subparsers.add_parser("ledger", help="list, show or verify a run ledger")
    sub = ledger.add_subparsers(dest="ledger_command", required=True)
    lp = sub.add_parser("list", help="list runs (filters are equality tests)")
    lp.add_argument("ledger", type=Path, help="ledger.sqlite or a batch --out folder")
    for opt in ("status", "scenario", "batch-id", "case-key"):
        lp.add_argument(f"--{opt}", default=None)
    lp.add_argument("--last", type=int, default=None, help="only the last N runs")
    lp.add_argument("--json", action="store_true", help="JSON records instead of a table")
    lp.set_defaults(func=cmd_ledger_list)
    sp = sub.add_parser("show", help="show one run (a unique run_id prefix works)")
    sp.add_argument("ledger", type=Path)
    sp.add_argument("run_id")
    sp.set_defaults(func=cmd_ledger_show)
    vp = sub.add_parser("verify", help="check every hash and link of the chain (exit 1 if broken)")
    vp.add_argument("ledger", type=Path)
    vp.add_argument("--expected-head", default=None, help="record_hash the chain must end at")
    vp.set_defaults(func=cmd_ledger_verify)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m peakplan.batch ARGS`` = ``peakplan batch ARGS``."""
    from peakplan.cli import main as cli_main

    return cli_main(["batch", *(sys.argv[1:] if argv is None else argv)])

