"""Run ledger: round trip, hash chain, tamper detection, append-only guards, concurrent
writers, schema migration and the DataFrame listing."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from peakplan.errors import InputError, PeakplanError
from peakplan.ledger import (
    COLUMNS,
    GENESIS_HASH,
    SCHEMA_VERSION,
    Ledger,
    LedgerEntry,
    VerifyResult,
    canonical_json,
    hash_record,
    migrate,
)

SHA_A = hashlib.sha256(b"scenario").hexdigest()
SHA_B = hashlib.sha256(b"forecast").hexdigest()


def entry(i: int = 0, **overrides) -> LedgerEntry:
    """A complete entry; ``i`` varies the run id and the metrics."""
    fields = {
        "scenario": "retail_peak",
        "status": "ok",
        "run_id": f"run-{i:03d}",
        "scenario_hash": SHA_A,
        "input_hashes": {"forecast.csv": SHA_B},
        "seed": 7 + i,
        "version": "0.1.0",
        "metrics": {
            "A": {"fill_rate": 0.95 + i / 1000, "cost": 1200.0 + i},
            "B": {"fill_rate": 0.97, "cost": 1350.5},
        },
        "recommended": "B",
        "timings": {"simulate": 0.25, "optimize": 1.5},
    }
    fields.update(overrides)
    return LedgerEntry(**fields)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "out" / "ledger.sqlite"


@pytest.fixture
def ledger(db: Path):
    with Ledger(db) as opened:
        yield opened


def raw(db: Path) -> closing[sqlite3.Connection]:
    """A plain sqlite3 connection (autocommit), closed on leaving the ``with`` block."""
    return closing(sqlite3.connect(db, isolation_level=None))


# --------------------------------------------------------------------------- hashing


def test_hash_is_sha256_of_sorted_compact_json():
    fields = {
        "seq": 1,
        "run_id": "r",
        "created_at": "2026-01-01T00:00:00.000000+00:00",
        "scenario": "s",
        "scenario_hash": None,
        "input_hashes": {},
        "seed": 2**80,
        "version": "0.1.0",
        "status": "ok",
        "metrics": {"B": {"y": 2}, "A": {"x": 0.5}},
        "recommended": None,
        "timings": {},
        "error": None,
        "batch_id": None,
        "case_key": None,
    }
    text = (
        '{"created_at":"2026-01-01T00:00:00.000000+00:00","error":null,"input_hashes":{},'
        '"metrics":{"A":{"x":0.5},"B":{"y":2}},"prev_hash":"' + GENESIS_HASH + '",'
        '"recommended":null,"run_id":"r","scenario":"s","scenario_hash":null,'
        f'"seed":{2**80},"seq":1,"status":"ok","timings":{{}},"version":"0.1.0"}}'
    )
    assert hash_record(fields, GENESIS_HASH) == hashlib.sha256(text.encode()).hexdigest()
    # fields added in schema v2 enter the hash only when set
    assert hash_record({**fields, "case_key": "k"}, GENESIS_HASH) != hash_record(fields, GENESIS_HASH)
    assert hash_record(fields, "f" * 64) != hash_record(fields, GENESIS_HASH)
    assert canonical_json({"b": 1, "a": [1.5, None]}) == '{"a":[1.5,null],"b":1}'
    with pytest.raises(InputError, match=r"missing \['seq'"):
        hash_record({"run_id": "r"}, GENESIS_HASH)


# --------------------------------------------------------------------------- entries


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"status": "done"}, r"status must be one of 'ok', 'failed', 'infeasible', got 'done'"),
        ({"status": "failed"}, r"status 'failed' needs the error text"),
        ({"run_id": "bad id"}, r"run_id must be 1-200 letters.*got 'bad id'"),
        ({"scenario_hash": "abc"}, r"scenario_hash must be 64 lowercase hex, got 'abc'"),
        ({"input_hashes": {"f.csv": "xyz"}}, r"input_hashes\['f.csv'\] must be 64 lowercase hex"),
        ({"seed": -1}, r"seed must be a non-negative integer or None, got -1"),
        ({"recommended": "C"}, r"recommended='C' is not a plan in metrics \['A', 'B'\]"),
        ({"metrics": {"A": {"x": "high"}}, "recommended": None}, r"metrics\['A'\]\['x'\] must be a number"),
        ({"timings": {"solve": -2.0}}, r"timings\['solve'\] must be >= 0 seconds, got -2.0"),
        ({"created_at": "2026-01-01T00:00:00"}, r"created_at must carry a UTC offset"),
    ],
)
def test_bad_entry_is_refused_with_the_bad_value(overrides, message):
    with pytest.raises(InputError, match=message):
        entry(**overrides)


def test_entry_normalises_numpy_nan_and_time_zones():
    e = entry(
        seed=np.int64(3),
        metrics={"A": {"cost": np.float32(2.5), "n": np.int64(4), "cvar": float("nan")}},
        recommended="A",
        created_at="2026-03-01T12:00:00+02:00",
    )
    assert e.seed == 3 and type(e.seed) is int
    assert e.metrics == {"A": {"cost": 2.5, "n": 4, "cvar": None}}
    assert e.created_at == "2026-03-01T10:00:00.000000+00:00"


# --------------------------------------------------------------------------- round trip


def test_round_trip_append_show_find(ledger: Ledger):
    record = ledger.append(entry(1, case_key="case-1", batch_id="b1", seed=2**100))
    shown = ledger.show("run-001")
    assert list(shown) == list(COLUMNS)
    assert shown == record.to_dict()
    assert shown["seq"] == 1 and shown["prev_hash"] == GENESIS_HASH
    assert shown["seed"] == 2**100
    assert shown["metrics"] == {"A": {"fill_rate": 0.951, "cost": 1201.0}, "B": {"fill_rate": 0.97, "cost": 1350.5}}
    assert shown["input_hashes"] == {"forecast.csv": SHA_B}
    assert shown["timings"] == {"simulate": 0.25, "optimize": 1.5}
    assert shown["created_at"].endswith("+00:00")
    assert ledger.find(case_key="case-1") == [record]
    assert ledger.find(case_key="case-1", status="failed") == []
    assert ledger.show("run-0") == shown  # a unique prefix is enough


def test_defaults_are_filled_at_append(ledger: Ledger):
    record = ledger.append(LedgerEntry("retail_peak", "failed", error="forecast.csv missing"))
    assert len(record.run_id) == 32 and record.version
    assert record.metrics == {} and record.seed is None and record.error == "forecast.csv missing"
    assert ledger.head() == record and len(ledger) == 1


def test_duplicate_run_id_and_unknown_lookups_are_refused(ledger: Ledger):
    ledger.append(entry(1))
    ledger.append(entry(2))
    with pytest.raises(InputError, match=r"run_id 'run-001' is already in ledger .* \(seq 1\)"):
        ledger.append(entry(1))
    with pytest.raises(InputError, match=r"run_id 'nope' is not in ledger .* \(2 runs\)"):
        ledger.show("nope")
    with pytest.raises(InputError, match=r"prefix 'run-' is ambiguous: it matches 'run-001', 'run-002'"):
        ledger.show("run-")
    with pytest.raises(InputError, match=r"find needs at least one filter"):
        ledger.find()
    assert len(ledger) == 2


# --------------------------------------------------------------------------- chain


def test_chain_links_and_verifies(ledger: Ledger):
    records = [ledger.append(entry(i)) for i in range(5)]
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert [r.prev_hash for r in records[1:]] == [r.record_hash for r in records[:-1]]
    result = ledger.verify()
    assert result == VerifyResult(ok=True, n_records=5, head_hash=records[-1].record_hash)
    assert result.check() is result
    assert "ledger ok: 5 records" in str(result)
    truncated = ledger.verify(expected_head="e" * 64)
    assert not truncated.ok and truncated.mismatch == "head"


def test_empty_ledger_verifies(ledger: Ledger):
    assert ledger.verify() == VerifyResult(ok=True, n_records=0, head_hash=None)


def test_tampered_metric_is_found_and_named(db: Path):
    with Ledger(db) as ledger:
        for i in range(5):
            ledger.append(entry(i))
    with raw(db) as conn:
        conn.execute("DROP TRIGGER runs_no_update")
        conn.execute("UPDATE runs SET metrics = replace(metrics, '1202.0', '999.0') WHERE seq = 3")
        conn.execute("""CREATE TRIGGER runs_no_update BEFORE UPDATE ON runs BEGIN
            SELECT RAISE(ABORT, 'ledger table runs is append-only: UPDATE refused'); END""")
    with Ledger(db) as ledger:
        assert ledger.show("run-002")["metrics"]["A"]["cost"] == 999.0
        result = ledger.verify()
        assert not result.ok
        assert (result.bad_seq, result.bad_run_id, result.mismatch) == (3, "run-002", "record_hash")
        assert len(result.problems) == 1  # the links still hold: only the edited row is bad
        with pytest.raises(PeakplanError, match=r"seq 3 \(run_id 'run-002'\): record_hash mismatch"):
            result.check()


def test_rehashed_row_breaks_the_next_link(db: Path):
    with Ledger(db) as ledger:
        for i in range(3):
            ledger.append(entry(i))
    with raw(db) as conn:
        conn.execute("DROP TRIGGER runs_no_update")
        conn.execute("UPDATE runs SET record_hash = ? WHERE seq = 2", ("a" * 64,))
    with Ledger(db) as ledger:
        result = ledger.verify()
    assert (result.bad_seq, result.mismatch) == (2, "record_hash")
    assert any("seq 3 (run_id 'run-002'): prev_hash" in p for p in result.problems)
    assert any("trigger runs_no_update is missing" in p for p in result.problems)


def test_update_delete_and_out_of_chain_insert_are_refused(db: Path):
    with Ledger(db) as ledger:
        ledger.append(entry(1))
        ledger.append(entry(2))
    with raw(db) as conn:
        with pytest.raises(sqlite3.IntegrityError, match=r"append-only: UPDATE refused"):
            conn.execute("UPDATE runs SET status = 'failed' WHERE seq = 1")
        with pytest.raises(sqlite3.IntegrityError, match=r"append-only: DELETE refused"):
            conn.execute("DELETE FROM runs WHERE seq = 2")
        row = conn.execute("SELECT * FROM runs WHERE seq = 2").fetchone()
        copy = (4, "run-x", *row[2:])  # skips seq 3
        with pytest.raises(sqlite3.IntegrityError, match=r"must extend the chain"):
            conn.execute(f"INSERT INTO runs VALUES ({', '.join('?' * len(copy))})", copy)
    with Ledger(db) as ledger:
        assert ledger.verify().ok and len(ledger) == 2


# --------------------------------------------------------------------------- concurrency

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from peakplan.ledger import Ledger, LedgerEntry
    db, worker, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    with Ledger(db) as ledger:
        Path(f"{go}.ready{worker}").touch()
        deadline = time.monotonic() + 60
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        for i in range(n):
            ledger.append(LedgerEntry("load", "ok", run_id=f"w{worker}-{i:02d}", seed=i,
                                      case_key=f"case-{worker}-{i}"))
            time.sleep(0.002)  # work between appends, so writers interleave
    """
)


def test_concurrent_writers_get_contiguous_unique_seqs(tmp_path: Path, db: Path):
    n_workers, n_each = 4, 25
    Ledger(db).close()  # create and migrate once, as the batch runner does
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), str(w), str(n_each), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(n_workers)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("go.ready*"))) < n_workers and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.01)
        go.touch()  # release every writer at once
    finally:
        outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * n_workers, [err for _, err in outputs]
    with Ledger(db) as ledger:
        runs = ledger.list_runs()
        result = ledger.verify()
    assert len(runs) == n_workers * n_each
    assert runs["seq"].tolist() == list(range(1, n_workers * n_each + 1))
    assert runs["run_id"].is_unique and runs["record_hash"].is_unique
    expected = {f"w{w}-{i:02d}" for w in range(n_workers) for i in range(n_each)}
    assert set(runs["run_id"]) == expected
    assert runs["created_at"].is_monotonic_increasing  # stamped inside the write lock
    assert result.ok and result.n_records == n_workers * n_each, result.problems


# --------------------------------------------------------------------------- schema


def v1_fields(seq: int, prev_hash: str) -> dict:
    """A record as a version 1 writer stored it: no batch_id/case_key columns."""
    return {
        "seq": seq,
        "run_id": f"old-{seq}",
        "created_at": f"2025-11-0{seq}T08:00:00.000000+00:00",
        "scenario": "retail_peak",
        "scenario_hash": SHA_A,
        "input_hashes": {"forecast.csv": SHA_B},
        "seed": seq,
        "version": "0.0.9",
        "status": "ok",
        "metrics": {"A": {"fill_rate": 0.9}},
        "recommended": "A",
        "timings": {"total": 3.0},
        "error": None,
        "prev_hash": prev_hash,
    }


def test_v1_database_is_migrated_and_still_verifies(db: Path):
    db.parent.mkdir(parents=True)
    with raw(db) as conn:
        assert migrate(conn, target=1) == 1
        columns = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
        assert "case_key" not in columns
        prev = GENESIS_HASH
        for seq in (1, 2, 3):
            fields = v1_fields(seq, prev)
            stored = {**fields, "record_hash": hash_record(fields, prev), "seed": str(seq)}
            for name in ("input_hashes", "metrics", "timings"):
                stored[name] = canonical_json(fields[name])
            conn.execute(
                f"INSERT INTO runs ({', '.join(stored)}) VALUES ({', '.join('?' * len(stored))})",
                tuple(stored.values()),
            )
            prev = stored["record_hash"]
    with Ledger(db) as ledger:
        assert ledger.schema_version == SCHEMA_VERSION == 2
        assert ledger.verify().ok
        assert ledger.show("old-2")["case_key"] is None
        new = ledger.append(entry(9, case_key="c9", batch_id="b"))
        assert (new.seq, new.prev_hash) == (4, prev)
        assert [r.run_id for r in ledger.find(batch_id="b")] == ["run-009"]
        assert ledger.verify().ok
    with raw(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert "case_key" in [r[1] for r in conn.execute("PRAGMA table_info(runs)")]


def test_newer_schema_and_foreign_files_are_refused(tmp_path: Path, db: Path):
    Ledger(db).close()
    with raw(db) as conn:
        conn.execute("PRAGMA user_version = 9")
    with pytest.raises(PeakplanError, match=r"schema version 9 is newer than this peakplan supports \(2\)"):
        Ledger(db)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(InputError, match=r"junk.sqlite is not a peakplan ledger"):
        Ledger(junk)
    with pytest.raises(InputError, match=r"is a directory"):
        Ledger(tmp_path)


# --------------------------------------------------------------------------- listing


def test_list_runs_is_a_dataframe_with_filters(ledger: Ledger):
    empty = ledger.list_runs()
    assert list(empty.columns) == list(COLUMNS) and empty.empty
    ledger.append(entry(1, case_key="k1"))
    ledger.append(entry(2, status="infeasible", scenario="black_friday"))
    ledger.append(entry(3, status="failed", error="solver crashed", metrics={}, recommended=None))
    runs = ledger.list_runs()
    assert isinstance(runs, pd.DataFrame)
    assert list(runs.columns) == list(COLUMNS)
    assert runs["seq"].dtype == np.int64
    assert isinstance(runs["created_at"].dtype, pd.DatetimeTZDtype)
    assert runs["status"].tolist() == ["ok", "infeasible", "failed"]
    assert runs.loc[0, "metrics"]["B"]["cost"] == 1350.5
    assert runs.loc[0, "error"] is None and runs.loc[2, "error"] == "solver crashed"
    assert ledger.list_runs(status=["ok", "failed"])["run_id"].tolist() == ["run-001", "run-003"]
    assert ledger.list_runs(scenario="black_friday", case_key=None)["seq"].tolist() == [2]
    assert ledger.list_runs(case_key="k1")["run_id"].tolist() == ["run-001"]
    with pytest.raises(InputError, match=r"unknown ledger filter\(s\) \['colour'\]"):
        ledger.list_runs(colour="red")
    with pytest.raises(InputError, match=r"status filter \['done'\] is not a run status"):
        ledger.list_runs(status="done")


def test_closed_ledger_refuses_work(db: Path):
    ledger = Ledger(db)
    ledger.close()
    ledger.close()
    with pytest.raises(PeakplanError, match=r"ledger .*ledger.sqlite is closed"):
        ledger.append(entry())
