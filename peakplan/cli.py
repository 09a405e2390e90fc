"""Command line: a thin layer over the pipeline.

Exit codes: 0 success; 1 unexpected error; 2 bad input (nothing written); 3 no plan meets
the targets inside the limits (a diagnosis is written as an escalation).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from peakplan.errors import InfeasibleError, InputError, PeakplanError

EXIT_OK, EXIT_ERROR, EXIT_INPUT, EXIT_INFEASIBLE = 0, 1, 2, 3


def _progress_factory(quiet: bool):
    """A progress callback: a rich bar on a terminal, plain lines in logs (CI)."""
    if quiet:
        return None, lambda: None
    if sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        prog = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), transient=True)
        prog.start()
        task = {}

        def cb(done: int, total: int) -> None:
            if "id" not in task:
                task["id"] = prog.add_task("simulating paths", total=total)
            prog.update(task["id"], completed=done)

        return cb, prog.stop
    state = {"next": 0.25}

    def plain(done: int, total: int) -> None:
        if total >= 50_000 and done / total >= state["next"] - 1e-12:
            print(f"simulated {done:,}/{total:,} paths", file=sys.stderr)
            state["next"] += 0.25

    return plain, lambda: None


def _print_table(df, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in df.columns:
        table.add_column(str(c))
    for _, row in df.iterrows():
        table.add_row(*[f"{v:,.4g}" if isinstance(v, float) else str(v) for v in row])
    Console(width=200).print(table)


def cmd_validate(args) -> int:
    from peakplan.compile import build_pack
    from peakplan.loaders import load_scenario

    scn = load_scenario(args.scenario)
    pack = build_pack(scn)
    print(f"{args.scenario}: valid ({pack.T} {pack.period_kind}s, {pack.G} segments, {pack.R} resources, "
          f"{pack.L} levers, {len(pack.flags)} flags, {len(pack.high_flags)} high)")
    for f in pack.flags:
        print(f"  [{f.severity}] {f.rule} at {f.location}: {f.evidence}")
    return EXIT_OK


def cmd_pack(args) -> int:
    from peakplan import report
    from peakplan.compile import build_pack

    pack = build_pack(args.scenario)
    with report.atomic_dir(args.out, force=args.force) as tmp:
        report.write_pack(pack, tmp)
    print(f"wrote pack to {args.out} ({len(pack.flags)} flags, {len(pack.high_flags)} high)")
    for f in pack.high_flags:
        print(f"  HIGH {f.rule} at {f.location}: {f.evidence}")
    return EXIT_OK


def cmd_run(args) -> int:
    from peakplan import pipeline

    cb, stop = _progress_factory(args.quiet)
    try:
        res = pipeline.run(args.scenario, args.out, paths=args.paths, seed=args.seed,
                           chunk_size=args.chunk_size, force=args.force, progress=cb,
                           optimize=not args.no_optimize, opt_samples=args.opt_samples,
                           opt_method=args.opt_method, opt_solver=args.solver,
                           opt_time_limit=args.opt_time_limit,
                           quality=not args.no_quality, des=not args.no_des)
    finally:
        stop()
    if res.pack.high_flags:
        print(f"HIGH-SEVERITY FLAGS ({len(res.pack.high_flags)}):")
        for f in res.pack.high_flags:
            print(f"  {f.rule} at {f.location}: {f.evidence}")
    table = res.extras.get("comparison")
    if table is None or table.empty:
        table = pipeline.summary_table([res.baseline])
    cols = [c for c in ("plan", "cost_mean", "cost_p95", "cost_cvar95", "fill_mean", "fill_p5", "p_breach",
                        "lost_mean", "util_peak", "util_offpeak") if c in table.columns]
    cols += [c for c in table.columns if c.startswith("stress: ")]
    _print_table(table[cols], f"{res.pack.name}: {res.manifest.get('n_paths_scoring', res.sim.n_paths):,} paths, "
                 f"seed {res.manifest['seed']}")
    des_cols = [c for c in ("plan", "des_sla_mean", "des_sla_p5", "des_wait_mean_h", "des_wait_p95_h",
                            "des_abandon_rate", "des_fluid_ok") if c in table.columns]
    if len(des_cols) > 1:
        _print_table(table[des_cols], "time to serve inside the peak (discrete-event model)")
    for name, plan in res.extras.get("plans", {}).items():
        if getattr(plan, "identical_to", None):
            print(f"Plan {name} is identical to Plan {plan.identical_to} (same decisions)")
    if table.attrs.get("recommended"):
        print(f"Recommended: Plan {table.attrs['recommended']} - {table.attrs['rationale']}")
    for e in res.extras.get("escalations", []):
        print(f"ESCALATION: {e['message']}")
        for d in e.get("diagnosis", []):
            print(f"  - {d}")
    print(f"run directory: {res.run_dir}")
    return res.extras.get("exit_code", EXIT_OK)


def cmd_compare(args) -> int:
    from peakplan.loaders import read_run_comparison

    frames = [read_run_comparison(d) for d in args.run_dirs]
    import pandas as pd

    table = pd.concat(frames, ignore_index=True)
    cols = [c for c in ("run", "plan", "cost_mean", "cost_p95", "cost_cvar95", "fill_mean", "fill_p5", "p_breach",
                        "lost_mean", "recommended") if c in table.columns]
    _print_table(table[cols], f"{len(args.run_dirs)} run(s) compared")
    if args.out:
        from peakplan import report

        report.write_csv(args.out, table)
        print(f"wrote {args.out}")
    return EXIT_OK


def cmd_schema(args) -> int:
    from peakplan import config, schemas

    if args.tables:
        print(schemas.markdown())
    elif args.markdown:
        print(config.markdown())
    else:
        print(json.dumps(config.json_schema(), indent=2))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="peakplan", description="Peak-readiness scenario planning.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("validate", help="check a scenario and its tables without running")
    s.add_argument("scenario", type=Path)
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("pack", help="compile a scenario into a planning pack folder")
    s.add_argument("scenario", type=Path)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--force", action="store_true", help="replace an existing folder")
    s.set_defaults(func=cmd_pack)

    s = sub.add_parser("run", help="run the pipeline and write a run directory")
    s.add_argument("scenario", type=Path)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--paths", type=int, default=None)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--chunk-size", type=int, default=None)
    s.add_argument("--force", action="store_true", help="replace an existing run directory")
    s.add_argument("--quiet", action="store_true", help="no progress output")
    s.add_argument("--opt-samples", type=int, default=None, help="paths in the optimizer's SAA sample")
    s.add_argument("--opt-method", choices=("auto", "extensive", "benders"), default=None,
                   help="how the SAA model is solved (default: the scenario's simulation.opt_method, auto)")
    s.add_argument("--solver", choices=("highs", "cbc"), default=None,
                   help="the LP solver (default: the scenario's simulation.opt_solver, highs); CBC solves the "
                        "extensive form only")
    s.add_argument("--opt-time-limit", type=float, default=None, metavar="SECONDS",
                   help="seconds each plan's solve (and each quality solve) may take "
                        "(default: the scenario's simulation.opt_time_limit, none)")
    s.add_argument("--no-optimize", action="store_true", help="baseline only: no Plan A/B/C")
    s.add_argument("--no-quality", action="store_true", help="skip the SAA-gap and VSS statistics")
    s.add_argument("--no-des", action="store_true", help="skip the discrete-event peak model")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("compare", help="compare the plans of runs already written")
    s.add_argument("run_dirs", type=Path, nargs="+")
    s.add_argument("--out", type=Path, default=None, help="also write the combined table as CSV")
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("schema", help="print the scenario JSON Schema (or the table reference)")
    s.add_argument("--tables", action="store_true", help="print the input table reference (Markdown)")
    s.add_argument("--markdown", action="store_true", help="print the scenario reference as Markdown")
    s.set_defaults(func=cmd_schema)
    _extend(sub)
    return p


def _extend(sub) -> None:
    """Commands of later stages: batch and ledger (peakplan.batch), the benchmark gate."""
    try:
        from peakplan import batch
    except ImportError:  # pragma: no cover - module not present in this build
        batch = None
    if batch is not None and hasattr(batch, "add_cli"):
        batch.add_cli(sub)
    # listed for --help; `main` hands `bench ...` straight to peakplan.bench.main
    sub.add_parser("bench", help="benchmark regression gate: bench --check benchmarks/baseline.json (see benchmarks/README.md)")


def _positive(args) -> None:
    for name in ("paths", "chunk_size", "opt_samples"):
        v = getattr(args, name, None)
        if v is not None and v <= 0:
            raise InputError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
    v = getattr(args, "opt_time_limit", None)
    if v is not None and not v > 0:
        raise InputError(f"--opt-time-limit must be a positive number of seconds, got {v}")
    v = getattr(args, "seed", None)
    if v is not None and v < 0:
        raise InputError(f"--seed must be a non-negative integer, got {v}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the gate has its own options (argparse.REMAINDER drops leading dashes)
        from peakplan import bench

        return bench.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _positive(args)
        return args.func(args)
    except InputError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except InfeasibleError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"infeasible: {exc}", file=sys.stderr)
        for d in exc.diagnosis:
            print(f"  - {d}", file=sys.stderr)
        return EXIT_INFEASIBLE
    except PeakplanError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
