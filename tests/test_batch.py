"""Batch runner: sweeps and overrides, executors, failures, resume, ledger, path splitting."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from peakplan import batch, cli
from peakplan.batch import CaseSpec, apply_overrides, get_path, load_sweep, override_table, set_path
from peakplan.errors import InputError
from peakplan.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
PATHS = "200"
# Every test batch switches the discrete-event model off: it dominates a case's time and
# the batch logic does not depend on it.
SWEEP = {
    "name": "test_sweep",
    "base": "scenarios/retail_peak.yaml",
    "overrides": {"des.enabled": False, "simulation.opt_samples": 8, "simulation.plan_quality": False},
    "grid": {"constraints.budget": [300000, 450000],
             "levers.temp_pickers_east.lead_time": {"name": "lead", "values": [2, 4]}},
    "cases": [{"name": "no_promotion", "overrides": {"events.black_friday_cyber_week.probability": 0.0}}],
}


def _write_sweep(folder: Path, spec: dict, name: str = "sweep.yaml") -> Path:
    p = folder / name
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A private copy of the retail scenario and data, with the test sweep beside it."""
    root = tmp_path_factory.mktemp("batch")
    (root / "scenarios").mkdir()
    shutil.copy(ROOT / "scenarios" / "retail_peak.yaml", root / "scenarios" / "retail_peak.yaml")
    shutil.copytree(ROOT / "data" / "retail", root / "data" / "retail")
    _write_sweep(root, SWEEP)
    return root


@pytest.fixture(scope="module")
def reference(project):
    """The uninterrupted batch on one worker process."""
    res = batch.run_batch([project / "sweep.yaml"], project / "ref", paths=int(PATHS), workers=1, progress=False)
    assert res.exit_code == 0, res.outcomes
    return res


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


def _ledger_rows(out: Path) -> pd.DataFrame:
    with Ledger(out / "ledger.sqlite") as led:
        assert led.verify().ok
        return led.list_runs()


# ------------------------------------------------------------------------------ overrides
def test_set_path_addresses_list_items_by_name():
    data = {"events": [{"name": "a", "uplift": {"mode": 1.5}}, {"name": "b.c", "probability": 1.0}],
            "constraints": {"budget": 1}}
    set_path(data, "constraints.budget", 2)
    set_path(data, "events.a.uplift.mode", 1.8)
    set_path(data, "events.b.c.probability", 0.5)  # names may contain dots
    set_path(data, "events.1.name", "d")
    set_path(data, "simulation.paths", 10)  # a missing mapping is created
    assert data["constraints"]["budget"] == 2
    assert data["events"][0]["uplift"]["mode"] == 1.8
    assert data["events"][1] == {"name": "d", "probability": 0.5}
    assert get_path(data, "events.d.probability") == 0.5
    assert get_path(data, "simulation.paths") == 10
    assert get_path(data, "events.nope.x") is None


def test_set_path_errors_name_the_path_and_the_choices():
    data = {"events": [{"name": "a"}], "constraints": {"budget": 1}}
    with pytest.raises(InputError, match=r"events.zzz.probability.*no item named 'zzz'; items are \['a'\]"):
        set_path(data, "events.zzz.probability", 0.5)
    with pytest.raises(InputError, match=r"cannot go into 'x'"):
        set_path(data, "constraints.budget.x", 1)
    with pytest.raises(InputError, match="empty path segment"):
        set_path(data, "constraints..budget", 1)
    with pytest.raises(InputError, match="base_dir"):
        set_path(data, "base_dir", "/tmp")


def test_apply_overrides_splits_table_cells_and_leaves_the_input_alone():
    data = {"constraints": {"budget": 1}}
    out, cells = apply_overrides(data, {"constraints.budget": 5, "levers.temp_east.lead_time": 2})
    assert out == {"constraints": {"budget": 5}} and data == {"constraints": {"budget": 1}}
    assert cells == {"levers": {"levers.temp_east.lead_time": 2}}
    with pytest.raises(InputError, match=r"a table cell is levers.<row name>.<column>"):
        apply_overrides(data, {"levers.lead_time": 2})


def test_override_table_rewrites_one_cell_of_a_copy():
    df = pd.DataFrame({"name": ["a", "b"], "lead_time": ["3", "1"], "ramp": ["", "5"]})
    out = override_table(df, "levers", {"levers.a.lead_time": 2, "levers.b.ramp": None})
    assert out["lead_time"].tolist() == ["2", "1"] and out["ramp"].tolist() == ["", ""]
    assert df["lead_time"].tolist() == ["3", "1"]
    with pytest.raises(InputError, match=r"no row with name='zz' in the levers table; .*rows are \['a', 'b'\]"):
        override_table(df, "levers", {"levers.zz.lead_time": 2})
    with pytest.raises(InputError, match="the capacity table has no name column"):
        override_table(pd.DataFrame({"resource": ["r"]}), "capacity", {"capacity.r.capacity": 1})


def test_load_sweep_expands_the_grid_then_the_named_cases(project):
    specs = load_sweep(project / "sweep.yaml")
    assert [s.name for s in specs] == ["budget-300000_lead-2", "budget-300000_lead-4", "budget-450000_lead-2",
                                       "budget-450000_lead-4", "no_promotion"]
    assert specs[1].overrides == {"des.enabled": False, "simulation.opt_samples": 8, "simulation.plan_quality": False,
                                  "constraints.budget": 300000, "levers.temp_pickers_east.lead_time": 4}
    assert specs[-1].source == (project / "scenarios" / "retail_peak.yaml").resolve()
    bad = _write_sweep(project, {"base": "scenarios/retail_peak.yaml", "grid": {"constraints.budget": []}}, "b.yaml")
    with pytest.raises(InputError, match=r"problem\(s\) in the sweep spec"):
        load_sweep(bad)
    missing = _write_sweep(project, {"base": "nope.yaml", "cases": [{"name": "x"}]}, "m.yaml")
    with pytest.raises(InputError, match="base: scenario file not found"):
        load_sweep(missing)


def test_case_names_must_be_unique_and_safe(project):
    spec = {"base": "scenarios/retail_peak.yaml", "cases": [{"name": "a"}, {"name": "a"}, {"name": "../x"}]}
    with pytest.raises(InputError, match=r"2 problem\(s\) with the batch's case names") as err:
        batch.plan_batch([_write_sweep(project, spec, "dup.yaml")])
    assert "case name 'a' is used 2 times" in str(err.value) and "case name '../x'" in str(err.value)


def test_case_key_covers_scenario_tables_seed_paths(project):
    src = (project / "scenarios" / "retail_peak.yaml").resolve()

    def key(overrides=None, seed=None, paths=None):
        case = batch.resolve_case(CaseSpec("c", src, overrides or {}), seed=seed, paths=paths)
        assert case.error is None, case.error
        return case

    base = key()
    assert key().key == base.key  # stable
    assert len({base.key, key(seed=1).key, key(paths=7).key, key({"constraints.budget": 1.0}).key,
                key({"levers.temp_pickers_east.lead_time": 1}).key}) == 5
    cell = key({"levers.temp_pickers_east.lead_time": 1})
    changed = {f for f in base.hashes if base.hashes[f] != cell.hashes[f]}
    assert changed == {"levers.csv"}  # the materialised scenario names the same files
    assert base.seed == 42 and base.paths == 20000  # the scenario's own settings


def test_bad_override_is_a_case_error_not_a_crash(project):
    src = (project / "scenarios" / "retail_peak.yaml").resolve()
    case = batch.resolve_case(CaseSpec("c", src, {"constraints.budget": -5}))
    assert case.error and "constraints.budget" in case.error and "greater than or equal to 0" in case.error


def test_dry_run_lists_cases_and_writes_nothing(project, capsys):
    before = sorted(p.name for p in project.iterdir())
    assert cli.main(["batch", str(project / "sweep.yaml"), "--dry-run", "--paths", PATHS]) == 0
    out = capsys.readouterr().out
    assert "5 case(s) (dry run" in out and "budget-450000_lead-4" in out and "no_promotion" in out
    assert '"constraints.budget": 300000' in out and " new " in out
    case = batch.plan_batch([project / "sweep.yaml"], paths=int(PATHS))[0]
    assert case.key[:16] in out
    assert sorted(p.name for p in project.iterdir()) == before


def test_cli_input_errors_exit_2(project, capsys):
    assert cli.main(["batch", str(project / "nope*.yaml"), "--out", str(project / "x")]) == 2
    assert "matches no file" in capsys.readouterr().err
    assert cli.main(["batch", str(project / "sweep.yaml")]) == 2
    assert "needs --out" in capsys.readouterr().err
    assert cli.main(["ledger", "verify", str(project / "nowhere")]) == 2
    assert not (project / "x").exists()


# ------------------------------------------------------------------------------ executors
def test_summary_has_one_row_per_case_and_plan(reference):
    s = reference.summary
    assert s["case"].drop_duplicates().tolist() == [c.name for c in reference.cases]
    assert (s.groupby("case")["plan"].apply(sorted) == pd.Series([["A", "B", "C", "baseline"]] * len(reference.cases),
                                                                  index=sorted(c.name for c in reference.cases))).all()
    assert set(s["status"]) == {"ok"}
    assert s.columns[:8].tolist() == ["case", "plan", "status", "des.enabled", "simulation.opt_samples",
                                      "simulation.plan_quality", "constraints.budget",
                                      "levers.temp_pickers_east.lead_time"]
    base = s[s["plan"] == "baseline"].set_index("case")
    # no_promotion did not override the budget: the column shows the base value
    assert base.loc["no_promotion", "constraints.budget"] == 450000
    assert base.loc["no_promotion", "fill_mean"] > base["fill_mean"].iloc[0]
    written = pd.read_parquet(reference.out / "summary.parquet")
    pd.testing.assert_frame_equal(written, s)
    for c in reference.cases:
        assert (reference.out / c.name / "case.json").is_file()
        assert (reference.out / c.name / "inputs" / "scenario.yaml").is_file()
    rows = _ledger_rows(reference.out)
    assert len(rows) == 5 and set(rows["status"]) == {"ok"} and rows["case_key"].is_unique


def test_two_workers_give_the_same_summary(project, reference):
    res = batch.run_batch([project / "sweep.yaml"], project / "two", paths=int(PATHS), workers=2, progress=False)
    assert res.exit_code == 0
    pd.testing.assert_frame_equal(res.summary, reference.summary)
    assert (res.out / "summary.csv").read_bytes() == (reference.out / "summary.csv").read_bytes()


def test_dask_local_cluster_gives_the_same_summary(project, reference):
    pytest.importorskip("distributed")
    res = batch.run_batch([project / "sweep.yaml"], project / "dask", paths=int(PATHS), dask_local=2, progress=False)
    assert res.exit_code == 0
    pd.testing.assert_frame_equal(res.summary, reference.summary)


def test_existing_dask_scheduler_gives_the_same_summary(project, reference, dask_client):
    address = dask_client.scheduler.address
    res = batch.run_batch([project / "sweep.yaml"], project / "dask_sched", paths=int(PATHS),
                          dask_scheduler=address, progress=False)
    assert res.exit_code == 0
    pd.testing.assert_frame_equal(res.summary, reference.summary)
    assert json.loads((res.out / "batch.json").read_text())["executor"] == f"dask:{address}"


def test_rerun_skips_complete_cases_and_redoes_changed_ones(project, reference, capsys):
    out = project / "rerun"
    shutil.copytree(reference.out, out)
    res = batch.run_batch([project / "sweep.yaml"], out, paths=int(PATHS), workers=1, progress=True, live=False)
    assert len(res.skipped) == 5 and "5 already complete (skipped)" in capsys.readouterr().err
    changed = batch.run_batch([project / "sweep.yaml"], out, paths=int(PATHS), seed=3, workers=1, progress=False)
    assert changed.skipped == [] and changed.exit_code == 0
    assert not changed.summary["fill_mean"].equals(reference.summary["fill_mean"])
    assert len(_ledger_rows(out)) == 10


# ------------------------------------------------------------------------------ failures
def _crashing_runner(task):
    """A runner whose worker process dies on the case named 'crash'."""
    if task.name == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    return batch.run_case(task)


def test_failing_cases_fail_alone(project):
    spec = {**SWEEP, "grid": {}, "cases": [
        {"name": "good"},
        {"name": "bad_table", "overrides": {"levers.temp_pickers_east.lead_time": -3}},  # fails in the worker
        {"name": "bad_path", "overrides": {"events.nope.probability": 0.5}},  # fails while planning
        {"name": "crash"},  # its worker process is killed
        {"name": "also_good", "overrides": {"constraints.budget": 900000}},
    ]}
    res = batch.run_batch([_write_sweep(project, spec, "failing.yaml")], project / "failing", paths=int(PATHS),
                          workers=2, progress=False, runner=_crashing_runner)
    assert res.exit_code == 4
    s = res.summary.drop_duplicates("case").set_index("case")
    assert s.loc["good", "status"] == "ok" and s.loc["also_good", "status"] == "ok"
    assert s.loc[["bad_table", "bad_path", "crash"], "status"].tolist() == ["failed"] * 3
    assert "lead_time': found -3; must be at least 0" in s.loc["bad_table", "error"]
    assert "no item named 'nope'" in s.loc["bad_path", "error"]
    assert "worker process died" in s.loc["crash", "error"]
    assert np.isnan(s.loc["crash", "cost_mean"]) and s.loc["good", "cost_mean"] > 0
    rows = _ledger_rows(res.out).set_index("run_id")
    assert sorted(rows["status"]) == ["failed"] * 3 + ["ok"] * 2
    assert rows.loc[rows["status"] == "failed", "error"].str.len().min() > 10
    assert not any((res.out / n).exists() for n in ("bad_table", "bad_path", "crash"))


def test_cli_exit_code_4_when_a_case_fails(project, capsys):
    spec = {**SWEEP, "grid": {}, "cases": [{"name": "ok1"}, {"name": "bad", "overrides": {"constraints.budget": -1}}]}
    path = _write_sweep(project, spec, "cli_fail.yaml")
    out = project / "cli_fail"
    assert cli.main(["batch", str(path), "--out", str(out), "--paths", PATHS, "--workers", "1"]) == 4
    captured = capsys.readouterr()
    assert "FAILED bad:" in captured.err and "[2/2]" in captured.err
    assert cli.main(["ledger", "list", str(out), "--status", "failed"]) == 0
    assert "bad-" in capsys.readouterr().out
    assert cli.main(["ledger", "verify", str(out / "ledger.sqlite")]) == 0
    assert "ledger ok: 2 records" in capsys.readouterr().out


# ------------------------------------------------------------------------------ resume
def test_sigkilled_batch_resumes_to_the_same_summary(project, reference):
    out = project / "killed"
    cmd = [sys.executable, "-m", "peakplan.batch", str(project / "sweep.yaml"), "--out", str(out),
           "--paths", PATHS, "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any(out.glob("*/case.json")):
            assert proc.poll() is None, "the batch ended before its first case was complete"
            assert time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the batch and its workers
        proc.wait()
    done = [p.parent.name for p in out.glob("*/case.json")]
    assert 1 <= len(done) < 5, done
    # no half-written run directory is visible
    assert all((p / "case.json").is_file() for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert not (out / "summary.parquet").exists()

    assert cli.main(["batch", str(project / "sweep.yaml"), "--out", str(out), "--paths", PATHS,
                     "--workers", "2", "--quiet"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "summary.parquet"), reference.summary)
    assert (out / "summary.csv").read_bytes() == (reference.out / "summary.csv").read_bytes()
    rows = _ledger_rows(out)  # verifies the chain
    assert len(rows) == 5 and rows["case_key"].is_unique and set(rows["status"]) == {"ok"}
    assert set(rows["case_key"]) == {c.key for c in reference.cases}
    assert not any((out / ".staging").glob("*"))


# ------------------------------------------------------------------------------ path splitting
@pytest.fixture(scope="module")
def retail_pack():
    from peakplan.compile import build_pack

    return build_pack(ROOT / "scenarios" / "retail_peak.yaml")


def _assert_same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    for name in a.dtype.names:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize("blocks_per_task", [1, 2])
def test_simulate_distributed_equals_one_process(retail_pack, blocks_per_task):
    from peakplan.simulate import mc

    single = mc.simulate(retail_pack, None, n_paths=2500, seed=11, engine="numpy")
    with ProcessPoolExecutor(2, mp_context=mp.get_context("forkserver")) as ex:
        split = batch.simulate_distributed(retail_pack, None, 2500, 11, ex, blocks_per_task)
    assert split.n_paths == 2500 and split.seed == single.seed
    _assert_same(split.metrics, single.metrics)


def test_simulate_distributed_on_dask(retail_pack, dask_client):
    from peakplan.simulate import mc

    single = mc.simulate(retail_pack, None, n_paths=3000, seed=5, engine="numpy")
    split = batch.simulate_distributed(retail_pack, None, 3000, 5, dask_client, 1)
    _assert_same(split.metrics, single.metrics)
    fast = mc.simulate(retail_pack, None, n_paths=3000, seed=5)  # default engine: equal to rounding
    np.testing.assert_allclose(split.metrics["cost"], fast.metrics["cost"], rtol=1e-9)


def test_simulate_distributed_rejects_bad_arguments(retail_pack):
    with pytest.raises(ValueError, match="n_paths must be positive, got 0"):
        batch.simulate_distributed(retail_pack, None, 0, 1, None, 1)
    with pytest.raises(ValueError, match="blocks_per_task must be a positive integer, got 0"):
        batch.simulate_distributed(retail_pack, None, 10, 1, None, 0)


def test_progress_plain_lines_and_live_bar():
    import io

    plain = io.StringIO()
    prog = batch.BatchProgress(3, skipped=1, stream=plain, live=False)
    prog.started("a")
    prog.finished("a", "ok", 1.0)
    prog.started("b")
    prog.finished("b", "failed", 2.0, "InputError: bad value\nmore")
    prog.close()
    text = plain.getvalue()
    assert "3 case(s), 1 already complete (skipped), 2 to run" in text
    assert "[2/3] ok         a (1.0 s) | running 0, failed 0, ETA" in text
    assert "[3/3] failed     b (2.0 s) | running 0, failed 1, ETA 0:00:00\n    InputError: bad value" in text
    live = io.StringIO()
    bar = batch.BatchProgress(2, stream=live, live=True)
    bar.started("a")
    bar.finished("a", "failed", 1.0, "boom")
    bar.close()
    assert "failed a: boom" in live.getvalue() and "1 failed" in live.getvalue()


def test_infeasible_case_is_complete_but_counts_as_failed(project, monkeypatch):
    from peakplan import pipeline

    real = pipeline.run

    def infeasible_run(*args, **kwargs):  # what the pipeline returns when no plan meets the targets
        res = real(*args, **kwargs)
        res.manifest["status"] = "infeasible"
        res.extras["escalations"] = [{"message": "no plan reaches fill 0.99 within the budget"}]
        return res

    monkeypatch.setattr(pipeline, "run", infeasible_run)
    spec = {**SWEEP, "grid": {}, "cases": [{"name": "tight"}]}
    path = _write_sweep(project, spec, "infeasible.yaml")
    res = batch.run_batch([path], project / "infeasible", paths=int(PATHS), workers=0, progress=False)
    assert res.exit_code == 4 and res.failed == ["tight"]
    row = res.summary.iloc[0]
    assert row["status"] == "infeasible" and "no plan reaches" in row["error"] and row["cost_mean"] > 0
    again = batch.run_batch([path], project / "infeasible", paths=int(PATHS), workers=0, progress=False)
    assert again.skipped == ["tight"] and again.exit_code == 4
    pd.testing.assert_frame_equal(again.summary, res.summary)
    rows = _ledger_rows(res.out)
    assert rows["status"].tolist() == ["infeasible"] and "no plan reaches" in rows["error"].iloc[0]
