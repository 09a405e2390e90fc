import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

import peakplan as pp
from peakplan import pipeline, report
from peakplan.cli import main
from peakplan.testing import assert_conservation, assert_packs_equal

SCN = ROOT / "scenarios" / "retail_peak.yaml"


@pytest.fixture(scope="module")
def retail_pack():
    return pp.build_pack(SCN)


def test_retail_pack_shapes_and_flags(retail_pack):
    p = retail_pack
    assert (p.T, p.G, p.R) == (16, 3, 6)
    assert p.L == 13
    assert p.period_kind == "week"
    rules = {f.rule for f in p.flags}
    assert "event_in_freeze" in rules  # the Christmas run-up overlaps the freeze
    assert p.flags[0].severity == "high"
    assert np.allclose(np.diag(p.seg_corr), 1.0)
    assert np.all(np.linalg.eigvalsh(p.seg_corr) > 0)
    # committed temps at central: 120 h/week in the committed window
    j = p.lever_index("temp_pickers_central")
    assert p.arr("committed")[j].max() == 120.0


def test_pack_round_trip_is_identical(retail_pack, tmp_path):
    report.write_pack(retail_pack, tmp_path / "pack")
    assert_packs_equal(retail_pack, report.read_pack(tmp_path / "pack"))


def test_cli_pack_writes_folder(tmp_path, capsys):
    assert main(["pack", str(SCN), "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "pack.json").exists()
    assert "HIGH event_in_freeze" in capsys.readouterr().out
    flags = pd.read_csv(tmp_path / "p" / "flags.csv")
    assert flags["severity"].iloc[0] == "high"


def test_run_writes_complete_directory(tmp_path):
    res = pipeline.run(SCN, tmp_path / "run", paths=3000, seed=5, opt_samples=15, quality=False)
    d = res.run_dir
    for name in ("manifest.json", "summary.json", "report.md", "paths.parquet", "pack/pack.json", "comparison.parquet",
                 "comparison.csv", "plans/A.json", "plans/actions.parquet", "plans/scale_down.parquet",
                 "plans/tripwires.parquet", "escalations.json", "des_days.parquet", "charts/queue_A.png"):
        assert (d / name).exists(), name
    man = json.loads((d / "manifest.json").read_text())
    assert man["status"] == "ok" and man["seed"] == 5 and man["n_paths"] == 3000
    assert set(man["inputs"]) == {"scenario", "forecast", "capacity", "levers", "history", "committed"}
    assert all(len(h) == 64 for h in man["inputs"].values())
    paths = pd.read_parquet(d / "paths.parquet")
    assert len(paths) == 3000
    assert_conservation(paths.to_records(index=False))
    comp = pd.read_parquet(d / "comparison.parquet")
    assert comp["recommended"].sum() == 1
    assert comp["n_paths"].min() >= 10 * 15  # out of sample on >= 10x the SAA sample
    assert {"des_sla_mean", "des_wait_p95_h", "stress: uplift +30%", "dominance"} <= set(comp.columns)
    md = (d / "report.md").read_text()
    assert "Recommended: Plan" in md and "Action schedule" in md and "Time to serve" in md
    assert "HIGH-SEVERITY FLAG" in md and "event_in_freeze" in md
    assert not list(tmp_path.glob(".run*"))  # no partial folders left


def test_same_seed_gives_byte_identical_paths(tmp_path):
    a = pipeline.run(SCN, tmp_path / "a", paths=2000, seed=9, chunk_size=1000, optimize=False, des=False)
    b = pipeline.run(SCN, tmp_path / "b", paths=2000, seed=9, chunk_size=50_000, optimize=False, des=False)
    assert (a.run_dir / "paths.parquet").read_bytes() == (b.run_dir / "paths.parquet").read_bytes()


def test_failed_run_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "write_parquet", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        pipeline.run(SCN, tmp_path / "run", paths=1000, seed=1, optimize=False, des=False)
    assert not (tmp_path / "run").exists()
    assert not list(tmp_path.iterdir())


def test_schema_command_prints_json_schema(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "calendar" in schema["properties"]
    # every field is documented
    missing = [f"{d}.{k}" for d, body in schema.get("$defs", {}).items()
               for k, v in body.get("properties", {}).items() if not v.get("description")]
    assert not missing, missing


def test_docs_tables_md_is_generated_from_schemas():
    from peakplan import schemas

    assert (ROOT / "docs" / "tables.md").read_text() == schemas.markdown() + "\n"


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "peakplan.cli", "validate", str(SCN)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "valid (16 weeks, 3 segments, 6 resources, 13 levers" in out.stdout


def test_docs_scenario_md_is_generated_from_schema():
    from peakplan import config

    assert (ROOT / "docs" / "scenario.md").read_text() == config.markdown() + "\n"


def test_compare_command_reads_written_runs(tmp_path, capsys):
    for name, seed in (("r1", 1), ("r2", 2)):
        assert main(["run", str(SCN), "--out", str(tmp_path / name), "--paths", "1000", "--seed", str(seed),
                     "--quiet", "--opt-samples", "10", "--no-quality", "--no-des"]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "r1"), str(tmp_path / "r2"), "--out", str(tmp_path / "c.csv")]) == 0
    table = pd.read_csv(tmp_path / "c.csv")
    assert set(table["run"]) == {"r1", "r2"}
    assert {"baseline", "A", "B", "C"} <= set(table["plan"])
    assert main(["compare", str(tmp_path / "nope")]) == 2
    assert "not a run directory" in capsys.readouterr().err
