"""Bad input: one clear message naming the file, row/field, found value and rule; exit 2; nothing written."""

import re
from pathlib import Path

import pytest

from peakplan.cli import main


def edit_yaml(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"fixture text {old!r} not in scenario"
    path.write_text(text.replace(old, new, 1))


def edit_csv(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"fixture text {old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def data(scn: Path, name: str) -> Path:
    return scn.parent.parent / "data" / "retail" / name


# (id, mutate(scenario_path), expected message regex)
CASES = [
    ("yaml_syntax", lambda s: edit_yaml(s, "horizon: 16", "horizon: [16"), r"YAML syntax error"),
    ("unknown_key", lambda s: edit_yaml(s, "horizon: 16", "horizon: 16\n  horizn: 3"), r"calendar\.horizn: unknown key"),
    ("wrong_type", lambda s: edit_yaml(s, "horizon: 16", "horizon: sixteen"), r"calendar\.horizon: .*valid integer.*'sixteen'"),
    ("missing_required", lambda s: edit_yaml(s, "  period: week\n", ""), r"calendar\.period: required field is missing"),
    ("bad_period_kind", lambda s: edit_yaml(s, "period: week", "period: month"), r"calendar\.period: .*'day' or 'week'.*'month'"),
    ("target_above_one", lambda s: edit_yaml(s, "service_target: 0.97", "service_target: 1.7"), r"constraints\.service_target: .*less than or equal to 1.*1\.7"),
    ("load_unknown_resource", lambda s: edit_yaml(s, "east:    {pickers_east: 0.025", "east:    {pickers_eats: 0.025"), r"load\.east: unknown resource 'pickers_eats'"),
    ("event_unknown_segment", lambda s: edit_yaml(s, "    probability: 0.9\n", "    probability: 0.9\n    segments: [north]\n"), r"events\.black_friday_cyber_week: unknown segment 'north'"),
    ("disruption_unknown_resource", lambda s: edit_yaml(s, "resources: [packers_east]", "resources: [packers_x]"), r"disruptions\.packaging_supplier_outage: unknown resource 'packers_x'"),
    ("triangular_low_above_high", lambda s: edit_yaml(s, "low: 1.3, mode: 1.55, high: 2.0", "low: 2.3, mode: 1.55, high: 2.0"), r"uplift low=2\.3 is above high=2\.0"),
    ("uplift_missing_param", lambda s: edit_yaml(s, "{dist: lognormal, median: 1.15, p90: 1.3}", "{dist: lognormal, median: 1.15}"), r"uplift dist 'lognormal' needs median, p90; missing p90"),
    ("initial_stock_above_room", lambda s: edit_yaml(s, "  - {name: west, unit: orders}", "  - {name: west, unit: orders, storable: true, storage_cap: 10, initial_stock: 25}"), r"segments\.2: .*initial_stock=25 is above storage_cap=10"),
    ("duplicate_segment", lambda s: edit_yaml(s, "  - {name: west, unit: orders}", "  - {name: west, unit: orders}\n  - {name: west}"), r"segment names must be unique; repeated: west"),
    ("event_outside_horizon", lambda s: edit_yaml(s, "periods: [2026-11-23, 2026-11-30]\n    probability: 0.9", "periods: [2027-11-23]\n    probability: 0.9"), r"events\.black_friday_cyber_week\.periods: period 2027-11-23 is outside the horizon"),
    ("forbidden_unknown_lever", lambda s: edit_yaml(s, "forbidden_levers: [overtime_packers_west]", "forbidden_levers: [overtime_packers_nowhere]"), r"forbidden_levers: unknown lever 'overtime_packers_nowhere'"),
    ("table_file_missing", lambda s: edit_yaml(s, "../data/retail/levers.csv", "../data/retail/nolevers.csv"), r"tables\.levers: file not found: .*nolevers\.csv"),
    ("table_bad_suffix", lambda s: (data(s, "levers.csv").rename(data(s, "levers.xlsx")), edit_yaml(s, "levers.csv", "levers.xlsx")), r"unsupported table format '\.xlsx'"),
    ("forecast_not_a_number", lambda s: edit_csv(data(s, "forecast.csv"), "36102.1", "lots"), r"forecast\.csv row 1, column 'p10': found 'lots'; expected a number"),
    ("forecast_bad_date", lambda s: edit_csv(data(s, "forecast.csv"), "2026-09-28,east", "2026-13-45,east"), r"forecast\.csv row 1, column 'period': found '2026-13-45'; expected an ISO date"),
    ("forecast_crossed_quantiles", lambda s: edit_csv(data(s, "forecast.csv"), "40000.0,44318.7", "40000.0,30000.0"), r'forecast\.csv row 1 \(period 2026-09-28, segment "east"\): p90=30000 is below p50=40000; quantiles must increase'),
    ("forecast_unknown_segment", lambda s: edit_csv(data(s, "forecast.csv"), "2026-09-28,east", "2026-09-28,easst"), r"forecast\.csv row 1, column 'segment': unknown segment 'easst'"),
    ("forecast_missing_column", lambda s: edit_csv(data(s, "forecast.csv"), "period,segment", "when,segment"), r"forecast\.csv: missing required column\(s\) \['period'\]"),
    ("forecast_empty", lambda s: data(s, "forecast.csv").write_text(""), r"forecast\.csv: the table is empty"),
    ("forecast_header_only", lambda s: data(s, "forecast.csv").write_text("period,segment,p50,p90\n"), r"forecast\.csv: the table has a header but no data rows"),
    ("forecast_no_quantiles_or_moments", lambda s: data(s, "forecast.csv").write_text("period,segment,p10\n2026-09-28,east,1\n"), r"needs the columns \(p50, p90\) or \(mean, sd\)"),
    ("capacity_unknown_resource", lambda s: edit_csv(data(s, "capacity.csv"), "2026-09-28,pickers_east", "2026-09-28,pickers_north"), r"capacity\.csv row 1, column 'resource': unknown resource 'pickers_north'"),
    ("capacity_resource_without_rows", lambda s: data(s, "capacity.csv").write_text(
        "\n".join(l for l in data(s, "capacity.csv").read_text().splitlines() if "packers_west" not in l) + "\n"),
     r"capacity\.csv: no rows for resource 'packers_west'"),
    ("lever_unknown_kind", lambda s: edit_csv(data(s, "levers.csv"), "temp_pickers_east,reserve", "temp_pickers_east,borrow"), r"levers\.csv row 1, column 'kind': found 'borrow'; expected one of \['reserve', 'flex', 'release'\]"),
    ("lever_reliability_above_one", lambda s: edit_csv(data(s, "levers.csv"), ",0.9,300@28", ",1.9,300@28"), r"levers\.csv row 1, column 'reliability': found 1\.9; must be at most 1"),
    ("lever_negative_quota", lambda s: edit_csv(data(s, "levers.csv"), "2500.0,800,", "2500.0,-800,"), r"levers\.csv row 1, column 'quota': found -800; must be at least 0"),
    ("lever_unknown_resource", lambda s: edit_csv(data(s, "levers.csv"), "reserve,pickers_east", "reserve,pickers_mars"), r"levers\.csv row 1, column 'resource': unknown resource 'pickers_mars'"),
    ("lever_duplicate_name", lambda s: edit_csv(data(s, "levers.csv"), "overtime_pickers_east,flex", "temp_pickers_east,flex"), r"lever 'temp_pickers_east' appears more than once"),
    ("lever_tiers_not_convex", lambda s: edit_csv(data(s, "levers.csv"), "300@28;600@32", "300@28;600@20"), r"column 'tiers': found '300@28;600@20@?.*convex"),
    ("lever_min_term_fraction", lambda s: edit_csv(data(s, "levers.csv"), "800,4,1,400.0", "800,4.5,1,400.0"), r"levers\.csv row 1, column 'min_term': found '4\.5'; expected a whole number"),
    ("committed_unknown_lever", lambda s: edit_csv(data(s, "committed.csv"), "temp_pickers_central,2026", "temp_pickers_nowhere,2026"), r"committed\.csv row 1, column 'lever': unknown lever 'temp_pickers_nowhere'"),
    ("history_unknown_segment", lambda s: edit_csv(data(s, "history.csv"), "2025-09-29,east", "2025-09-29,eest"), r"history row 1, column 'segment': unknown segment 'eest'"),
    ("scenario_empty", lambda s: s.write_text(""), r"the scenario file is empty"),
    ("scenario_not_mapping", lambda s: s.write_text("- just\n- a list\n"), r"the scenario must be a mapping"),
    ("history_requested_but_absent", lambda s: edit_yaml(s, "  history: ../data/retail/history.csv\n", ""), r"demand\.ar1/correlation is 'history' but tables\.history is not given"),
]


@pytest.mark.parametrize("case,mutate,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_message_exit_2_nothing_written(retail_copy, capsys, case, mutate, pattern):
    mutate(retail_copy)
    out = retail_copy.parent.parent / "runs" / "x"
    code = main(["run", str(retail_copy), "--out", str(out), "--paths", "100", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert re.search(pattern, err), err
    assert "Traceback" not in err
    assert not out.exists()
    assert not list(out.parent.glob(".x*")) if out.parent.exists() else True


def test_missing_scenario_file(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert re.search(r"nope\.yaml: scenario file not found", capsys.readouterr().err)


def test_negative_paths_rejected(retail_copy, capsys, tmp_path):
    assert main(["run", str(retail_copy), "--out", str(tmp_path / "r"), "--paths", "-5"]) == 2
    assert "--paths must be a positive integer, got -5" in capsys.readouterr().err


def test_existing_run_dir_is_not_overwritten_without_force(retail_copy, capsys, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["run", str(retail_copy), "--out", str(out), "--paths", "100", "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


def test_all_table_problems_are_listed_not_just_the_first(retail_copy, capsys):
    f = retail_copy.parent.parent / "data" / "retail" / "forecast.csv"
    lines = f.read_text().splitlines()
    lines[1] = lines[1].replace("36102.1", "x")
    lines[5] = lines[5].replace("2026-", "20x6-", 1)
    f.write_text("\n".join(lines) + "\n")
    assert main(["validate", str(retail_copy)]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err
    assert "row 1, column 'p10'" in err and "row 5, column 'period'" in err


def test_debug_shows_traceback(retail_copy, capsys):
    edit_yaml(retail_copy, "horizon: 16", "horizon: sixteen")
    assert main(["--debug", "validate", str(retail_copy)]) == 2
    assert "Traceback" in capsys.readouterr().err
