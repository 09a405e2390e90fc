"""Metric formulas and scorecards: service, cost, utilization and risk.

Risk measures follow Rockafellar & Uryasev (2000), "Optimization of conditional
value-at-risk", J. Risk 2(3):21-41, for a *loss* ``L`` (higher is worse):

- ``VaR_a(L) = min{ t : P(L <= t) >= a }`` (the lower ``a``-quantile);
- ``CVaR_a(L) = min_t  t + E[(L - t)^+] / (1 - a)``, whose minimiser is ``VaR_a``.

On ``n`` equally likely samples the minimum is attained at a sample point, and the value
is exact (it splits the atom at VaR when ``n (1 - a)`` is not an integer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from peakplan.pack import MetricDefinition, PlanningPack

__all__ = [
    "DEFINITIONS",
    "Scorecard",
    "cvar",
    "mean_ci",
    "normal_cvar",
    "normal_var",
    "scorecard",
    "var",
]


def var(losses: np.ndarray, alpha: float) -> float:
    """Value-at-risk ``VaR_alpha``: the smallest ``t`` with ``P(L <= t) >= alpha``.

    ``losses``: samples of the loss (any unit), equally likely; ``alpha`` in (0, 1).
    """
    x = np.sort(np.asarray(losses, float).ravel())
    if x.size == 0:
        raise ValueError("var() needs at least one sample")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    k = int(np.ceil(alpha * x.size - 1e-12)) - 1
    return float(x[max(k, 0)])


def cvar(losses: np.ndarray, alpha: float) -> float:
    """Conditional value-at-risk (Rockafellar-Uryasev), exact on equally likely samples.

    ``CVaR_a = VaR_a + E[(L - VaR_a)^+] / (1 - a)`` (R&U 2000, Thm. 1 with t* = VaR_a).
    """
    x = np.asarray(losses, float).ravel()
    t = var(x, alpha)
    return float(t + np.maximum(x - t, 0.0).mean() / (1.0 - alpha))


def normal_var(mu: float, sigma: float, alpha: float) -> float:
    """VaR of a normal loss ``N(mu, sigma^2)``: ``mu + sigma * Phi^-1(alpha)``."""
    return float(mu + sigma * stats.norm.ppf(alpha))


def normal_cvar(mu: float, sigma: float, alpha: float) -> float:
    """CVaR of a normal loss: ``mu + sigma * phi(Phi^-1(alpha)) / (1 - alpha)`` (R&U 2000, eq. 6)."""
    return float(mu + sigma * stats.norm.pdf(stats.norm.ppf(alpha)) / (1.0 - alpha))


def mean_ci(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and a normal-approximation confidence interval ``(mean, lo, hi)``."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (float("nan"),) * 3
    m = float(x.mean())
    if x.size < 2:
        return m, m, m
    h = float(stats.norm.ppf(0.5 + level / 2) * x.std(ddof=1) / np.sqrt(x.size))
    return m, m - h, m + h


DEFINITIONS: tuple[MetricDefinition, ...] = (
    MetricDefinition("fill_rate", "served within max_delay / demand, over the service window",
                     "share", "per path; mean and P5 over paths", "higher"),
    MetricDefinition("lost", "demand unserved after waiting max_delay periods",
                     "units", "sum over periods; mean, VaR, CVaR over paths", "lower"),
    MetricDefinition("cost", "base capacity + levers + flex used + penalty x (lost + backlog at horizon)"
                     " + backlog cost + holding", "currency", "sum over periods; mean, P95, CVaR95", "lower"),
    MetricDefinition("utilization", "load served / capacity in place (regular + flex used)",
                     "share", "ratio of sums over peak (or off-peak) periods; mean over paths", "higher"),
    MetricDefinition("p_breach", "P(fill_rate < service target)", "probability",
                     "share of paths", "lower"),
    MetricDefinition("worst_period_service", "min over service-window periods of served / request",
                     "share", "per path; mean over paths", "higher"),
    MetricDefinition("cvar95_cost", "Rockafellar-Uryasev CVaR at 95% of total cost", "currency",
                     "over paths", "lower"),
    MetricDefinition("cvar95_lost", "Rockafellar-Uryasev CVaR at 95% of lost units", "units",
                     "over paths", "lower"),
)


@dataclass(frozen=True)
class Scorecard:
    """Headline metrics of one plan (or the baseline) over its simulated paths."""

    plan: str
    """Plan name (``baseline`` for the do-nothing plan)."""
    n_paths: int
    """Paths scored."""
    cost_mean: float
    """Mean total cost (currency)."""
    cost_ci: tuple[float, float]
    """95% confidence interval of the mean cost."""
    cost_p95: float
    """95th percentile (VaR95) of total cost."""
    cost_cvar95: float
    """CVaR95 of total cost."""
    fill_mean: float
    """Mean fill rate."""
    fill_ci: tuple[float, float]
    """95% confidence interval of the mean fill rate."""
    fill_p5: float
    """5th percentile of the fill rate."""
    p_breach: float
    """P(fill rate < target)."""
    lost_mean: float
    """Mean lost units."""
    lost_cvar95: float
    """CVaR95 of lost units."""
    util_peak: float
    """Mean utilization in peak periods."""
    util_offpeak: float
    """Mean utilization off-peak."""
    worst_period_service: float
    """Mean over paths of the worst period's service."""
    cost_components: dict
    """Mean cost by component (currency)."""

    def as_row(self) -> dict:
        """A flat dict for a comparison table."""
        return {
            "plan": self.plan,
            "n_paths": self.n_paths,
            "cost_mean": self.cost_mean,
            "cost_ci_lo": self.cost_ci[0],
            "cost_ci_hi": self.cost_ci[1],
            "cost_p95": self.cost_p95,
            "cost_cvar95": self.cost_cvar95,
            "fill_mean": self.fill_mean,
            "fill_ci_lo": self.fill_ci[0],
            "fill_ci_hi": self.fill_ci[1],
            "fill_p5": self.fill_p5,
            "p_breach": self.p_breach,
            "lost_mean": self.lost_mean,
            "lost_cvar95": self.lost_cvar95,
            "util_peak": self.util_peak,
            "util_offpeak": self.util_offpeak,
            "worst_period_service": self.worst_period_service,
        }


def scorecard(pack: PlanningPack, metrics: np.ndarray, plan: str = "baseline") -> Scorecard:
    """Score per-path ``metrics`` (from :func:`peakplan.simulate.mc.simulate`)."""
    cost = metrics["cost"]
    fill = metrics["fill_rate"]
    lost = metrics["lost"]
    cm, clo, chi = mean_ci(cost)
    fm, flo, fhi = mean_ci(fill)
    comps = {k[5:]: float(metrics[k].mean()) for k in metrics.dtype.names
             if k.startswith("cost_")}
    return Scorecard(
        plan=plan,
        n_paths=len(metrics),
        cost_mean=cm,
        cost_ci=(clo, chi),
        cost_p95=var(cost, 0.95),
        cost_cvar95=cvar(cost, 0.95),
        fill_mean=fm,
        fill_ci=(flo, fhi),
        fill_p5=float(np.quantile(fill, 0.05)),
        p_breach=float(np.mean(fill < pack.service_target - 1e-12)),
        lost_mean=float(lost.mean()),
        lost_cvar95=cvar(lost, 0.95),
        util_peak=float(np.nanmean(metrics["util_peak"])) if np.isfinite(metrics["util_peak"]).any() else float("nan"),
        util_offpeak=float(np.nanmean(metrics["util_offpeak"])) if np.isfinite(metrics["util_offpeak"]).any() else float("nan"),
        worst_period_service=float(metrics["worst_period_service"].mean()),
        cost_components=comps,
    )


# --------------------------------------------------------------------------------------
# Stress tests and side-by-side comparison
# --------------------------------------------------------------------------------------
def apply_stress(pack: PlanningPack, stress) -> PlanningPack:
    """The pack with a deterministic shock applied (demand and base capacity multipliers).

    Demand is scaled by ``demand_factor`` in the shock's periods x segments (the location of
    the lognormal moves by ``ln(factor)``; a normal's mean and sd scale); base capacity is
    scaled by ``capacity_factor`` in its periods x resources.
    """
    T, G, R = pack.T, pack.G, pack.R
    per = np.ones(T, bool) if stress.periods is None else np.asarray(stress.periods, bool)
    seg = np.ones(G, bool) if stress.segments is None else np.asarray(stress.segments, bool)
    res = np.ones(R, bool) if stress.resources is None else np.asarray(stress.resources, bool)
    mu, sd = pack.demand_mu.copy(), pack.demand_sigma.copy()
    cell = per[:, None] & seg[None, :]
    if stress.demand_factor != 1.0:
        if pack.marginal == "lognormal":
            with np.errstate(divide="ignore"):
                mu = np.where(cell, mu + np.log(stress.demand_factor), mu)
        else:
            mu = np.where(cell, mu * stress.demand_factor, mu)
            sd = np.where(cell, sd * stress.demand_factor, sd)
    cap = pack.base_capacity.copy()
    cap[np.ix_(per, res)] *= stress.capacity_factor
    return pack.replace(demand_mu=mu, demand_sigma=sd, base_capacity=cap)


def dominance(table) -> dict[str, str]:
    """Which plans dominate or are dominated on (cost mean, CVaR95 cost: lower; fill mean: higher)."""
    out: dict[str, str] = {}
    rows = table.to_dict("records")
    for a in rows:
        for b in rows:
            if a["plan"] == b["plan"]:
                continue
            # differences below 1e-9 relative are ties (floating-point noise, not a trade-off)
            def lt(x, y):
                return x < y - 1e-9 * max(abs(x), abs(y), 1.0)

            no_worse = (not lt(a["cost_mean"], b["cost_mean"]) and not lt(a["cost_cvar95"], b["cost_cvar95"])
                        and not lt(b["fill_mean"], a["fill_mean"]))
            better = (lt(b["cost_mean"], a["cost_mean"]) or lt(b["cost_cvar95"], a["cost_cvar95"])
                      or lt(a["fill_mean"], b["fill_mean"]))
            if no_worse and better:
                out[a["plan"]] = f"dominated by {b['plan']}"
                break
    for a in rows:
        if a["plan"] not in out:
            beaten = [p for p, why in out.items() if why == f"dominated by {a['plan']}"]
            out[a["plan"]] = f"dominates {', '.join(beaten)}" if beaten else "efficient"
    return out


def cost_ties(table, costs: dict | None = None, z: float = 2.0, material: float = 1e-3) -> list[str]:
    """The plans of ``table`` whose mean cost is not materially above the cheapest one's.

    A plan ties when its mean cost exceeds the cheapest by at most ``material`` of that cost
    (0.1 %: the optimality gap plans are solved to; a smaller difference says nothing about
    the plans) or by at most ``z`` standard errors of the difference: with ``costs``
    (per-path costs on the common paths, by plan) the paired difference's, otherwise from
    the table's 95% cost intervals (unpaired, so wider). Returned in the table's order.
    """
    rows = table.to_dict("records")
    if not rows:
        return []
    cheap = min(rows, key=lambda r: r["cost_mean"])
    out = []
    for r in rows:
        diff = r["cost_mean"] - cheap["cost_mean"]
        if costs is not None and r["plan"] in costs and cheap["plan"] in costs:
            d = np.asarray(costs[r["plan"]], float) - np.asarray(costs[cheap["plan"]], float)
            se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
        elif "cost_ci_lo" in r and "cost_ci_hi" in r:
            half = [(x["cost_ci_hi"] - x["cost_ci_lo"]) / 2 / 1.959963984540054 for x in (r, cheap)]
            se = float(np.hypot(*half))
        else:
            se = 0.0
        if diff <= max(z * se, material * abs(cheap["cost_mean"])):
            out.append(r["plan"])
    return out


def recommend(pack: PlanningPack, table, costs: dict | None = None) -> tuple[str, str]:
    """The recommended plan and a rationale built from the scenario's targets.

    Among plans whose mean fill rate meets the target, the cheapest by mean cost; plans
    whose cost is not materially above it (within 0.1 % or within sampling error,
    :func:`cost_ties`; ``costs``: per-path costs on the common paths) count as equally
    cheap, and the first of them in the table's order (the scenario's order of variants,
    leanest first) is the pick, so that the choice does not flip on noise. Then a plan that
    cuts P(breach) by at least half for under 5% more cost replaces it (the cheapest such,
    equally cheap ones again going to the first in order). If none meets the target, the plan with the highest mean fill
    rate, flagged for escalation.
    """
    target = pack.service_target
    plans = table[table["plan"] != "baseline"]
    rows = plans.sort_values("cost_mean", kind="stable")
    ok = rows[rows["fill_mean"] >= target]
    if ok.empty:
        best = rows.sort_values("fill_mean", ascending=False).iloc[0]
        return str(best["plan"]), (f"no plan meets the {target:.1%} fill-rate target in expectation; "
                                   f"{best['plan']} comes closest ({best['fill_mean']:.2%}) — escalate")
    def first_of(tied: list[str]) -> tuple[str, str]:
        """The first of equally cheap plans, and what the rationale says about the others."""
        others = tied[1:]
        if not others:
            return tied[0], ""
        return tied[0], (f"; {', '.join(others)} cost{'s' if len(others) == 1 else ''} the same within 0.1 % or "
                         f"sampling error, and {tied[0]} comes first in the scenario's order")

    first, tie_note = first_of(cost_ties(plans[plans["fill_mean"] >= target], costs))
    pick = ok[ok["plan"] == first].iloc[0]
    why = (f"{pick['plan']} is the cheapest plan meeting the {target:.1%} target in expectation "
           f"(fill {pick['fill_mean']:.2%}, P(breach) {pick['p_breach']:.1%}, mean cost {pick['cost_mean']:,.0f})"
           + tie_note)
    better = plans[(plans["fill_mean"] >= target) & (plans["plan"] != pick["plan"])
                   & (plans["p_breach"] <= 0.5 * pick["p_breach"]) & (plans["cost_mean"] <= 1.05 * pick["cost_mean"])]
    if len(better):  # the cheapest of them, equally cheap ones again going to the first in order
        first, tie_note = first_of(cost_ties(better, costs))
        alt = better[better["plan"] == first].iloc[0]
        why = (f"{alt['plan']} halves P(breach) vs {pick['plan']} ({alt['p_breach']:.1%} vs "
               f"{pick['p_breach']:.1%}) for {alt['cost_mean'] / pick['cost_mean'] - 1:+.1%} cost" + tie_note)
        pick = alt
    return str(pick["plan"]), why


def compare(pack: PlanningPack, plans: dict, n_paths: int | None = None, seed=None, *,
            baseline: bool = True, stress: bool = True, chunk_size: int | None = None,
            des: bool = True, workers: int = 1, details: bool = False, simulate_fn=None):
    """Score every plan out of sample, side by side.

    Every plan (and the do-nothing baseline) is simulated on the same fresh paths (common
    random numbers, so differences between plans are not sampling noise), then under each
    stress test of the pack. Returns a pandas DataFrame, one row per plan, with the
    headline metrics, one ``stress: <name>`` column (mean fill rate under that shock) per
    stress test, a ``dominance`` column and ``recommended`` (bool); the rationale is in
    ``DataFrame.attrs["rationale"]``. With ``des`` (and ``pack.des["enabled"]``), the
    discrete-event core simulates peak station-days of every plan on the same paths and adds
    ``des_*`` time-to-serve columns (SLA attainment mean and P5, mean and P95 wait,
    abandonment, fluid-vs-discrete gap). With ``details=True`` the return value is
    ``(table, extras)`` where ``extras["des"]`` is the full
    :class:`~peakplan.simulate.peak.PeakService` (station-days, worst-day queue curves).
    """
    import pandas as pd

    from peakplan.simulate import mc

    sim = simulate_fn or mc.simulate
    n = int(n_paths or pack.n_paths)
    entries = ([("baseline", mc.plan_inputs(pack))] if baseline else []) + \
        [(name, p.inputs(pack)) for name, p in plans.items()]
    rows, costs = [], {}
    for name, inputs in entries:
        m = sim(pack, inputs, n_paths=n, seed=seed, chunk_size=chunk_size).metrics
        costs[name] = np.asarray(m["cost"], float)
        row = scorecard(pack, m, name).as_row()
        if stress:
            for st in pack.stress_tests:
                ms = sim(apply_stress(pack, st), inputs, n_paths=max(1000, n // 4), seed=seed,
                         chunk_size=chunk_size).metrics
                row[f"stress: {st.name}"] = float(ms["fill_rate"].mean())
        rows.append(row)
    table = pd.DataFrame(rows)
    extras: dict = {}
    if des and pack.des.get("enabled", True) and len(entries):
        from peakplan.simulate.peak import peak_service

        res = peak_service(pack, dict(entries), n_paths=n, seed=pack.seed if seed is None else seed,
                           workers=workers)
        if not res.table.empty:
            cols = res.table.drop(columns=["sla_target"], errors="ignore").add_prefix("des_")
            table = table.merge(cols.rename(columns={"des_plan": "plan"}), on="plan", how="left")
        table.attrs["des_notes"] = list(res.notes)
        extras["des"] = res
    dom = dominance(table[table["plan"] != "baseline"]) if len(plans) > 1 else {}
    table["dominance"] = [dom.get(p, "") for p in table["plan"]]
    if plans:
        best, why = recommend(pack, table, costs)
        table["recommended"] = table["plan"] == best
        table.attrs["rationale"] = why
        table.attrs["recommended"] = best
    return (table, extras) if details else table
