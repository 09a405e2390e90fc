"""Peak-day DES inside plan scoring: selection, servers from capacity, fluid agreement.

Most checks use a one-station pack with deterministic demand and capacity (normal
marginal with zero spread), so the fluid model's numbers are known by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from peakplan import examples
from peakplan.errors import InputError
from peakplan.pack import Lever, PlanningPack
from peakplan.simulate import des, mc, peak
from peakplan.simulate.peak import peak_service, server_schedule, station_capacity

HOURS = 16.0


def station_pack(demand=8000.0, capacity=160.0, *, load=0.01, T=4, des_settings=None, **changes) -> PlanningPack:
    """``T`` days, one segment (``orders``) on one resource (``desk``), no randomness."""
    settings = {"hours_per_day": HOURS, "sla_hours": 0.25, "top_periods": 1, "sampled_periods": 0}
    pack = PlanningPack(
        name="station",
        periods=tuple(f"d{t}" for t in range(T)),
        period_kind="day",
        segments=("orders",),
        resources=("desk",),
        load=np.array([[load]]),
        priority=np.zeros(1, int),
        demand_mu=np.broadcast_to(np.asarray(demand, float), (T,))[:, None].copy(),
        demand_sigma=np.zeros((T, 1)),
        marginal="normal",
        base_capacity=np.broadcast_to(np.asarray(capacity, float), (T,))[:, None].copy(),
        capacity_cost=np.zeros(1),
        penalty=np.ones(1),
        max_delay=0,
        des={**settings, **(des_settings or {})},
        n_paths=20,
        seed=1,
    )
    return pack.replace(**changes) if changes else pack


def baseline(pack: PlanningPack) -> dict:
    return {"baseline": mc.plan_inputs(pack)}


def test_light_load_throughput_matches_the_fluid_served_volume():
    pack = station_pack(8000.0, 160.0)  # 80 h of work on 10 servers x 16 h: utilisation 0.5
    res = peak_service(pack, baseline(pack), n_paths=20, seed=3)
    row = res.table.iloc[0]
    day = res.days.iloc[0]
    assert day["demand"] == pytest.approx(8000.0)
    assert day["fluid_served"] == pytest.approx(8000.0)  # the fluid model serves all of it
    assert day["servers"] == pytest.approx(10.0)
    assert abs(row["fluid_gap"]) <= 0.02 and abs(day["gap"]) <= 0.02
    assert row["fluid_ok"] and res.notes == ()
    assert row["sla_mean"] > 0.99 and row["wait_p95_h"] < 0.1


def test_overload_agrees_on_throughput_but_long_waits_set_fluid_ok_false():
    pack = station_pack(8000.0, 40.0)  # twice the work the 2.5 servers can do
    res = peak_service(pack, baseline(pack), n_paths=20, seed=3)
    row, day = res.table.iloc[0], res.days.iloc[0]
    assert day["fluid_served"] == pytest.approx(4000.0)  # capacity / load, the rest is lost
    assert abs(row["fluid_gap"]) <= 0.02  # both are capacity bound
    assert row["wait_p95_h"] > 0.25 * HOURS and not row["fluid_ok"]
    assert "under-states the peak" in res.notes[0]


def test_intraday_peak_makes_the_fluid_model_overstate_throughput():
    # 90% of the day's capacity arrives in its second half: the first half idles.
    pack = station_pack(8000.0, 89.0, extra={"intraday_profile": {"desk": [0.0, 1.0]}})
    res = peak_service(pack, baseline(pack), n_paths=20, seed=3)
    row = res.table.iloc[0]
    assert res.days.iloc[0]["fluid_served"] == pytest.approx(8000.0)
    assert row["fluid_gap"] < -0.3 and not row["fluid_ok"]
    worst = res.worst_day["baseline"]
    assert worst.queue_length.shape == worst.grid.shape == (97,)
    assert worst.queue_length[: 97 // 2].max() == 0 and worst.queue_length.max() > 1000


def test_servers_come_from_the_plans_capacity_after_shocks_levers_and_lateness(tiny):
    plan = mc.plan_inputs(tiny, np.array([[0, 20, 30, 30, 0, 0], [0, 0, 10, 10, 0, 0], [0, 0, 5, 5, 0, 0]], float))
    res = peak_service(tiny, {"A": plan}, n_paths=300, seed=5)
    draws = mc.sample_paths(tiny, 300, 5)
    late = draws.late[:, 0][:, None]
    reserve = np.where(late, [0, 0, 20, 30, 0, 0], [0, 20, 30, 30, 0, 0])  # late: min(y[t], y[t-1])
    cap = np.stack([(110.0 + reserve) * draws.capacity_factor[:, :, 0],
                    (85.0 - 5 * (np.arange(6) >= 2) * (np.arange(6) < 4)) * draws.capacity_factor[:, :, 1]
                    + 10 * ((np.arange(6) >= 2) & (np.arange(6) < 4))], axis=2)
    np.testing.assert_allclose(station_capacity(tiny, plan, draws), cap)
    r = res.days["resource"].map({"pick_n": 0, "pack": 1}).to_numpy()
    expected = cap[res.days["path"], res.days["t"], r] / 7 / 16.0
    np.testing.assert_allclose(res.days["servers"], expected)


def test_servers_match_the_monte_carlo_capacity_through_its_served_volume():
    # Overloaded with shrinkage and max_delay 0: the fluid model serves exactly capacity / load.
    pack = station_pack(8000.0, 50.0, availability_mean=np.array([0.9]), availability_sd=np.array([0.05]))
    res = peak_service(pack, baseline(pack), n_paths=50, seed=2)
    d = res.days
    np.testing.assert_allclose(d["fluid_served"] * 0.01, d["servers"] * HOURS, rtol=1e-12)


def test_server_schedule_rounds_by_slot_and_keeps_the_server_hours():
    s = server_schedule(10.4)
    assert set(s.tolist()) == {10, 11} and s.size == peak.SLOTS
    assert s.mean() == pytest.approx(10.4, abs=0.5 / peak.SLOTS)
    assert server_schedule(0.0).sum() == 0


def test_late_delivery_lowers_sla():
    lever = Lever("temps", "reserve", 0, reliability=1.0)
    levels = np.array([[0.0, 0.0, 60.0, 60.0]])
    pack = station_pack(8000.0, 40.0, levers=(lever,), peak=np.array([0, 0, 1, 0], bool))
    on_time = peak_service(pack, {"A": mc.plan_inputs(pack, levels)}, n_paths=20, seed=4)
    late_pack = pack.replace(levers=(Lever("temps", "reserve", 0, reliability=0.0),))
    late = peak_service(late_pack, {"A": mc.plan_inputs(late_pack, levels)}, n_paths=20, seed=4)
    assert on_time.days["t"].tolist() == late.days["t"].tolist() == [2]
    assert on_time.days["servers"].iloc[0] == pytest.approx(100.0 / HOURS)
    assert late.days["servers"].iloc[0] == pytest.approx(40.0 / HOURS)  # the increase is a period late
    assert late.table["sla_mean"].iloc[0] < on_time.table["sla_mean"].iloc[0] - 0.5


def test_selection_picks_the_top_load_peak_periods_then_samples_by_risk():
    demand = [5000.0, 9000.0, 6000.0, 12000.0, 7000.0, 8000.0]
    pack = station_pack(demand, 160.0, T=6, des_settings={"top_periods": 2, "sampled_periods": 3})
    res = peak_service(pack, baseline(pack), n_paths=40, seed=6)
    top = res.days[res.days["kind"] == "top"]
    assert top["t"].tolist() == [3, 1]
    sampled = res.days[res.days["kind"] == "sampled"]
    assert len(sampled) == 3
    pairs = list(zip(res.days["path"], res.days["t"], strict=True))
    assert len(set(pairs)) == len(pairs)
    # Only peak periods are candidates when the pack marks some.
    mask = np.array([1, 1, 0, 0, 1, 1], bool)
    res = peak_service(pack.replace(peak=mask), baseline(pack), n_paths=40, seed=6)
    assert res.days["t"].iloc[:2].tolist() == [1, 5]
    assert mask[res.days["t"]].all()


def test_results_are_identical_for_one_or_two_workers(tiny):
    plans = {"baseline": mc.plan_inputs(tiny),
             "A": mc.plan_inputs(tiny, np.array([[0, 20, 30, 30, 0, 0], [0, 0, 10, 10, 0, 0], [0.0] * 6]))}
    one = peak_service(tiny, plans, n_paths=200, seed=9, workers=1)
    two = peak_service(tiny, plans, n_paths=200, seed=9, workers=2)
    pd.testing.assert_frame_equal(one.table, two.table)
    pd.testing.assert_frame_equal(one.days, two.days)
    for name in plans:
        np.testing.assert_array_equal(one.worst_day[name].queue_length, two.worst_day[name].queue_length)
    assert len(one.table) == 2 and (one.table["n_days"] == 2 * 4).all()  # 2 stations x (2 top + 2 sampled)


def test_busy_days_are_simulated_as_a_slice_at_the_same_utilisation():
    pack = station_pack(50_000.0, 1000.0)  # 50k customers: a 40% slice, utilisation 0.5
    res = peak_service(pack, baseline(pack), n_paths=20, seed=3)
    day = res.days.iloc[0]
    assert day["scale"] == pytest.approx(peak.MAX_CUSTOMERS / 50_000.0)
    assert bool(res.table["scaled"].iloc[0])
    assert day["served"] == pytest.approx(50_000.0, rel=0.02)
    assert any("slice of the day" in note for note in res.notes)


@pytest.mark.parametrize("settings", [{"enabled": False}, {"top_periods": 0, "sampled_periods": 0}])
def test_disabled_des_or_no_periods_returns_an_empty_table(settings):
    pack = station_pack(des_settings=settings)
    res = peak_service(pack, baseline(pack), n_paths=20, seed=3)
    assert res.table.empty and res.days.empty and res.worst_day == {}
    assert "fluid_ok" in res.table.columns and "sla" in res.days.columns


def test_peak_day_functions_are_still_importable_from_des():
    assert des.simulate_peak_day is peak.simulate_peak_day
    assert des.simulate_peak_periods is peak.simulate_peak_periods
    with pytest.raises(AttributeError, match=r"has no attribute 'nope'"):
        _ = des.nope


@pytest.mark.parametrize(
    ("changes", "kwargs", "message"),
    [
        ({"des": {"hours": 8}}, {}, r"pack.des has unknown settings \['hours'\]"),
        ({"des": {"resources": ["counter"]}}, {}, r"des.resources: unknown resources \['counter'\]"),
        ({"des": {"hours_per_day": 30.0}}, {}, r"des.hours_per_day must be finite and in \(0, 24"),
        ({"extra": {"intraday_profile": {"desk": [0.0, 0.0]}}}, {},
         r'extra\["intraday_profile"\]\["desk"\] must be a non-empty list of weights with a positive sum'),
        ({"extra": {"service_time": {"desk": 0.0}}}, {}, r'extra\["service_time"\]\["desk"\] must be finite'),
        ({}, {"plans": {}}, r"plans is empty"),
        ({}, {"plans": {"A": mc.PlanInputs(np.zeros((1, 4)), np.zeros((4, 1)))}},
         r"plan 'A': levels has shape \(1, 4\), the pack needs \(0, 4\)"),
        ({}, {"n_paths": 0}, r"n_paths must be >= 1, got 0"),
        ({}, {"workers": 0}, r"workers must be >= 1, got 0"),
    ],
)
def test_peak_service_rejects_bad_inputs(changes, kwargs, message):
    pack = station_pack().replace(**changes)
    args = {"plans": baseline(pack), "n_paths": 10, "seed": 1, **kwargs}
    with pytest.raises(InputError, match=message):
        peak_service(pack, args.pop("plans"), **args)


def test_explicit_resources_must_carry_load():
    pack = examples.tiny_pack().replace(load=np.array([[1.0, 0.0], [0.0, 0.0]]), des={"resources": ["pack"]})
    with pytest.raises(InputError, match=r"des.resources: \['pack'\] carry no load"):
        peak_service(pack, baseline(pack), n_paths=10, seed=1)


def test_path_draws_are_the_monte_carlo_paths(tiny):
    full = mc.sample_paths(tiny, 2500, 11)
    paths = [3, 1200, 2499]
    part = peak._path_draws(tiny, peak.seed_sequence(11), 2500, paths)
    for name in peak._DRAW_FIELDS:
        np.testing.assert_array_equal(getattr(part, name), getattr(full, name)[paths])


def test_fluid_flows_add_up_to_the_monte_carlo_served_volume(tiny):
    # Shared resource, backlog (max_delay 1), levers: the per-period differences must be exact.
    plan = mc.plan_inputs(tiny, np.array([[0, 20, 30, 30, 0, 0], [0, 0, 10, 10, 0, 0], [0, 0, 5, 5, 0, 0]], float))
    draws = mc.sample_paths(tiny, 30, 2)
    rows = np.arange(30)
    flows = [peak._fluid(tiny, plan, draws, t, rows, np.arange(2)) for t in range(6)]
    served = np.stack([s for s, _ in flows], axis=1)  # [paths, T, G]
    carried = np.stack([c for _, c in flows], axis=1)
    rec = mc.run_recurrence(tiny, plan, draws)
    np.testing.assert_allclose(served.sum(axis=(1, 2)), rec["served"], rtol=1e-12)
    assert (carried[:, 0] == 0).all() and carried.sum() > 0
    # What is carried into t+1 is what t's request left unserved (and not lost).
    assert (carried[:, 1:] <= draws.demand[:, :-1] + carried[:, :-1] - served[:, :-1] + 1e-9).all()


def test_sampled_periods_follow_the_load():
    pack = station_pack([100.0, 900.0], 160.0, T=2, des_settings={"top_periods": 0, "sampled_periods": 50})
    res = peak_service(pack, baseline(pack), n_paths=400, seed=8)
    assert (res.days["kind"] == "sampled").all() and len(res.days) == 50
    assert (res.days["t"] == 1).sum() >= 38  # 9 in 10 expected


def test_retail_scenario_throughput_agrees_with_the_fluid_model():
    from conftest import ROOT

    from peakplan.compile import build_pack
    from peakplan.loaders import load_scenario

    pack = build_pack(load_scenario(ROOT / "scenarios" / "retail_peak.yaml"))
    pack = pack.replace(des={**pack.des, "top_periods": 1, "sampled_periods": 1})
    res = peak_service(pack, baseline(pack), n_paths=1000, seed=42)
    assert len(res.days) == 2 * 6 and set(res.days["resource"]) == set(pack.resources)
    assert (res.days["service_h"].isin([0.025, 0.012])).all()
    assert abs(res.table["fluid_gap"].iloc[0]) < 0.02
