"""The only writer of user files: run directories, packs, tables, Markdown reports.

Everything is written atomically: files go to a temporary name in the same folder and are
renamed into place; a run directory is assembled in a temporary sibling folder and renamed
to its final name only when complete, so it either is complete or does not exist.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from peakplan.errors import InputError
from peakplan.pack import Disruption, Event, Flag, Lever, MetricDefinition, PlanningPack, StressTest, Variant

__all__ = [
    "atomic_dir",
    "read_pack",
    "render_markdown",
    "write_json",
    "write_pack",
    "write_parquet",
    "write_text",
]

_TYPES = {c.__name__: c for c in (Lever, Event, Disruption, Variant, StressTest, MetricDefinition, Flag)}


# ------------------------------------------------------------------------------------
# atomic primitives
# ------------------------------------------------------------------------------------
def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _default(obj: Any):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    path = Path(path)
    _atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True, default=_default) + "\n").encode())
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write text (UTF-8) atomically."""
    path = Path(path)
    _atomic_write(path, text.encode("utf-8"))
    return path


def write_parquet(path: str | Path, df: pd.DataFrame) -> Path:
    """Write a DataFrame as Parquet (pyarrow, no index), atomically and byte-reproducibly."""
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False, engine="pyarrow", compression="zstd")
    path = Path(path)
    _atomic_write(path, buf.getvalue())
    return path


def write_csv(path: str | Path, df: pd.DataFrame) -> Path:
    """Write a DataFrame as CSV, atomically."""
    path = Path(path)
    _atomic_write(path, df.to_csv(index=False).encode())
    return path


@contextlib.contextmanager
def atomic_dir(final: str | Path, force: bool = False) -> Iterator[Path]:
    """Assemble a directory in a temporary sibling and rename it to ``final`` on success.

    If the block raises, the temporary folder is removed and ``final`` is untouched. An
    existing ``final`` is an error unless ``force``, in which case it is replaced.
    """
    final = Path(final)
    if final.exists() and not force:
        raise InputError(f"{final}: already exists; choose another --out or pass --force to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial"))
    try:
        yield tmp
        if final.exists():
            trash = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
            os.replace(final, trash / "old")
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------------------------
# pack serialisation (exact round trip)
# ------------------------------------------------------------------------------------
def _encode(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return {"__array__": v.tolist(), "dtype": str(v.dtype), "shape": list(v.shape)}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {"__type__": type(v).__name__,
                **{f.name: _encode(getattr(v, f.name)) for f in dataclasses.fields(v)}}
    if isinstance(v, tuple):
        return {"__tuple__": [_encode(x) for x in v]}
    if isinstance(v, list):
        return [_encode(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _encode(x) for k, x in v.items()}
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _decode(v: Any) -> Any:
    if isinstance(v, dict):
        if "__array__" in v:
            return np.array(v["__array__"], dtype=v["dtype"]).reshape(v["shape"])
        if "__tuple__" in v:
            return tuple(_decode(x) for x in v["__tuple__"])
        if "__type__" in v:
            cls = _TYPES[v["__type__"]]
            return cls(**{k: _decode(x) for k, x in v.items() if k != "__type__"})
        return {k: _decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


def pack_to_json(pack: PlanningPack) -> str:
    """The pack as exact JSON (floats round-trip; arrays keep dtype and shape)."""
    body = {f.name: _encode(getattr(pack, f.name)) for f in dataclasses.fields(pack)}
    return json.dumps(body, indent=1, sort_keys=True)


def pack_from_json(text: str) -> PlanningPack:
    """Inverse of :func:`pack_to_json`."""
    body = json.loads(text)
    return PlanningPack(**{k: _decode(v) for k, v in body.items()})


def pack_tables(pack: PlanningPack) -> dict[str, pd.DataFrame]:
    """Human-readable tables of a pack (demand, capacity, levers, flags, definitions)."""
    rows = []
    from scipy.stats import norm

    for t, p in enumerate(pack.periods):
        for g, s in enumerate(pack.segments):
            mu, sd = pack.demand_mu[t, g], pack.demand_sigma[t, g]
            qs = [np.exp(mu + sd * norm.ppf(q)) if pack.marginal == "lognormal" else max(0.0, mu + sd * norm.ppf(q))
                  for q in (0.1, 0.5, 0.9)]
            rows.append({"period": p, "segment": s, "p10": qs[0], "p50": qs[1], "p90": qs[2],
                         "peak": bool(pack.arr("peak")[t])})
    demand = pd.DataFrame(rows)
    capacity = pd.DataFrame([{"period": p, "resource": r, "capacity": pack.base_capacity[t, j]}
                             for t, p in enumerate(pack.periods) for j, r in enumerate(pack.resources)])
    levers = pd.DataFrame([{**dataclasses.asdict(lv), "resource": pack.resources[lv.resource],
                            "tiers": ";".join(f"{u:g}@{c:g}" for u, c in lv.tiers)} for lv in pack.levers])
    flags = pd.DataFrame([dataclasses.asdict(f) for f in pack.flags], columns=["rule", "severity", "location", "evidence"])
    definitions = pd.DataFrame([dataclasses.asdict(d) for d in pack.definitions])
    return {"demand": demand, "capacity": capacity, "levers": levers, "flags": flags, "definitions": definitions}


def write_pack(pack: PlanningPack, folder: str | Path) -> Path:
    """Write ``pack.json`` (exact) and readable CSV tables into ``folder``."""
    folder = Path(folder)
    write_text(folder / "pack.json", pack_to_json(pack))
    for name, df in pack_tables(pack).items():
        write_csv(folder / f"{name}.csv", df)
    return folder


def read_pack(folder: str | Path) -> PlanningPack:
    """Read a pack written by :func:`write_pack`."""
    p = Path(folder) / "pack.json"
    if not p.exists():
        raise InputError(f"{p}: not found; expected a pack folder written by `peakplan pack`")
    return pack_from_json(p.read_text())


# ------------------------------------------------------------------------------------
# Markdown report
# ------------------------------------------------------------------------------------
def _md_table(df: pd.DataFrame, floatfmt: str = ",.4g") -> str:
    cols = list(df.columns)
    out = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            cells.append(format(v, floatfmt) if isinstance(v, (float, np.floating)) and np.isfinite(v) else str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def flags_section(pack: PlanningPack) -> str:
    """High-severity flags first and prominently, then the rest."""
    lines = []
    high = pack.high_flags
    if high:
        lines += [f"> **{len(high)} HIGH-SEVERITY FLAG(S)** — review before acting on any plan:", ">"]
        lines += [f"> - **{f.rule}** at {f.location}: {f.evidence}" for f in high]
        lines.append("")
    rest = [f for f in pack.flags if f.severity != "high"]
    if rest:
        lines += ["| severity | rule | location | evidence |", "|---|---|---|---|"]
        lines += [f"| {f.severity} | {f.rule} | {f.location} | {f.evidence.replace('|', '/')} |" for f in rest]
    if not pack.flags:
        lines.append("No anomalies found.")
    return "\n".join(lines)


def render_markdown(pack: PlanningPack, manifest: dict, sections: list[tuple[str, str]]) -> str:
    """The run report: headline, flags, the given sections, definitions, provenance."""
    out = [f"# peakplan run: {pack.name}", "",
           f"Status: **{manifest.get('status', '?')}** · seed {manifest.get('seed')} · "
           f"{manifest.get('n_paths')} paths · {pack.T} {pack.period_kind}s from {pack.periods[0]} · "
           f"peakplan {manifest.get('versions', {}).get('peakplan')}", "",
           "## Anomaly flags", "", flags_section(pack), ""]
    for title, body in sections:
        out += [f"## {title}", "", body, ""]
    defs = pd.DataFrame([dataclasses.asdict(d) for d in pack.definitions])
    if not defs.empty:
        out += ["## Metric definitions", "", _md_table(defs), ""]
    out += ["## Provenance", "", "| input | sha256 |", "|---|---|"]
    out += [f"| {k} | `{v}` |" for k, v in sorted(manifest.get("inputs", {}).items())]
    return "\n".join(out) + "\n"


def md_table(df: pd.DataFrame, floatfmt: str = ",.4g") -> str:
    """A DataFrame as a Markdown table."""
    return _md_table(df, floatfmt)


# ------------------------------------------------------------------------------------
# plans and charts
# ------------------------------------------------------------------------------------
def write_plans(pack: PlanningPack, plans: dict, folder: Path) -> list[tuple[str, str]]:
    """Write ``plans/<name>.json`` and the action, scale-down, tripwire and cost tables.

    Returns the report sections (one per plan) in Markdown.
    """
    from peakplan import plans as plans_mod

    folder = Path(folder)
    actions, downs, wires, costs = [], [], [], []
    sections = []
    for name, plan in plans.items():
        write_json(folder / f"{name}.json", plans_mod.plan_to_dict(pack, plan))
        a = plans_mod.action_schedule(pack, plan)
        d = plans_mod.scale_down(pack, plan)
        w = plans_mod.tripwires(pack, plan)
        c = plans_mod.cost_breakdown(pack, plan)
        for df, acc in ((a, actions), (d, downs), (w, wires), (c, costs)):
            acc.append(df.assign(plan=name))
        same = getattr(plan, "identical_to", None)
        head = f"Plan {name} ({getattr(plan, 'label', '')})"
        if same:
            sections.append((head, f"Identical to Plan {same}: same decisions, not repeated."))
            continue
        body = [_solve_line(plan),
                f"Solved under: `{json.dumps(getattr(plan, 'constraints', {}), default=_default, sort_keys=True)}`", "",
                "**Action schedule**", "", md_table(a) if len(a) else "No capacity changes.", "",
                "**Scale-down / rollback**", "", md_table(d) if len(d) else "Nothing to scale down.", "",
                "**Tripwires**", "", md_table(w) if len(w) else "None.", "",
                "**Cost breakdown**", "", md_table(c) if len(c) else "-"]
        quality = getattr(plan, "quality", None)
        if quality:
            body += ["", "**Plan quality**", "", md_table(pd.DataFrame([{"statistic": k, "value": v}
                                                                      for k, v in _flat(quality).items()]))]
        sections.append((head, "\n".join(body)))
    for fname, acc in (("actions", actions), ("scale_down", downs), ("tripwires", wires), ("costs", costs)):
        if acc:
            write_parquet(folder / f"{fname}.parquet", pd.concat(acc, ignore_index=True))
    return sections


def _solve_line(plan) -> str:
    """How the plan's solve ended: optimal, or stopped by its time limit with the gap it had left."""
    status = str(getattr(plan, "status", "optimal"))
    constraints = getattr(plan, "constraints", None) or {}
    gap = constraints.get("solver_gap")
    secs = getattr(plan, "solve_seconds", None)
    how = {"benders": "the L-shaped method", "extensive": "the extensive form"}.get(constraints.get("method"))
    took = (f" in {secs:.1f} s" if secs is not None else "") + (f" by {how}" if how else "")
    if constraints.get("method_why"):
        took += f" ({constraints['method_why']})"
    if status == "time_limit":
        left = f", {gap:.2%} from the proven bound" if gap is not None and gap == gap else ", gap unknown"
        return (f"Solve: **stopped by its time limit**{took}{left}: the best plan found (a feasible point of the "
                f"model, its lever rules and budget re-checked; its cost is an upper bound).\n")
    return f"Solve: {status}{took}.\n"


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        elif isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
            out[key] = f"[{v[0]:,.4g}, {v[1]:,.4g}]"
        else:
            out[key] = v
    return out


def queue_charts(des, folder: Path) -> dict[str, Path]:
    """One PNG per plan: queue length over its worst simulated peak day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, wd in des.worst_day.items():
        fig, ax = plt.subplots(figsize=(6, 2.6), dpi=100)
        ax.step(wd.grid, wd.queue_length, where="post")
        ax.set_xlabel("hours since opening")
        ax.set_ylabel("waiting")
        ax.set_title(f"{name}: {wd.resource}, {wd.period} (SLA {wd.sla:.0%})", fontsize=9)
        fig.tight_layout()
        p = folder / f"queue_{name}.png"
        fig.savefig(p, metadata={"Software": None})
        plt.close(fig)
        out[name] = p
    return out
