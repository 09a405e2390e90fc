"""Cases: every input of a batch resolved into validated, content-keyed :class:`Case` objects.

A scenario file is one case (named after the file); a sweep spec gives one case per grid
combination and named case (:mod:`peakplan.batch.sweep`). Each case is validated and keyed
by :func:`case_key`: the SHA-256 of the resolved scenario, the bytes of every input table,
the seed, the number of paths and the peakplan version. Files are read through
:mod:`peakplan.loaders`.
"""

from __future__ import annotations

import copy
import glob
import hashlib
import io
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import TypeAdapter

from peakplan.batch.sweep import TABLES, CaseSpec, apply_overrides, is_sweep, load_sweep, override_table
from peakplan.config import Scenario, parse_scenario
from peakplan.errors import InputError
from peakplan.ledger import canonical_json
from peakplan.loaders import file_sha256, load_scenario, read_raw_table, read_yaml

__all__ = ["Case", "case_key", "peakplan_version", "plan_batch", "resolve_case"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")
_RESERVED = {"ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm", "summary.parquet", "summary.csv",
             "batch.json"}
_SCENARIO_ADAPTER = TypeAdapter(Scenario)


def peakplan_version() -> str:
    """The installed peakplan version (``unknown`` when running from an uninstalled tree)."""
    try:
        return version("peakplan")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_yaml_cache: dict[tuple[str, int, int], Any] = {}
_sha_cache: dict[tuple[str, int, int], str] = {}


def _stat_key(path: Path) -> tuple[str, int, int] | None:
    """Cache key of a file version (path, mtime, size); None if it cannot be stat'ed."""
    try:
        st = path.stat()
    except OSError:
        return None
    return str(path), st.st_mtime_ns, st.st_size


def _read_yaml(path: Path, what: str) -> Any:
    """The YAML document of a file (a fresh copy each call; read once per file version)."""
    k = _stat_key(path)
    if k is None:
        return read_yaml(path, what)  # raises the loader's message
    if k not in _yaml_cache:
        _yaml_cache[k] = read_yaml(path, what)
    return copy.deepcopy(_yaml_cache[k])


def _sha_file(path: Path) -> str:
    """SHA-256 of a file's bytes (read once per file version)."""
    k = _stat_key(path)
    if k is None:
        return file_sha256(path)  # raises OSError
    if k not in _sha_cache:
        _sha_cache[k] = file_sha256(path)
    return _sha_cache[k]


def _table_bytes(df: pd.DataFrame, suffix: str) -> bytes:
    """The bytes of a rewritten table in its file format (what the case key hashes)."""
    if suffix == ".csv":
        return df.to_csv(index=False).encode()
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, engine="pyarrow")
    return buf.getvalue()


def case_key(scenario: Mapping[str, Any], table_hashes: Mapping[str, str], seed: int, paths: int,
             peakplan: str) -> str:
    """SHA-256 of a case: resolved scenario (without paths), table bytes, seed, paths, version.

    ``scenario`` is the validated scenario as JSON data; its ``tables`` and ``base_dir``
    (locations, not content) are replaced by ``table_hashes`` (SHA-256 of each table's bytes).
    """
    body = {k: v for k, v in scenario.items() if k not in ("tables", "base_dir")}
    payload = {"scenario": body, "tables": dict(table_hashes), "seed": int(seed), "paths": int(paths),
               "peakplan": peakplan}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


@dataclass(frozen=True)
class Case:
    """A resolved case: what will run, under which key."""

    name: str
    """Case name: the run directory's name under ``--out``."""
    source: Path
    """Scenario file the case starts from."""
    overrides: dict[str, Any]
    """Overrides applied, in order (empty for a plain scenario file)."""
    key: str
    """:func:`case_key` (for a case that failed to resolve: a hash of its inputs as given)."""
    seed: int | None
    """Root seed (None when resolution failed before it was known)."""
    paths: int | None
    """Monte Carlo paths."""
    scenario: str | None = None
    """Scenario name."""
    error: str | None = None
    """Why the case cannot run (bad input found while resolving), else None."""
    files: dict[str, Path | bytes] = field(default_factory=dict, repr=False)
    """Materialised inputs: file name -> source path to copy or bytes to write."""
    hashes: dict[str, str] = field(default_factory=dict, repr=False)
    """SHA-256 of each materialised input, by file name (``scenario.yaml`` included)."""
    data: dict | None = field(default=None, repr=False)
    """The resolved scenario mapping (overrides applied)."""


_sha_cache: dict[tuple[str, int, int], str] = {}


def _fallback_key(spec: CaseSpec, seed: int | None, paths: int | None, ver: str) -> str:
    try:
        src = _sha_file(spec.source)
    except OSError:
        src = None
    body = {"source": src, "overrides": spec.overrides, "seed": seed, "paths": paths, "peakplan": ver}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def resolve_case(spec: CaseSpec, *, seed: int | None = None, paths: int | None = None) -> Case:
    """Validate a case and key it; bad input gives a :class:`Case` with ``error`` set.

    ``seed``/``paths`` (the command line's) win over the case's, which win over the scenario's.
    """
    ver = peakplan_version()
    seed = spec.seed if seed is None else seed
    paths = spec.paths if paths is None else paths
    try:
        raw = _read_yaml(spec.source, "scenario")
        if not isinstance(raw, dict):
            load_scenario(spec.source)  # raises the loader's message
            raise InputError(f"{spec.source}: the scenario must be a mapping")
        data, cells = apply_overrides(raw, spec.overrides)
        where = f"{spec.source}" + (f" (case {spec.name} with its overrides)" if spec.overrides else "")
        scn = parse_scenario({**data, "base_dir": str(spec.source.parent)}, source=where)
        files: dict[str, Path | bytes] = {}
        hashes: dict[str, str] = {}
        local: dict[str, str] = {}
        for t in TABLES:
            p = scn.path(t)
            if p is None:
                continue
            if not p.is_file():
                raise InputError(f"{where}: tables.{t}: file not found: {p}")
            fname = t + p.suffix.lower()
            local[t] = fname
            if t in cells:
                blob = _table_bytes(override_table(read_raw_table(p), t, cells[t]), p.suffix.lower())
                files[fname], hashes[fname] = blob, hashlib.sha256(blob).hexdigest()
            else:
                files[fname], hashes[fname] = p, _sha_file(p)
        missing = sorted(set(cells) - set(local))
        if missing:
            raise InputError(f"{where}: overrides name table(s) {missing} the scenario does not use; "
                             f"its tables are {sorted(local)}")
        seed = scn.simulation.seed if seed is None else int(seed)
        paths = scn.simulation.paths if paths is None else int(paths)
        doc = _SCENARIO_ADAPTER.dump_python(scn, mode="json")
        key = case_key(doc, {t: hashes[f] for t, f in local.items()}, seed, paths, ver)
        mat = {**data, "tables": local}
        blob = yaml.dump(mat, Dumper=_Dumper, sort_keys=False, allow_unicode=True).encode()
        files["scenario.yaml"], hashes["scenario.yaml"] = blob, hashlib.sha256(blob).hexdigest()
        return Case(spec.name, spec.source, dict(spec.overrides), key, seed, paths, scn.name, None, files, hashes,
                    data)
    except InputError as exc:
        return Case(spec.name, spec.source, dict(spec.overrides), _fallback_key(spec, seed, paths, ver),
                    seed, paths, None, str(exc))


def _expand(inputs: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        text = str(item)
        if glob.has_magic(text):
            hits = sorted(glob.glob(text, recursive=True))
            if not hits:
                raise InputError(f"{text}: the pattern matches no file")
            files += [Path(h) for h in hits if Path(h).is_file()]
        else:
            p = Path(text)
            if not p.is_file():
                raise InputError(f"{p}: " + ("is a folder; give scenario files or a glob such as "
                                              f"'{p}/*.yaml'" if p.is_dir() else "file not found"))
            files.append(p)
    seen: set[Path] = set()
    out = []
    for f in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def plan_batch(inputs: Sequence[str | Path], *, seed: int | None = None, paths: int | None = None) -> list[Case]:
    """Resolve scenario files, globs and sweep specs into cases (in input order).

    Raises :class:`InputError` for a missing file, a pattern that matches nothing, a bad
    sweep spec, or clashing case names; a case whose scenario is bad is returned with
    ``error`` set so it fails alone.
    """
    specs: list[CaseSpec] = []
    for f in _expand(inputs):
        try:
            data = _read_yaml(f, "scenario")
        except InputError:
            data = None  # the case fails alone with the loader's message
        if is_sweep(data):
            specs += load_sweep(f, data)
        else:
            specs.append(CaseSpec(f.stem, f))
    problems = []
    names = [s.name for s in specs]
    counts = Counter(names)
    for n in sorted(n for n, k in counts.items() if k > 1):
        problems.append(f"case name {n!r} is used {counts[n]} times "
                        f"({', '.join(str(s.source) for s in specs if s.name == n)}); case names must be unique")
    for n in names:
        if not _NAME.fullmatch(n) or n in _RESERVED:
            problems.append(f"case name {n!r}: use 1-120 letters, digits, '.', '_' or '-', starting with a letter "
                            f"or digit, and not one of {sorted(_RESERVED)}")
    if problems:
        raise InputError(f"{len(problems)} problem(s) with the batch's case names", problems)
    cases = [resolve_case(s, seed=seed, paths=paths) for s in specs]
    return cases
