"""The run ledger: an append-only, hash-chained SQLite record of every run.

One row per run, written once and never changed. The database lives where the caller
puts it (by convention ``<out>/ledger.sqlite``), is opened in WAL mode, and is safe to
append to from several processes at once.

Schema (version 2, table ``runs``; full notes in ``docs/ledger.md``)::

    column         type     meaning
    seq            INTEGER  position in the chain: 1, 2, 3, ... with no gaps (primary key)
    run_id         TEXT     unique run identifier, e.g. the run directory's id
    created_at     TEXT     UTC time of the append, ISO 8601 with microseconds and +00:00
    scenario       TEXT     scenario name
    scenario_hash  TEXT     SHA-256 of the scenario file (64 hex), NULL if never read
    input_hashes   TEXT     JSON {file: sha256} of every input table
    seed           TEXT     root seed as a decimal string (entropy may exceed 64 bits)
    version        TEXT     peakplan version that produced the run
    status         TEXT     "ok", "failed" or "infeasible"
    metrics        TEXT     JSON {plan: {metric: value}}, headline metrics per plan
    recommended    TEXT     recommended plan (a key of metrics), NULL if none
    timings        TEXT     JSON {stage: seconds}
    error          TEXT     error text of a failed run, else NULL
    prev_hash      TEXT     record_hash of seq - 1 (64 zeros for seq 1)
    record_hash    TEXT     SHA-256 of the canonical JSON of this record (see below)
    batch_id       TEXT     (v2) batch the run belongs to, NULL outside a batch
    case_key       TEXT     (v2) the batch runner's key for the case, NULL outside a batch

``record_hash`` is the SHA-256 of the canonical JSON (sorted keys, no whitespace, UTF-8,
no NaN) of every column above except ``record_hash`` itself, JSON columns as their
values and ``seed`` as an integer. Columns added after version 1 enter the hash only when
set, so records written by a version 1 ledger verify unchanged after migration.

Triggers refuse UPDATE and DELETE on ``runs`` and any INSERT that does not extend the
chain; :meth:`Ledger.verify` recomputes every hash and link, so an edit made after
dropping the triggers is still found and named. Schema changes are the ordered
:data:`MIGRATIONS`, applied on open and tracked with ``PRAGMA user_version``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import random
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from pathlib import Path
from typing import Any

import pandas as pd

from peakplan.errors import InputError, PeakplanError

__all__ = [
    "COLUMNS",
    "GENESIS_HASH",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Ledger",
    "LedgerEntry",
    "LedgerRecord",
    "Migration",
    "RunStatus",
    "VerifyResult",
    "canonical_json",
    "hash_record",
    "migrate",
    "record_payload",
]

#: ``prev_hash`` of the first record.
GENESIS_HASH = "0" * 64

#: Columns of :meth:`Ledger.list_runs`, in order.
COLUMNS = (
    "seq",
    "run_id",
    "created_at",
    "scenario",
    "scenario_hash",
    "status",
    "recommended",
    "seed",
    "version",
    "batch_id",
    "case_key",
    "input_hashes",
    "metrics",
    "timings",
    "error",
    "prev_hash",
    "record_hash",
)

_JSON_COLUMNS = ("input_hashes", "metrics", "timings")
#: Fields hashed always (schema version 1).
_HASHED_V1 = (
    "seq",
    "run_id",
    "created_at",
    "scenario",
    "scenario_hash",
    "input_hashes",
    "seed",
    "version",
    "status",
    "metrics",
    "recommended",
    "timings",
    "error",
    "prev_hash",
)
#: Fields added by later schema versions: hashed only when not None.
_HASHED_LATER = ("batch_id", "case_key")
_FILTERS = ("run_id", "scenario", "scenario_hash", "status", "version", "recommended", "batch_id", "case_key")
_TRIGGERS = ("runs_no_update", "runs_no_delete", "runs_extend_chain")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class RunStatus(StrEnum):
    """How a run ended."""

    OK = "ok"
    """Plans were produced and scored."""
    FAILED = "failed"
    """The run stopped with an error (``error`` holds its text)."""
    INFEASIBLE = "infeasible"
    """No plan meets the targets inside the limits; the diagnosis is in the run directory."""


# --------------------------------------------------------------------------- hashing


def canonical_json(value: Any) -> str:
    """The one JSON text of ``value`` that is hashed: sorted keys, no whitespace, UTF-8.

    ``value`` must already be plain (dicts with str keys, lists, str, int, float, bool,
    None) and hold no NaN or infinity.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_payload(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed part of a record: version 1 fields always, later fields when set.

    ``fields`` maps column names to values (JSON columns as values, ``seed`` as int or
    None) and must include ``prev_hash``; ``record_hash`` and unknown keys are ignored.
    """
    missing = [name for name in _HASHED_V1 if name not in fields]
    if missing:
        raise InputError(f"record fields are missing {missing}; a record needs {list(_HASHED_V1)}")
    payload = {name: fields[name] for name in _HASHED_V1}
    payload.update({n: fields[n] for n in _HASHED_LATER if fields.get(n) is not None})
    return payload


def hash_record(fields: Mapping[str, Any], prev_hash: str) -> str:
    """SHA-256 (hex) of the canonical JSON of a record's fields with ``prev_hash``.

    ``fields`` is as for :func:`record_payload`; a ``prev_hash`` key in it is overridden
    by the argument, so the same call computes a new record's hash and checks a stored one.
    """
    payload = record_payload({**fields, "prev_hash": prev_hash})
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class LedgerEntry:
    """What a caller records about one run; :meth:`Ledger.append` adds seq and hashes.

    Values are checked and normalised on construction (plain dicts, UTC timestamps,
    non-finite metric values as None); a bad value raises :class:`InputError`.
    """

    scenario: str
    """Scenario name."""
    status: str
    """How the run ended: a :class:`RunStatus` value (``ok``, ``failed``, ``infeasible``)."""
    run_id: str | None = None
    """Unique run id (letters, digits, ``._-``, at most 200); None draws a uuid4 hex."""
    scenario_hash: str | None = None
    """SHA-256 (64 lowercase hex) of the scenario file; None if it was never read."""
    input_hashes: Mapping[str, str] = field(default_factory=dict)
    """SHA-256 of each input table, keyed by file name."""
    seed: int | None = None
    """Root seed of the run (non-negative integer, any size); None if no randomness ran."""
    version: str | None = None
    """peakplan version; None records the installed version at append time."""
    metrics: Mapping[str, Mapping[str, float | int | bool | None]] = field(default_factory=dict)
    """Headline metrics per plan, ``{plan: {metric: value}}``; NaN and inf become None."""
    recommended: str | None = None
    """The recommended plan, a key of ``metrics``; None if no plan is recommended."""
    timings: Mapping[str, float] = field(default_factory=dict)
    """Wall-clock seconds per stage, ``{stage: seconds}``."""
    error: str | None = None
    """Error text; required when ``status`` is ``failed``."""
    batch_id: str | None = None
    """Batch the run belongs to; None for a single run."""
    case_key: str | None = None
    """The batch runner's key for the case, used to find completed cases."""
    created_at: str | None = None
    """UTC time (ISO 8601, with offset); None stamps the time of the append."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        set_ = object.__setattr__
        if not isinstance(self.scenario, str) or not self.scenario:
            problems.append(f"scenario must be a non-empty string, got {self.scenario!r}")
        if self.status not in {s.value for s in RunStatus}:
            allowed = ", ".join(repr(s.value) for s in RunStatus)
            problems.append(f"status must be one of {allowed}, got {self.status!r}")
        else:
            set_(self, "status", RunStatus(self.status).value)
        if self.run_id is not None and not (isinstance(self.run_id, str) and _RUN_ID.fullmatch(self.run_id)):
            problems.append(
                f"run_id must be 1-200 letters, digits, '.', '_' or '-' starting with a "
                f"letter or digit, got {self.run_id!r}"
            )
        if self.scenario_hash is not None and not _is_sha256(self.scenario_hash):
            problems.append(f"scenario_hash must be 64 lowercase hex, got {self.scenario_hash!r}")
        set_(self, "input_hashes", _str_mapping("input_hashes", self.input_hashes, problems))
        for name, digest in self.input_hashes.items():
            if not _is_sha256(digest):
                problems.append(f"input_hashes[{name!r}] must be 64 lowercase hex, got {digest!r}")
        set_(self, "seed", _seed(self.seed, problems))
        set_(self, "metrics", _metrics(self.metrics, problems))
        set_(self, "timings", _timings(self.timings, problems))
        if self.recommended is not None and self.recommended not in self.metrics:
            problems.append(f"recommended={self.recommended!r} is not a plan in metrics {sorted(self.metrics)}")
        for name in ("version", "error", "batch_id", "case_key"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                problems.append(f"{name} must be a non-empty string or None, got {value!r}")
        if self.status == RunStatus.FAILED and not self.error:
            problems.append("status 'failed' needs the error text in error")
        if self.created_at is not None:
            set_(self, "created_at", _utc_iso(self.created_at, problems))
        if problems:
            raise InputError(f"invalid ledger entry for scenario {self.scenario!r}", problems)


@dataclass(frozen=True)
class LedgerRecord:
    """One stored run: an entry plus its place in the chain. Treat the dicts as read-only."""

    seq: int
    """Position in the chain, from 1, without gaps."""
    run_id: str
    """Unique run id."""
    created_at: str
    """UTC time of the append, ISO 8601 (``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``)."""
    scenario: str
    """Scenario name."""
    scenario_hash: str | None
    """SHA-256 of the scenario file."""
    input_hashes: dict[str, str]
    """SHA-256 of each input table, keyed by file name."""
    seed: int | None
    """Root seed."""
    version: str
    """peakplan version that produced the run."""
    status: str
    """``ok``, ``failed`` or ``infeasible``."""
    metrics: dict[str, dict[str, Any]]
    """Headline metrics per plan."""
    recommended: str | None
    """Recommended plan."""
    timings: dict[str, float]
    """Seconds per stage."""
    error: str | None
    """Error text of a failed run."""
    batch_id: str | None
    """Batch the run belongs to."""
    case_key: str | None
    """Batch case key."""
    prev_hash: str
    """``record_hash`` of the previous record (:data:`GENESIS_HASH` for seq 1)."""
    record_hash: str
    """:func:`hash_record` of this record's fields and ``prev_hash``."""

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict (deep copy), keys in :data:`COLUMNS` order."""
        data = asdict(self)
        return {name: data[name] for name in COLUMNS}


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :meth:`Ledger.verify`."""

    ok: bool
    """True when every hash, link, sequence number and guard trigger checks out."""
    n_records: int
    """Number of records walked."""
    head_hash: str | None
    """``record_hash`` of the last record (None for an empty ledger); keep it to detect
    later truncation with ``verify(expected_head=...)``."""
    bad_seq: int | None = None
    """seq of the first bad record, None if none is bad."""
    bad_run_id: str | None = None
    """run_id of the first bad record."""
    mismatch: str | None = None
    """What failed first: ``record_hash`` (a field was changed), ``prev_hash`` (a link is
    broken), ``seq`` (a gap or a duplicate), ``format`` (unreadable column), ``triggers``
    (an append-only guard is missing) or ``head`` (the last hash is not the expected one)."""
    problems: tuple[str, ...] = ()
    """One line per problem found, in chain order."""

    def __str__(self) -> str:
        if self.ok:
            return f"ledger ok: {self.n_records} records, head {self.head_hash}"
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return f"ledger verification failed ({self.n_records} records):\n{lines}"

    def check(self) -> VerifyResult:
        """Return self if ok, else raise :class:`PeakplanError` listing the problems."""
        if not self.ok:
            raise PeakplanError(str(self))
        return self


# --------------------------------------------------------------------------- migrations


@dataclass(frozen=True)
class Migration:
    """One schema step; ``apply`` runs inside the caller's write transaction."""

    version: int
    """Schema version after this step."""
    summary: str
    """What the step changes."""
    apply: Callable[[sqlite3.Connection], None]
    """Executes the DDL (never ``executescript``, which would commit)."""


def _create_v1(conn: sqlite3.Connection) -> None:
    # Frozen: this is what a version 1 ledger is. Change the schema with a new migration.
    conn.execute(
        """CREATE TABLE runs (
            seq           INTEGER PRIMARY KEY CHECK (seq >= 1),
            run_id        TEXT NOT NULL UNIQUE,
            created_at    TEXT NOT NULL,
            scenario      TEXT NOT NULL,
            scenario_hash TEXT,
            input_hashes  TEXT NOT NULL,
            seed          TEXT,
            version       TEXT NOT NULL,
            status        TEXT NOT NULL,
            metrics       TEXT NOT NULL,
            recommended   TEXT,
            timings       TEXT NOT NULL,
            error         TEXT,
            prev_hash     TEXT NOT NULL,
            record_hash   TEXT NOT NULL UNIQUE
        )"""
    )
    conn.execute("CREATE INDEX runs_scenario ON runs (scenario)")
    conn.execute(
        """CREATE TRIGGER runs_no_update BEFORE UPDATE ON runs BEGIN
            SELECT RAISE(ABORT, 'ledger table runs is append-only: UPDATE refused');
        END"""
    )
    conn.execute(
        """CREATE TRIGGER runs_no_delete BEFORE DELETE ON runs BEGIN
            SELECT RAISE(ABORT, 'ledger table runs is append-only: DELETE refused');
        END"""
    )
    conn.execute(
        f"""CREATE TRIGGER runs_extend_chain BEFORE INSERT ON runs
        WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM runs)
          OR NEW.prev_hash IS NOT COALESCE(
               (SELECT record_hash FROM runs ORDER BY seq DESC LIMIT 1), '{GENESIS_HASH}')
        BEGIN
            SELECT RAISE(ABORT, 'ledger insert must extend the chain: seq = last seq + 1, prev_hash = last record_hash');
        END"""
    )


def _add_batch_columns_v2(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE runs ADD COLUMN batch_id TEXT")
    conn.execute("ALTER TABLE runs ADD COLUMN case_key TEXT")
    conn.execute("CREATE INDEX runs_case_key ON runs (case_key)")
    conn.execute("CREATE INDEX runs_batch_id ON runs (batch_id)")


#: Ordered schema steps; ``MIGRATIONS[k]`` takes a database from version k to k + 1.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create table runs, its indexes and the append-only triggers", _create_v1),
    Migration(2, "add batch_id and case_key (batch runner) with indexes", _add_batch_columns_v2),
)
#: Schema version this code reads and writes.
SCHEMA_VERSION = MIGRATIONS[-1].version


def migrate(conn: sqlite3.Connection, target: int | None = None) -> int:
    """Bring the database on ``conn`` to schema ``target`` (default: the latest).

    Runs the missing :data:`MIGRATIONS` in one ``BEGIN IMMEDIATE`` transaction, so
    concurrent openers migrate once. Never downgrades; refuses a database newer than
    this code. ``conn`` must not be inside a transaction. Returns the version reached.
    """
    target = SCHEMA_VERSION if target is None else target
    if not 0 <= target <= SCHEMA_VERSION:
        raise InputError(f"schema target must be 0..{SCHEMA_VERSION}, got {target}")
    if _user_version(conn) >= target:
        return _check_not_newer(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = _check_not_newer(conn)
        for step in MIGRATIONS[current:target]:
            step.apply(conn)
        if current < target:
            conn.execute(f"PRAGMA user_version = {int(target)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return max(current, target)


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _check_not_newer(conn: sqlite3.Connection) -> int:
    current = _user_version(conn)
    if current > SCHEMA_VERSION:
        raise PeakplanError(
            f"ledger schema version {current} is newer than this peakplan supports "
            f"({SCHEMA_VERSION}); upgrade peakplan to read it"
        )
    return current


# --------------------------------------------------------------------------- the ledger


class Ledger:
    """An open run ledger. Use as a context manager, or call :meth:`close`.

    >>> with Ledger(out / "ledger.sqlite") as ledger:          # doctest: +SKIP
    ...     record = ledger.append(LedgerEntry("retail_peak", "ok", seed=7))
    ...     ledger.verify().check()

    ``busy_timeout_s`` bounds how long an append waits for other writers before it
    raises :class:`PeakplanError`.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        if busy_timeout_s <= 0:
            raise InputError(f"busy_timeout_s must be positive, got {busy_timeout_s}")
        self.path = Path(path)
        self._busy_timeout_s = float(busy_timeout_s)
        self._jitter = random.Random()
        if self.path.is_dir():
            raise InputError(f"ledger path {self.path} is a directory; pass a file path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=self._busy_timeout_s, isolation_level=None
        )
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            mode = self._retry("enable WAL", self._enable_wal)
            if mode != "wal":
                raise PeakplanError(
                    f"ledger {self.path}: journal mode is {mode!r}, not 'wal'; put the ledger on a local file system"
                )
            self._retry("migrate the schema", lambda: migrate(self._connection))
        except sqlite3.DatabaseError as exc:
            self.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise
            raise InputError(f"{self.path} is not a peakplan ledger: {exc}") from exc
        except BaseException:
            self.close()
            raise

    # -- lifecycle

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"Ledger({str(self.path)!r}, {state})"

    def __len__(self) -> int:
        return int(self._connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    @property
    def schema_version(self) -> int:
        """The database's ``PRAGMA user_version``."""
        return _user_version(self._connection)

    # -- writing

    def append(self, entry: LedgerEntry) -> LedgerRecord:
        """Append ``entry`` as the next record of the chain and return the stored record.

        Reads the last hash and inserts in one ``BEGIN IMMEDIATE`` transaction, retried
        while other writers hold the lock, so concurrent appends from any number of
        processes get distinct, contiguous seq numbers. A duplicate run_id raises
        :class:`InputError`.
        """
        if not isinstance(entry, LedgerEntry):
            raise InputError(f"append takes a LedgerEntry, got {type(entry).__name__}")
        return self._retry("append", lambda: self._append_once(entry))

    def _append_once(self, entry: LedgerEntry) -> LedgerRecord:
        conn = self._connection
        conn.execute("BEGIN IMMEDIATE")
        try:
            run_id = entry.run_id or uuid.uuid4().hex
            clash = conn.execute("SELECT seq FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if clash is not None:
                raise InputError(
                    f"run_id {run_id!r} is already in ledger {self.path} (seq {clash[0]}); run ids must be unique"
                )
            last = conn.execute("SELECT seq, record_hash FROM runs ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
            fields: dict[str, Any] = {
                "seq": seq,
                "run_id": run_id,
                "created_at": entry.created_at or _now_utc(),
                "scenario": entry.scenario,
                "scenario_hash": entry.scenario_hash,
                "input_hashes": dict(entry.input_hashes),
                "seed": entry.seed,
                "version": entry.version or _peakplan_version(),
                "status": entry.status,
                "metrics": {plan: dict(m) for plan, m in entry.metrics.items()},
                "recommended": entry.recommended,
                "timings": dict(entry.timings),
                "error": entry.error,
                "batch_id": entry.batch_id,
                "case_key": entry.case_key,
                "prev_hash": prev_hash,
            }
            fields["record_hash"] = hash_record(fields, prev_hash)
            stored = {
                **fields,
                **{c: canonical_json(fields[c]) for c in _JSON_COLUMNS},
                "seed": None if entry.seed is None else str(entry.seed),
            }
            names = ", ".join(stored)
            marks = ", ".join("?" for _ in stored)
            conn.execute(f"INSERT INTO runs ({names}) VALUES ({marks})", tuple(stored.values()))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return LedgerRecord(**fields)

    # -- reading

    def list_runs(self, **filters: Any) -> pd.DataFrame:
        """All runs matching ``filters`` as a DataFrame with :data:`COLUMNS`, by seq.

        Filters are equality tests on ``run_id, scenario, scenario_hash, status, version,
        recommended, batch_id, case_key``; a list/tuple/set value matches any of its
        items, None means no filter. ``created_at`` is a UTC datetime column; the JSON
        columns hold dicts.
        """
        rows = [r.to_dict() for r in self._select(filters)]
        # object columns keep None as None (pandas would turn it into NaN in str columns)
        frame = pd.DataFrame({c: pd.Series([r[c] for r in rows], dtype=object) for c in COLUMNS})
        frame["seq"] = frame["seq"].astype("int64")
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True, format="ISO8601").astype(
            "datetime64[us, UTC]"
        )
        return frame

    def find(self, **filters: Any) -> list[LedgerRecord]:
        """Records matching ``filters`` (as for :meth:`list_runs`), in seq order.

        The batch runner finds completed cases with ``find(case_key=key, status="ok")``.
        At least one filter must be given.
        """
        if not any(v is not None for v in filters.values()):
            raise InputError(f"find needs at least one filter of {list(_FILTERS)}; use list_runs() for all")
        return list(self._select(filters))

    def show(self, run_id: str) -> dict[str, Any]:
        """The full record of ``run_id`` (or of a unique prefix of it) as a dict."""
        conn = self._connection
        row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            rows = conn.execute(
                "SELECT * FROM runs WHERE substr(run_id, 1, ?) = ? ORDER BY seq LIMIT 6",
                (len(run_id), run_id),
            ).fetchall()
            if len(rows) > 1:
                ids = ", ".join(repr(r["run_id"]) for r in rows[:5])
                raise InputError(f"run_id prefix {run_id!r} is ambiguous: it matches {ids}")
            if not rows:
                raise InputError(
                    f"run_id {run_id!r} is not in ledger {self.path} ({len(self)} runs); list them with list_runs()"
                )
            row = rows[0]
        return _row_to_record(row).to_dict()

    def head(self) -> LedgerRecord | None:
        """The last record, or None for an empty ledger."""
        row = self._connection.execute("SELECT * FROM runs ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else _row_to_record(row)

    # -- verification

    def verify(self, *, expected_head: str | None = None) -> VerifyResult:
        """Walk the chain in one read snapshot and recompute every hash and link.

        Also checks that the append-only triggers exist and, when ``expected_head`` is
        given (a head hash kept elsewhere), that the chain still ends there.
        """
        conn = self._connection
        problems: list[_Problem] = []
        n_records, head = 0, None
        conn.execute("BEGIN")
        try:
            expected_seq, expected_prev = 1, GENESIS_HASH
            for row in conn.execute("SELECT * FROM runs ORDER BY seq"):
                problems += _row_problems(row, expected_seq, expected_prev)
                n_records, head = n_records + 1, row["record_hash"]
                expected_seq, expected_prev = row["seq"] + 1, head
            present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        finally:
            conn.execute("COMMIT")
        for name in _TRIGGERS:
            if name not in present:
                problems.append((None, None, "triggers", f"append-only trigger {name} is missing"))
        if expected_head is not None and head != expected_head:
            text = f"chain ends at {head}, expected {expected_head}; records were removed or the ledger was replaced"
            problems.append((None, None, "head", text))
        first = problems[0] if problems else (None, None, None, "")
        return VerifyResult(
            ok=not problems,
            n_records=n_records,
            head_hash=head,
            bad_seq=first[0],
            bad_run_id=first[1],
            mismatch=first[2],
            problems=tuple(p[3] for p in problems),
        )

    # -- internals

    @property
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise PeakplanError(f"ledger {self.path} is closed")
        return self._conn

    def _enable_wal(self) -> str:
        return str(self._connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()

    def _select(self, filters: Mapping[str, Any]) -> Iterator[LedgerRecord]:
        unknown = sorted(set(filters) - set(_FILTERS))
        if unknown:
            raise InputError(f"unknown ledger filter(s) {unknown}; filters are {list(_FILTERS)}")
        clauses, params = [], []
        for name, value in filters.items():
            if value is None:
                continue
            values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
            if name == "status":
                bad = [v for v in values if v not in {s.value for s in RunStatus}]
                if bad:
                    allowed = [s.value for s in RunStatus]
                    raise InputError(f"status filter {bad} is not a run status; use {allowed}")
            clauses.append(f"{name} IN ({', '.join('?' for _ in values)})")
            params.extend(str(v) for v in values)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._connection.execute(f"SELECT * FROM runs{where} ORDER BY seq", params)
        return (_row_to_record(row) for row in rows.fetchall())

    def _retry(self, what: str, action: Callable[[], Any]) -> Any:
        """Run ``action``, retrying with jittered backoff while the database is busy."""
        deadline = time.monotonic() + self._busy_timeout_s
        delay = 0.002
        while True:
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise PeakplanError(
                        f"ledger {self.path}: could not {what} within {self._busy_timeout_s} s; "
                        "another process holds the write lock"
                    ) from exc
                time.sleep(delay * (1.0 + self._jitter.random()))
                delay = min(2 * delay, 0.1)


# --------------------------------------------------------------------------- helpers


_Problem = tuple[int | None, str | None, str, str]
"""(seq, run_id, what mismatched, message) of one problem found by verify."""


def _row_problems(row: sqlite3.Row, expected_seq: int, expected_prev: str) -> list[_Problem]:
    """Check one stored row against its expected place in the chain and its own hash."""
    seq, run_id = row["seq"], row["run_id"]
    where = f"seq {seq} (run_id {run_id!r})"
    found: list[_Problem] = []
    if seq != expected_seq:
        found.append((seq, run_id, "seq", f"{where}: expected seq {expected_seq}; records are missing or duplicated"))
    if row["prev_hash"] != expected_prev:
        text = f"{where}: prev_hash {row['prev_hash']} is not the previous record_hash {expected_prev}"
        found.append((seq, run_id, "prev_hash", text))
    try:
        fields = _row_fields(row)
    except (ValueError, TypeError) as exc:
        return [*found, (seq, run_id, "format", f"{where}: unreadable value: {exc}")]
    recomputed = hash_record(fields, row["prev_hash"])
    if recomputed != row["record_hash"]:
        text = (
            f"{where}: record_hash mismatch: stored {row['record_hash']}, recomputed {recomputed}; "
            "a field of this record was changed after it was written"
        )
        found.append((seq, run_id, "record_hash", text))
    return found


def _row_fields(row: sqlite3.Row) -> dict[str, Any]:
    fields = {name: row[name] for name in row.keys()}  # noqa: SIM118 - Row has no iteration
    for name in _JSON_COLUMNS:
        fields[name] = json.loads(fields[name])
    fields["seed"] = None if fields["seed"] is None else int(fields["seed"])
    return fields


def _row_to_record(row: sqlite3.Row) -> LedgerRecord:
    fields = _row_fields(row)
    return LedgerRecord(**{name: fields.get(name) for name in COLUMNS})


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def _now_utc() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _utc_iso(value: object, problems: list[str]) -> str | None:
    try:
        stamp = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    except ValueError:
        problems.append(f"created_at must be an ISO 8601 time, got {value!r}")
        return None
    if stamp.tzinfo is None:
        problems.append(f"created_at must carry a UTC offset, got {value!r}")
        return None
    return stamp.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _peakplan_version() -> str:
    try:
        return _dist_version("peakplan")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        return "unknown"


def _str_mapping(name: str, value: object, problems: list[str]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        problems.append(f"{name} must be a mapping, got {type(value).__name__}")
        return {}
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        problems.append(f"{name} keys must be strings, got {bad[:5]}")
    return {str(k): v for k, v in value.items()}


def _number(name: str, value: object, problems: list[str]) -> float | int | bool | None:
    if value is None or isinstance(value, bool):
        return value
    if hasattr(value, "item") and not isinstance(value, (int, float)):
        value = value.item()  # numpy scalar -> Python scalar
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    problems.append(f"{name} must be a number or None, got {type(value).__name__} {value!r}")
    return None


def _metrics(value: object, problems: list[str]) -> dict[str, dict[str, Any]]:
    plans = _str_mapping("metrics", value, problems)
    out: dict[str, dict[str, Any]] = {}
    for plan, per_plan in plans.items():
        cells = _str_mapping(f"metrics[{plan!r}]", per_plan, problems)
        out[plan] = {m: _number(f"metrics[{plan!r}][{m!r}]", v, problems) for m, v in cells.items()}
    return out


def _timings(value: object, problems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for stage, seconds in _str_mapping("timings", value, problems).items():
        number = _number(f"timings[{stage!r}]", seconds, problems)
        if number is not None and not isinstance(number, bool) and number < 0:
            problems.append(f"timings[{stage!r}] must be >= 0 seconds, got {number}")
        out[stage] = number
    return out


def _seed(value: object, problems: list[str]) -> int | None:
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, int):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        problems.append(f"seed must be a non-negative integer or None, got {value!r}")
        return None
    return int(value)
