"""Plans: the decisions of one variant, as an action schedule, a scale-down plan and tripwires."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from peakplan.pack import PlanningPack, Variant
from peakplan.simulate import mc

__all__ = ["Plan", "action_schedule", "cost_breakdown", "plan_from_dict", "plan_to_dict", "scale_down", "tripwires"]


@dataclass(frozen=True, eq=False)
class Plan:
    """One plan: first-stage decisions and how they were obtained."""

    name: str
    """Variant name, e.g. ``A``."""
    label: str
    """Human label, e.g. ``lean``."""
    variant: Variant
    """The variant (explicit constraint set) it was solved under."""
    levels: np.ndarray
    """``[L, T]`` active level of every lever (reserve/release level, flex usable cap)."""
    prebuild: np.ndarray
    """``[T, G]`` planned stock build per period and segment."""
    constraints: dict
    """The exact constraint set of the solve (target, service kind, level, budget, ...)."""
    objective: float
    """In-sample expected total cost (currency)."""
    status: Any
    """:class:`peakplan.optimize.SolveStatus` of the solve."""
    solve_seconds: float
    """Wall time of the solve."""
    quality: dict = field(default_factory=dict)
    """Out-of-sample CIs, SAA optimality-gap estimate and value of the stochastic solution."""
    identical_to: str | None = None
    """An earlier variant with the same decisions, if any."""

    def inputs(self, pack: PlanningPack) -> mc.PlanInputs:
        """What the Monte Carlo core needs to simulate this plan."""
        return mc.plan_inputs(pack, levels=self.levels, prebuild=self.prebuild)

    def with_quality(self, quality: dict) -> Plan:
        return replace(self, quality=quality)


def _period(pack: PlanningPack, t: int) -> str:
    return pack.periods[t] if 0 <= t < pack.T else f"t{t}"


def action_schedule(pack: PlanningPack, plan: Plan) -> pd.DataFrame:
    """One row per capacity change: lever, resource, quantity, start, end, decide-by.

    A change effective at period ``t`` must be decided by ``t - lead_time`` (increases of
    reserve and flex levers) or ``t - notice`` (decreases and releases).
    """
    rows = []
    committed = pack.arr("committed")
    for i, lv in enumerate(pack.levers):
        extra = np.round(plan.levels[i] - committed[i], 6)
        lead = lv.notice if lv.kind == "release" else lv.lead_time
        for t in range(pack.T):
            before = extra[t - 1] if t > 0 else 0.0
            if extra[t] > before:
                end = t  # the layer lasts while the level stays above where it was before
                while end + 1 < pack.T and extra[end + 1] > before:
                    end += 1
                rows.append({"lever": lv.name, "kind": lv.kind, "resource": pack.resources[lv.resource],
                             "quantity": float(extra[t] - before), "start": _period(pack, t),
                             "end": _period(pack, end), "start_index": t, "end_index": end,
                             "decide_by": _period(pack, t - lead), "decide_by_index": t - lead})
    cols = ["lever", "kind", "resource", "quantity", "start", "end", "start_index", "end_index", "decide_by",
            "decide_by_index"]
    return pd.DataFrame(rows, columns=cols)


def scale_down(pack: PlanningPack, plan: Plan) -> pd.DataFrame:
    """Every decrease of a lever level: when to notify and when the capacity goes.

    A reserve unit added at ``t`` may go only after its minimum term; a decrease effective
    at ``t`` is notified at ``t - notice``.
    """
    rows = []
    committed = pack.arr("committed")
    for i, lv in enumerate(pack.levers):
        extra = np.round(plan.levels[i] - committed[i], 6)
        for t in range(1, pack.T + 1):
            before = extra[t - 1]
            after = extra[t] if t < pack.T else 0.0
            if after < before:
                rows.append({"lever": lv.name, "kind": lv.kind, "resource": pack.resources[lv.resource],
                             "quantity": float(before - after), "effective": _period(pack, t) if t < pack.T else "after horizon",
                             "effective_index": t, "notify_by": _period(pack, t - lv.notice),
                             "notify_by_index": t - lv.notice, "min_term": lv.min_term})
    cols = ["lever", "kind", "resource", "quantity", "effective", "effective_index", "notify_by", "notify_by_index",
            "min_term"]
    return pd.DataFrame(rows, columns=cols)


def tripwires(pack: PlanningPack, plan: Plan) -> pd.DataFrame:
    """Monitoring rules: what to watch, the threshold, and the action when it trips.

    - demand of a peak or near period above the forecast's p90 (the plan's risk assumption);
    - the plan's capacity per resource in a peak period falling below the median load.
    """
    z90 = stats.norm.ppf(0.9)
    if pack.marginal == "lognormal":
        p90 = np.exp(pack.demand_mu + z90 * pack.demand_sigma)
        p50 = np.exp(pack.demand_mu)
    else:
        p90 = pack.demand_mu + z90 * pack.demand_sigma
        p50 = pack.demand_mu
    peak = pack.arr("peak").astype(bool)
    watch = np.flatnonzero(peak) if peak.any() else np.arange(min(pack.T, 4))
    rows = []
    for t in watch:
        for g, seg in enumerate(pack.segments):
            rows.append({"metric": f"demand {seg}", "period": pack.periods[t], "threshold": float(p90[t, g]),
                         "rule": "actual or re-forecast demand above the p90 assumption",
                         "action": "escalate: call flex levers, re-run the plan with the new forecast"})
    cap = pack.base_capacity.copy()
    inp = plan.inputs(pack)
    for i, lv in enumerate(pack.levers):
        if lv.kind == "reserve":
            cap[:, lv.resource] += inp.levels[i]
        elif lv.kind == "release":
            cap[:, lv.resource] -= inp.levels[i]
    load = p50 @ np.asarray(pack.load)
    for t in watch:
        for r, res in enumerate(pack.resources):
            rows.append({"metric": f"capacity {res}", "period": pack.periods[t], "threshold": float(load[t, r]),
                         "rule": f"available capacity (plan {cap[t, r]:,.0f}) below the median load",
                         "action": "escalate: confirm agency delivery, use overtime, re-run"})
    return pd.DataFrame(rows, columns=["metric", "period", "threshold", "rule", "action"])


def cost_breakdown(pack: PlanningPack, plan: Plan) -> pd.DataFrame:
    """Deterministic lever cost per lever (rent, orders, savings) over the horizon."""
    rows = []
    for i, lv in enumerate(pack.levers):
        y = plan.levels[i]
        one = np.zeros_like(plan.levels)
        one[i] = y
        cost = mc.lever_fixed_cost(pack.replace(committed=None), one)
        if abs(cost) > 1e-9 or y.any():
            rows.append({"lever": lv.name, "kind": lv.kind, "unit_periods": float(y.sum()), "cost": float(cost)})
    return pd.DataFrame(rows, columns=["lever", "kind", "unit_periods", "cost"])


def plan_to_dict(pack: PlanningPack, plan: Plan) -> dict:
    """A JSON-ready dict of the plan (levels by lever name and period label)."""
    return {
        "name": plan.name, "label": plan.label, "status": str(plan.status), "objective": plan.objective,
        "solve_seconds": plan.solve_seconds, "identical_to": plan.identical_to, "constraints": plan.constraints,
        "variant": {"service": plan.variant.service, "target": plan.variant.target, "level": plan.variant.level,
                    "budget": plan.variant.budget, "stress": plan.variant.stress},
        "periods": list(pack.periods),
        "levels": {lv.name: plan.levels[i].tolist() for i, lv in enumerate(pack.levers)},
        "prebuild": {seg: plan.prebuild[:, g].tolist() for g, seg in enumerate(pack.segments)},
        "quality": plan.quality,
    }


def _status(value):
    """The :class:`peakplan.optimize.SolveStatus` written as ``value`` (kept as is if unknown)."""
    from peakplan.optimize import SolveStatus

    try:
        return SolveStatus(value)
    except ValueError:
        return value


def plan_from_dict(pack: PlanningPack, d: dict) -> Plan:
    """Inverse of :func:`plan_to_dict` for the same pack."""
    levels = np.array([d["levels"][lv.name] for lv in pack.levers], float).reshape(pack.L, pack.T)
    prebuild = np.array([d["prebuild"][s] for s in pack.segments], float).T.reshape(pack.T, pack.G)
    v = d["variant"]
    return Plan(name=d["name"], label=d["label"], variant=Variant(d["name"], d["label"], v["service"], v["target"],
                                                                   v["level"], v["budget"], v["stress"]),
                levels=levels, prebuild=prebuild, constraints=d["constraints"], objective=d["objective"],
                status=_status(d["status"]), solve_seconds=d["solve_seconds"], quality=d.get("quality", {}),
                identical_to=d.get("identical_to"))
