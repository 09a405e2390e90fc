"""The planning pack: every input of a scenario as consistent arrays, plus definitions and flags.

A :class:`PlanningPack` is what every later stage consumes. Arrays are indexed
``[period, segment]`` (``T x G``) or ``[period, resource]`` (``T x R``); levers, events
and disruptions are small frozen records holding index masks into those axes. The pack
is built from a validated :class:`peakplan.config.Scenario` by :func:`build_pack`
(see ``peakplan.compile``), or directly from arrays by :mod:`peakplan.examples`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Literal

import numpy as np

__all__ = [
    "Disruption",
    "Event",
    "Flag",
    "Lever",
    "MetricDefinition",
    "PlanningPack",
    "StressTest",
    "Variant",
]

LeverKind = Literal["reserve", "flex", "release"]


@dataclass(frozen=True)
class Lever:
    """A way to add or release capacity on one resource.

    Semantics (shared by the Monte Carlo core and the optimizer):

    - ``reserve``: committed capacity. The decision is the active level ``y[t]`` (units of
      capacity per period). An increase effective at period ``t`` is an order placed at
      ``t - lead_time`` and so is only possible for ``t >= lead_time``; each unit stays at
      least ``min_term`` periods; a decrease effective at ``t`` needs ``notice`` periods,
      so only ``t >= notice``. Paid ``unit_cost`` (or the tiered curve) per active unit and
      period whether used or not, plus ``fixed_cost`` per order.
    - ``flex``: recourse, used only when needed, up to ``quota`` units per period from
      period ``lead_time`` on, paid ``unit_cost`` per unit used.
    - ``release``: reduces base capacity by ``y[t]`` with ``notice`` periods of notice,
      saving ``unit_cost`` per released unit and period.
    """

    name: str
    """Lever name, unique in the scenario."""
    kind: LeverKind
    """``reserve``, ``flex`` or ``release``."""
    resource: int
    """Index of the resource the lever acts on."""
    lead_time: int = 0
    """Periods between the decision and the capacity change."""
    unit_cost: float = 0.0
    """Currency per unit of capacity and period (reserve: active; flex: used; release: saved)."""
    tiers: tuple[tuple[float, float], ...] = ()
    """Convex cost curve as ``(up_to_units, unit_cost)`` steps; empty means linear ``unit_cost``."""
    fixed_cost: float = 0.0
    """Currency per order (per increase of a reserve lever's level)."""
    quota: float = float("inf")
    """Most units active (reserve/release) or usable (flex) per period."""
    min_term: int = 1
    """Minimum number of periods a reserved unit stays active."""
    notice: int = 0
    """Periods of notice needed to reduce a reserve level or to release base capacity."""
    ramp: float = float("inf")
    """Largest change of the level from one period to the next, in units."""
    reliability: float = 1.0
    """Probability an increase arrives on time; otherwise it arrives one period late."""


@dataclass(frozen=True)
class Event:
    """A demand event: multiplies demand over its periods and segments by an uncertain uplift."""

    name: str
    """Event name."""
    probability: float
    """Probability the event happens at all (one draw per path)."""
    periods: np.ndarray
    """Boolean mask ``[T]`` of the periods it affects."""
    segments: np.ndarray
    """Boolean mask ``[G]`` of the segments it affects."""
    uplift: tuple[str, tuple[float, ...]]
    """Uplift distribution ``(kind, params)``: ``fixed (m,)``, ``uniform (lo, hi)``,
    ``triangular (lo, mode, hi)``, ``lognormal (median, p90)``, ``normal (mean, sd)``.
    The uplift is a multiplier (1.3 = +30%)."""
    profile: np.ndarray | None = None
    """Optional per-period scaling ``[T]`` of the uplift effect ``(m-1)*profile+1``."""


@dataclass(frozen=True)
class Disruption:
    """A capacity disruption: with ``probability``, capacity of ``resources`` falls by ``depth``."""

    name: str
    """Disruption name."""
    probability: float
    """Probability the disruption happens (one draw per path)."""
    start: int
    """First affected period (index)."""
    duration: int
    """Number of affected periods."""
    depth: float
    """Share of capacity lost while it lasts (0..1)."""
    resources: np.ndarray
    """Boolean mask ``[R]`` of affected resources."""


@dataclass(frozen=True)
class Variant:
    """One plan variant: the optimisation's explicit constraint set."""

    name: str
    """Variant label, e.g. ``A``."""
    label: str
    """Human label, e.g. ``lean``."""
    service: Literal["expected", "quantile", "cvar", "none"]
    """How the service target binds: on the expected fill rate, at a quantile of paths,
    or as a CVaR bound on lost units."""
    target: float
    """Fill-rate target in the service window (0..1)."""
    level: float = 0.9
    """Quantile or CVaR level used by ``quantile``/``cvar`` (e.g. 0.9, 0.95)."""
    budget: float | None = None
    """Override of the scenario budget for this variant (currency), or ``None``."""
    stress: bool = False
    """If true the stress playbook's shocks are added as extra scenarios to satisfy."""


@dataclass(frozen=True)
class StressTest:
    """A named deterministic shock for the stress playbook."""

    name: str
    """Shock name, e.g. ``uplift+30%``."""
    demand_factor: float = 1.0
    """Multiplier on demand in ``periods`` x ``segments``."""
    capacity_factor: float = 1.0
    """Multiplier on base capacity in ``periods`` x ``resources``."""
    periods: np.ndarray | None = None
    """Boolean mask ``[T]``; ``None`` means every period."""
    segments: np.ndarray | None = None
    """Boolean mask ``[G]``; ``None`` means every segment."""
    resources: np.ndarray | None = None
    """Boolean mask ``[R]``; ``None`` means every resource."""


@dataclass(frozen=True)
class MetricDefinition:
    """How a reported metric is defined (written into every pack and report)."""

    name: str
    formula: str
    unit: str
    aggregation: str
    better: Literal["higher", "lower"]


@dataclass(frozen=True)
class Flag:
    """An anomaly found while compiling the pack."""

    rule: str
    """Rule identifier, e.g. ``demand_spike``."""
    severity: Literal["low", "medium", "high"]
    """How much the planner should worry."""
    location: str
    """Where: table, period and segment/resource."""
    evidence: str
    """The numbers that triggered the flag."""


@dataclass(frozen=True)
class PlanningPack:
    """All inputs of one scenario as arrays, definitions and flags (frozen).

    Shapes: ``T`` periods, ``G`` segments, ``R`` resources, ``L`` levers.
    """

    name: str
    """Scenario name."""
    periods: tuple[str, ...]
    """Period labels (ISO start dates), length ``T``."""
    period_kind: Literal["day", "week"]
    """Length of one period."""
    segments: tuple[str, ...]
    """Segment names, length ``G``."""
    resources: tuple[str, ...]
    """Resource names, length ``R``."""
    load: np.ndarray
    """``[G, R]`` units of resource needed per unit of demand."""
    priority: np.ndarray
    """``[G]`` integer priority (lower is served first on shared resources; ties pro rata)."""
    demand_mu: np.ndarray
    """``[T, G]`` location of the demand marginal (log-scale for lognormal, mean for normal)."""
    demand_sigma: np.ndarray
    """``[T, G]`` scale of the demand marginal (log-sd for lognormal, sd for normal)."""
    base_capacity: np.ndarray
    """``[T, R]`` baseline capacity before availability, disruptions and levers (units/period)."""
    capacity_cost: np.ndarray
    """``[R]`` cost of one unit of baseline capacity for one period (currency)."""
    penalty: np.ndarray
    """``[G]`` cost per lost unit of demand (currency)."""
    max_delay: int = 0
    """Periods unserved demand may wait as backlog before it is lost."""
    marginal: Literal["lognormal", "normal"] = "lognormal"
    """Demand marginal family (normal is truncated at zero)."""
    ar1: float = 0.0
    """AR(1) coefficient of the underlying normal across periods."""
    seg_corr: np.ndarray | None = None
    """``[G, G]`` correlation of the underlying normals across segments (``None`` = identity)."""
    events: tuple[Event, ...] = ()
    """Demand events."""
    availability_mean: np.ndarray | None = None
    """``[R]`` mean share of capacity available (1 - shrinkage); ``None`` = 1."""
    availability_sd: np.ndarray | None = None
    """``[R]`` standard deviation of availability per period; ``None`` = 0."""
    disruptions: tuple[Disruption, ...] = ()
    """Capacity disruptions."""
    levers: tuple[Lever, ...] = ()
    """Capacity levers."""
    committed: np.ndarray | None = None
    """``[L, T]`` lever levels already committed (fixed lower bounds), ``None`` = 0."""
    backlog_cost: np.ndarray | None = None
    """``[G]`` cost per unit of backlog per period; ``None`` = 0."""
    storable: np.ndarray | None = None
    """``[G]`` whether the segment can be pre-built into stock; ``None`` = none."""
    holding_cost: np.ndarray | None = None
    """``[G]`` cost per unit in stock at the end of a period."""
    storage_cap: np.ndarray | None = None
    """``[G]`` most units in stock."""
    initial_stock: np.ndarray | None = None
    """``[G]`` stock at the start of period 0."""
    service_target: float = 0.95
    """Fill-rate target over the service window."""
    service_window: np.ndarray | None = None
    """``[T]`` mask of the periods whose demand counts for the fill rate; ``None`` = all."""
    peak: np.ndarray | None = None
    """``[T]`` mask of the peak periods (utilization is reported peak and off-peak)."""
    budget: float | None = None
    """Most lever spend over the horizon (currency), ``None`` = unlimited."""
    utilization_bounds: tuple[float, float] = (0.0, 1.0)
    """Planned peak utilization band (reported; the upper bound caps planned load)."""
    freeze: np.ndarray | None = None
    """``[T]`` mask of periods in which no capacity change may take effect."""
    forbidden: tuple[str, ...] = ()
    """Names of levers that must not be used."""
    variants: tuple[Variant, ...] = ()
    """Plan variants to optimise."""
    stress_tests: tuple[StressTest, ...] = ()
    """Stress playbook."""
    definitions: tuple[MetricDefinition, ...] = ()
    """Metric definitions."""
    flags: tuple[Flag, ...] = ()
    """Anomaly flags."""
    n_paths: int = 10_000
    """Default number of Monte Carlo paths."""
    seed: int = 0
    """Default root seed."""
    chunk_size: int = 16_000
    """Paths per chunk (memory bound of the Monte Carlo core)."""
    history: np.ndarray | None = None
    """``[H, G]`` recent actual demand, for reports (``None`` if no history)."""
    history_periods: tuple[str, ...] = ()
    """Labels of the history rows."""
    des: dict = field(default_factory=dict)
    """Discrete-event settings (``peakplan.config.DesSettings`` as a dict; empty = defaults):
    ``enabled``, ``hours_per_day``, ``sla_hours``, ``sla_target``, ``max_wait_hours``,
    ``top_periods``, ``sampled_periods``, ``resources`` (names or ``"all"``)."""
    extra: dict = field(default_factory=dict)
    """Free-form metadata: ``as_of``, ``currency``, ``service_time`` (hours per unit by
    resource name), ``intraday_profile`` (weights by resource name), units."""

    # -- derived shapes -------------------------------------------------------------
    @property
    def T(self) -> int:
        return len(self.periods)

    @property
    def G(self) -> int:
        return len(self.segments)

    @property
    def R(self) -> int:
        return len(self.resources)

    @property
    def L(self) -> int:
        return len(self.levers)

    # -- defaults filled in ---------------------------------------------------------
    def arr(self, name: str) -> np.ndarray:
        """The named optional array with its documented default filled in."""
        T, G, R, L = self.T, self.G, self.R, self.L
        value = getattr(self, name)
        if value is not None:
            return np.asarray(value)
        defaults = {
            "seg_corr": lambda: np.eye(G),
            "availability_mean": lambda: np.ones(R),
            "availability_sd": lambda: np.zeros(R),
            "committed": lambda: np.zeros((L, T)),
            "backlog_cost": lambda: np.zeros(G),
            "storable": lambda: np.zeros(G, dtype=bool),
            "holding_cost": lambda: np.zeros(G),
            "storage_cap": lambda: np.zeros(G),
            "initial_stock": lambda: np.zeros(G),
            "service_window": lambda: np.ones(T, dtype=bool),
            "peak": lambda: np.zeros(T, dtype=bool),
            "freeze": lambda: np.zeros(T, dtype=bool),
        }
        return defaults[name]()

    def lever_index(self, name: str) -> int:
        """Index of the lever called ``name``."""
        for i, lever in enumerate(self.levers):
            if lever.name == name:
                return i
        raise KeyError(f"no lever named {name!r}; levers are {[lv.name for lv in self.levers]}")

    def replace(self, **changes) -> PlanningPack:
        """A copy with some fields changed (the pack itself stays frozen)."""
        return replace(self, **changes)

    @property
    def high_flags(self) -> tuple[Flag, ...]:
        """The high-severity flags, listed first in every output."""
        return tuple(f for f in self.flags if f.severity == "high")


def pack_fields() -> list[str]:
    """Names of the pack's fields, in declaration order."""
    return [f.name for f in fields(PlanningPack)]
