import importlib
import json

import numpy as np
import pytest

from peakplan import examples
from peakplan import plans as plans_mod
from peakplan.simulate import mc

opt = importlib.import_module("peakplan.optimize")


@pytest.fixture(scope="module")
def lean():
    pack = examples.tiny_pack()
    pack = pack.replace(penalty=np.array([80.0, 80.0]))
    plan = opt.optimize(pack, n_samples=30, seed=4, quality=False, variants=pack.variants[:1])["A"]
    return pack, plan


def test_plan_inputs_match_the_monte_carlo_plan_inputs(lean):
    pack, plan = lean
    want = mc.plan_inputs(pack, levels=plan.levels, prebuild=plan.prebuild)
    got = plan.inputs(pack)
    np.testing.assert_array_equal(got.levels, want.levels)


def test_round_trip_keeps_decisions_status_and_constraints(lean):
    pack, plan = lean
    back = plans_mod.plan_from_dict(pack, json.loads(json.dumps(plans_mod.plan_to_dict(pack, plan))))
    np.testing.assert_array_equal(back.levels, plan.levels)
    np.testing.assert_array_equal(back.prebuild, plan.prebuild)
    assert back.status is opt.SolveStatus.OPTIMAL
    assert back.constraints == plan.constraints and back.variant == plan.variant


def test_action_schedule_decide_by_is_start_minus_lead_time(lean):
    pack, plan = lean
    acts = plans_mod.action_schedule(pack, plan)
    lead = {lv.name: lv.lead_time for lv in pack.levers}
    for row in acts.itertuples():
        assert row.decide_by_index == row.start_index - lead[row.lever]
        assert row.decide_by_index >= 0  # never a decision in the past


def test_scale_down_gives_notice_and_quantities(lean):
    pack, plan = lean
    down = plans_mod.scale_down(pack, plan)
    notice = {lv.name: lv.notice for lv in pack.levers}
    for row in down.itertuples():
        assert row.quantity > 0
        assert row.notify_by_index == row.effective_index - notice[row.lever]


def test_tripwires_cover_demand_p90_and_capacity(lean):
    pack, plan = lean
    trip = plans_mod.tripwires(pack, plan)
    demand = trip[trip["metric"].str.startswith("demand")]
    assert len(demand) > 0
    # the demand threshold is the forecast p90, above the median
    t = pack.periods.index(demand["period"].iloc[0])
    g = pack.segments.index(demand["metric"].iloc[0].split(" ", 1)[1])
    assert demand["threshold"].iloc[0] > np.exp(pack.demand_mu[t, g])
    assert (trip["metric"].str.startswith("capacity")).any()


def test_cost_breakdown_adds_up_to_the_lever_cost(lean):
    pack, plan = lean
    table = plans_mod.cost_breakdown(pack, plan)
    fixed = mc.lever_fixed_cost(pack.replace(committed=None), plan.levels)
    assert table["cost"].sum() == pytest.approx(fixed, rel=1e-9, abs=1e-6)
