"""Tiny built-in packs shared by tests, notebooks and benchmarks.

Each builds a :class:`~peakplan.pack.PlanningPack` directly from arrays, without files,
so a stage can be exercised alone.
"""

from __future__ import annotations

import numpy as np

from peakplan.pack import Disruption, Event, Lever, PlanningPack, StressTest, Variant

__all__ = ["DEFAULT_VARIANTS", "newsvendor_pack", "sailco_pack", "series_pack", "synthetic_pack", "tiny_pack"]

#: Plan variants of DESIGN.md: A lean, B balanced, C resilient.
DEFAULT_VARIANTS = (
    Variant("A", "lean", service="expected", target=0.95),
    Variant("B", "balanced", service="quantile", target=0.95, level=0.9),
    Variant("C", "resilient", service="cvar", target=0.95, level=0.95),
)


def tiny_pack(**changes) -> PlanningPack:
    """Six weekly periods, two segments, two resources, a promotion in weeks 3-4.

    Segment ``north`` loads ``pick_n`` (1.0 h/unit) and ``pack`` (0.5 h/unit); ``south``
    loads ``pack`` (0.5 h/unit) only. One reserve, one flex and one release lever.
    """
    T = 6
    p50 = np.array([[100, 60]] * T, float)
    p50[2:4] *= 1.2
    sigma = np.full((T, 2), 0.15)
    pack = PlanningPack(
        name="tiny",
        periods=tuple(f"2026-W{40 + t}" for t in range(T)),
        period_kind="week",
        segments=("north", "south"),
        resources=("pick_n", "pack"),
        load=np.array([[1.0, 0.5], [0.0, 0.5]]),
        priority=np.array([0, 0]),
        demand_mu=np.log(p50),
        demand_sigma=sigma,
        ar1=0.5,
        seg_corr=np.array([[1.0, 0.3], [0.3, 1.0]]),
        events=(Event("promo", 0.8, np.array([0, 0, 1, 1, 0, 0], bool), np.array([True, True]),
                      ("triangular", (1.1, 1.3, 1.6))),),
        base_capacity=np.array([[110.0, 85.0]] * T),
        availability_mean=np.array([0.95, 0.97]),
        availability_sd=np.array([0.03, 0.02]),
        disruptions=(Disruption("outage", 0.1, 3, 1, 0.5, np.array([True, False])),),
        capacity_cost=np.array([10.0, 12.0]),
        penalty=np.array([40.0, 40.0]),
        backlog_cost=np.array([2.0, 2.0]),
        max_delay=1,
        levers=(
            Lever("temps_n", "reserve", 0, lead_time=1, unit_cost=14.0, min_term=2, quota=60.0,
                  fixed_cost=50.0, reliability=0.9),
            Lever("overtime_pack", "flex", 1, lead_time=0, unit_cost=22.0, quota=30.0),
            Lever("release_pack", "release", 1, lead_time=0, unit_cost=12.0, notice=2, quota=20.0),
        ),
        service_target=0.95,
        peak=np.array([0, 0, 1, 1, 0, 0], bool),
        variants=DEFAULT_VARIANTS,
        stress_tests=(StressTest("uplift+30%", demand_factor=1.3,
                                 periods=np.array([0, 0, 1, 1, 0, 0], bool)),),
        n_paths=2000,
        seed=7,
        chunk_size=1000,
    )
    return pack.replace(**changes) if changes else pack


def newsvendor_pack(mean: float = 50.0, sd: float = 8.0, h: float = 0.18, p: float = 0.7) -> PlanningPack:
    """The one-period newsvendor (Snyder & Shen Ex. 4.3) as a reserve-only pack.

    Reserve capacity costs ``h`` per unit; a lost unit costs ``p + h`` so that the
    reserve-or-lose trade-off has critical ratio ``p / (p + h)``. Demand is normal.
    """
    return PlanningPack(
        name="newsvendor",
        periods=("t0",),
        period_kind="day",
        segments=("d",),
        resources=("cap",),
        load=np.ones((1, 1)),
        priority=np.zeros(1, int),
        demand_mu=np.array([[mean]]),
        demand_sigma=np.array([[sd]]),
        marginal="normal",
        base_capacity=np.zeros((1, 1)),
        capacity_cost=np.zeros(1),
        penalty=np.array([p + h]),
        levers=(Lever("reserve", "reserve", 0, unit_cost=h),),
        max_delay=0,
        service_target=0.0,
        variants=(Variant("A", "cost", service="none", target=0.0),),
        n_paths=1000,
        seed=1,
    )


def sailco_pack() -> PlanningPack:
    """Winston's Sailco aggregate plan as a one-path, storable, deterministic pack."""
    demand = np.array([40.0, 60.0, 75.0, 25.0])
    return PlanningPack(
        name="sailco",
        periods=("Q1", "Q2", "Q3", "Q4"),
        period_kind="week",
        segments=("boats",),
        resources=("production",),
        load=np.ones((1, 1)),
        priority=np.zeros(1, int),
        demand_mu=demand[:, None],
        demand_sigma=np.zeros((4, 1)),
        marginal="normal",
        base_capacity=np.zeros((4, 1)),
        capacity_cost=np.zeros(1),
        penalty=np.array([1e6]),
        levers=(
            Lever("regular", "flex", 0, unit_cost=400.0, quota=40.0),
            Lever("overtime", "flex", 0, unit_cost=450.0, quota=1e4),
        ),
        storable=np.array([True]),
        holding_cost=np.array([20.0]),
        storage_cap=np.array([1e6]),
        initial_stock=np.array([10.0]),
        max_delay=0,
        service_target=1.0,
        variants=(Variant("A", "cost", service="expected", target=1.0),),
        n_paths=1,
        seed=0,
    )


def synthetic_pack(T: int = 52, R: int = 8, G: int | None = None, seed: int = 0) -> PlanningPack:
    """A weekly network of ``R`` resources (one segment per resource unless ``G`` given).

    Used by benchmarks and scale tests: a 6-week peak from week ``T-12``, reserve and flex
    levers on every resource, max_delay 1.
    """
    G = R if G is None else G
    rng = np.random.default_rng(seed)
    level = rng.uniform(80, 120, G)
    season = 1.0 + 0.1 * np.sin(np.arange(T) / T * 2 * np.pi)
    p50 = level[None, :] * season[:, None]
    peak = np.zeros(T, bool)
    peak[max(0, T - 12):max(0, T - 6)] = True
    load = np.zeros((G, R))
    for g in range(G):
        load[g, g % R] = 1.0
    cap = np.tile((load.T @ level) * 1.05, (T, 1))
    levers = []
    for r in range(R):
        levers.append(Lever(f"temps_{r}", "reserve", r, lead_time=2, unit_cost=14.0, min_term=2,
                            quota=float(cap[0, r])))
        levers.append(Lever(f"overtime_{r}", "flex", r, unit_cost=25.0, quota=0.2 * float(cap[0, r])))
    return PlanningPack(
        name=f"synthetic_T{T}_R{R}",
        periods=tuple(f"p{t}" for t in range(T)),
        period_kind="week",
        segments=tuple(f"s{g}" for g in range(G)),
        resources=tuple(f"r{r}" for r in range(R)),
        load=load,
        priority=np.zeros(G, int),
        demand_mu=np.log(p50),
        demand_sigma=np.full((T, G), 0.12),
        ar1=0.4,
        events=(Event("peak", 0.9, peak, np.ones(G, bool), ("triangular", (1.2, 1.5, 1.9))),),
        base_capacity=cap,
        availability_mean=np.full(R, 0.96),
        availability_sd=np.full(R, 0.02),
        capacity_cost=np.full(R, 10.0),
        penalty=np.full(G, 50.0),
        backlog_cost=np.full(G, 1.0),
        max_delay=1,
        levers=tuple(levers),
        peak=peak,
        variants=DEFAULT_VARIANTS,
        n_paths=10_000,
        seed=seed,
    )


def series_pack(T: int = 16, G: int = 3, seed: int = 0) -> PlanningPack:
    """A fulfilment network like the retail scenario: each site's orders are picked, then packed.

    Segment ``g`` loads two resources of its own in series (pickers 1.0 and packers 0.5
    hours per unit), each with temps (reserve) and overtime (flex); the packers of the last
    site can also be released. Built on :func:`synthetic_pack` (same demand and peak).
    """
    base = synthetic_pack(T, G, seed=seed)
    rng = np.random.default_rng(seed + 1)
    level = np.exp(base.demand_mu[0])
    load = np.zeros((G, 2 * G))
    load[np.arange(G), np.arange(G)] = 1.0
    load[np.arange(G), G + np.arange(G)] = 0.5
    cap = np.tile(np.concatenate([level * 1.05, 0.5 * level * rng.uniform(1.0, 1.15, G)]), (T, 1))
    levers = []
    for r in range(2 * G):
        kind = "pick" if r < G else "pack"
        levers.append(Lever(f"temps_{kind}_{r % G}", "reserve", r, lead_time=2, unit_cost=14.0 if r < G else 9.0,
                            min_term=2, quota=float(cap[0, r])))
        levers.append(Lever(f"overtime_{kind}_{r % G}", "flex", r, unit_cost=25.0 if r < G else 18.0,
                            quota=0.2 * float(cap[0, r])))
    levers.append(Lever(f"release_pack_{G - 1}", "release", 2 * G - 1, unit_cost=6.0, notice=2,
                        quota=0.2 * float(cap[0, 2 * G - 1])))
    return base.replace(name=f"series_T{T}_G{G}", resources=tuple(f"{k}_{g}" for k in ("pick", "pack") for g in range(G)),
                        load=load, base_capacity=cap, availability_mean=np.full(2 * G, 0.96),
                        availability_sd=np.full(2 * G, 0.02), capacity_cost=np.full(2 * G, 10.0), levers=tuple(levers))
