"""The scenario file: schema, validation, and the frozen objects the pipeline uses.

A scenario is YAML (safe-loaded). It is validated once, here, by pydantic; the result is a
tree of frozen, pydantic-validated dataclasses (:class:`Scenario` at the root). Relative
table paths resolve against the scenario file's folder. ``peakplan schema`` prints the JSON
Schema generated from these classes, so every field's description below is the reference.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic.dataclasses import dataclass

__all__ = [
    "Calendar",
    "Constraints",
    "DemandModel",
    "DesSettings",
    "DisruptionSpec",
    "EventSpec",
    "FlagSettings",
    "ResourceSpec",
    "Scenario",
    "SegmentSpec",
    "Simulation",
    "StressSpec",
    "Tables",
    "Uplift",
    "VariantSpec",
    "json_schema",
    "parse_scenario",
]

_CFG = ConfigDict(extra="forbid", str_strip_whitespace=True)

Name = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.\-]+$")]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
NonNeg = Annotated[float, Field(ge=0.0)]
PeriodRef = dt.date | Annotated[int, Field(ge=0)]
"""A period is referred to by its index (0 = first period) or by any date inside it."""


@dataclass(frozen=True, config=_CFG)
class Calendar:
    """The planning horizon."""

    start: dt.date = Field(description="Start date of period 0 (ISO date).")
    period: Literal["day", "week"] = Field(description="Length of one period.")
    horizon: int = Field(ge=1, le=3660, description="Number of periods T.")
    as_of: dt.date | None = Field(default=None, description="Date the forecast was made; used by the stale-forecast check. Defaults to the forecast table's as_of column, else the calendar start.")


@dataclass(frozen=True, config=_CFG)
class SegmentSpec:
    """A demand segment (a site's orders, a product family, a customer class)."""

    name: Name = Field(description="Segment name, as used in the tables.")
    priority: int = Field(default=0, ge=0, description="Lower is served first on shared resources; equal priorities share pro rata.")
    penalty: NonNeg | None = Field(default=None, description="Cost per lost unit (currency); defaults to constraints.penalty_per_lost_unit.")
    backlog_cost: NonNeg | None = Field(default=None, description="Cost per unit waiting one period; defaults to constraints.backlog_cost.")
    storable: bool = Field(default=False, description="Goods that can be pre-built into stock (services cannot).")
    holding_cost: NonNeg = Field(default=0.0, description="Cost per unit in stock at the end of a period.")
    storage_cap: NonNeg = Field(default=0.0, description="Most units in stock.")
    initial_stock: NonNeg = Field(default=0.0, description="Units in stock at the start (at most storage_cap).")
    unit: str = Field(default="units", description="Unit of demand, for reports.")

    @model_validator(mode="after")
    def _stock_fits(self):
        if self.storable and self.initial_stock > self.storage_cap:
            raise ValueError(f"initial_stock={self.initial_stock:g} is above storage_cap={self.storage_cap:g}; the stock "
                             "at the start must fit in the room")
        return self


@dataclass(frozen=True, config=_CFG)
class ResourceSpec:
    """A capacity pool (pickers at a site, packing stations, agents, trains)."""

    name: Name = Field(description="Resource name, as used in the tables.")
    unit: str = Field(default="units", description="Unit of capacity (e.g. picker-hours).")
    cost: NonNeg = Field(default=0.0, description="Cost of one unit of baseline capacity for one period (currency).")
    availability_mean: Share = Field(default=1.0, description="Mean share of capacity available (1 - shrinkage/absenteeism).")
    availability_sd: Annotated[float, Field(ge=0.0, le=0.5)] = Field(default=0.0, description="Standard deviation of availability per period.")
    intraday_profile: tuple[NonNeg, ...] | None = Field(default=None, description="Relative arrival weights over the slots of a peak period, for the discrete-event core.")
    service_time: NonNeg | None = Field(default=None, description="Mean time one server needs per unit of demand, in hours, for the discrete-event core.")


@dataclass(frozen=True, config=_CFG)
class Tables:
    """Input tables (CSV or Parquet). Paths are relative to the scenario file."""

    forecast: str = Field(description="Demand forecast per period and segment (see the forecast table schema).")
    capacity: str = Field(description="Baseline capacity per period and resource.")
    levers: str | None = Field(default=None, description="Levers that add or release capacity.")
    history: str | None = Field(default=None, description="Actual demand per period and segment.")
    committed: str | None = Field(default=None, description="Lever orders already placed.")


@dataclass(frozen=True, config=_CFG)
class DemandModel:
    """The demand noise model."""

    marginal: Literal["lognormal", "normal"] = Field(default="lognormal", description="Per-cell marginal fitted to the forecast.")
    ar1: float | Literal["history"] = Field(default=0.0, description="AR(1) coefficient across periods of the underlying normal, or 'history' to estimate it from history residuals.")
    correlation: float | Literal["history"] = Field(default=0.0, description="Correlation across segments (one number for every pair), or 'history' to estimate the matrix from history residuals.")

    @field_validator("ar1")
    @classmethod
    def _ar1(cls, v):
        if isinstance(v, float) and not -0.99 <= v <= 0.99:
            raise ValueError(f"ar1 must be between -0.99 and 0.99, got {v}")
        return v

    @field_validator("correlation")
    @classmethod
    def _corr(cls, v):
        if isinstance(v, float) and not -0.5 < v < 1.0:
            raise ValueError(f"correlation must be in (-0.5, 1), got {v}")
        return v


@dataclass(frozen=True, config=_CFG)
class Uplift:
    """An uncertain multiplier (1.3 = +30%)."""

    dist: Literal["fixed", "uniform", "triangular", "lognormal", "normal"] = Field(description="Distribution family.")
    value: NonNeg | None = Field(default=None, description="fixed: the multiplier.")
    low: NonNeg | None = Field(default=None, description="uniform/triangular: lower bound.")
    mode: NonNeg | None = Field(default=None, description="triangular: most likely value.")
    high: NonNeg | None = Field(default=None, description="uniform/triangular: upper bound.")
    median: NonNeg | None = Field(default=None, description="lognormal: median.")
    p90: NonNeg | None = Field(default=None, description="lognormal: 90th percentile.")
    mean: NonNeg | None = Field(default=None, description="normal: mean.")
    sd: NonNeg | None = Field(default=None, description="normal: standard deviation.")

    @model_validator(mode="after")
    def _params(self):
        need = {"fixed": ("value",), "uniform": ("low", "high"), "triangular": ("low", "mode", "high"),
                "lognormal": ("median", "p90"), "normal": ("mean", "sd")}[self.dist]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"uplift dist '{self.dist}' needs {', '.join(need)}; missing {', '.join(missing)}")
        if self.dist in ("uniform", "triangular") and self.low > self.high:
            raise ValueError(f"uplift low={self.low} is above high={self.high}")
        if self.dist == "triangular" and not self.low <= self.mode <= self.high:
            raise ValueError(f"uplift mode={self.mode} must lie between low={self.low} and high={self.high}")
        if self.dist == "lognormal" and not (self.median > 0 and self.p90 >= self.median):
            raise ValueError(f"lognormal uplift needs 0 < median <= p90, got median={self.median}, p90={self.p90}")
        return self

    def params(self) -> tuple[str, tuple[float, ...]]:
        """``(kind, params)`` as the Monte Carlo core takes them."""
        keys = {"fixed": ("value",), "uniform": ("low", "high"), "triangular": ("low", "mode", "high"),
                "lognormal": ("median", "p90"), "normal": ("mean", "sd")}[self.dist]
        return self.dist, tuple(float(getattr(self, k)) for k in keys)


@dataclass(frozen=True, config=_CFG)
class EventSpec:
    """A demand event (promotion, launch, game day, weather spike)."""

    name: Name = Field(description="Event name.")
    periods: tuple[PeriodRef, ...] = Field(min_length=1, description="Affected periods (indices or dates inside them).")
    uplift: Uplift = Field(description="Multiplier on demand while the event lasts.")
    segments: tuple[Name, ...] | Literal["all"] = Field(default="all", description="Affected segments.")
    probability: Share = Field(default=1.0, description="Probability the event happens (one draw per path).")


@dataclass(frozen=True, config=_CFG)
class DisruptionSpec:
    """A capacity disruption (supplier outage, weather, strike)."""

    name: Name = Field(description="Disruption name.")
    start: PeriodRef = Field(description="First affected period.")
    duration: int = Field(default=1, ge=1, description="Number of affected periods.")
    depth: Share = Field(description="Share of capacity lost while it lasts.")
    resources: tuple[Name, ...] | Literal["all"] = Field(default="all", description="Affected resources.")
    probability: Share = Field(default=1.0, description="Probability it happens (one draw per path).")


@dataclass(frozen=True, config=_CFG)
class Window:
    """An inclusive range of periods."""

    start: PeriodRef = Field(description="First period.")
    end: PeriodRef = Field(description="Last period (inclusive).")


@dataclass(frozen=True, config=_CFG)
class Constraints:
    """Targets and limits."""

    service_target: Share = Field(default=0.95, description="Fill-rate target over the service window.")
    service_window: Window | None = Field(default=None, description="Periods whose demand counts for the fill rate (default: all).")
    peak_window: Window | None = Field(default=None, description="Peak periods for utilization and the discrete-event core (default: the event periods).")
    max_delay: int = Field(default=0, ge=0, le=52, description="Periods unserved demand may wait before it is lost.")
    budget: NonNeg | None = Field(default=None, description="Most lever spend over the horizon (currency).")
    utilization_min: Share = Field(default=0.0, description="Lowest acceptable planned peak utilization.")
    utilization_max: Annotated[float, Field(gt=0.0, le=1.0)] = Field(default=1.0, description="Highest acceptable planned peak utilization.")
    freeze: tuple[Window, ...] = Field(default=(), description="Windows in which no capacity change may take effect.")
    forbidden_levers: tuple[Name, ...] = Field(default=(), description="Levers that must not be used.")
    penalty_per_lost_unit: NonNeg = Field(default=10.0, description="Default cost per lost unit (currency).")
    backlog_cost: NonNeg = Field(default=0.0, description="Default cost per unit of backlog per period.")

    @model_validator(mode="after")
    def _band(self):
        if self.utilization_min > self.utilization_max:
            raise ValueError(f"utilization_min={self.utilization_min} is above utilization_max={self.utilization_max}")
        return self


@dataclass(frozen=True, config=_CFG)
class Simulation:
    """Monte Carlo settings."""

    paths: int = Field(default=10_000, ge=1, le=100_000_000, description="Number of Monte Carlo paths.")
    seed: int = Field(default=0, ge=0, description="Root seed (SeedSequence entropy).")
    chunk_size: int = Field(default=16_000, ge=1, description="Paths per chunk; bounds memory, never changes results.")
    opt_samples: int = Field(default=100, ge=1, description="Paths in the optimizer's sample (SAA).")
    opt_method: Literal["auto", "extensive", "benders"] = Field(
        default="auto", description="How the SAA model is solved: extensive form, L-shaped (Benders) decomposition, or auto "
                                    "(Benders where each segment has resources of its own or shares one, loading only that one; "
                                    "the extensive form elsewhere).")
    opt_solver: Literal["highs", "cbc"] = Field(
        default="highs", description="The LP solver: HiGHS (through highspy), or CBC (through pulp; the extensive form "
                                     "only: auto then solves every plan by the extensive form).")
    opt_time_limit: float | None = Field(
        default=None, gt=0, description="Seconds each plan's solve, and each of its quality solves, may take (none: no "
                                        "limit). A solve stopped by it returns the best plan found, labelled time_limit "
                                        "with its optimality gap; if no plan that keeps every constraint was found by "
                                        "then, the run fails with that message.")
    plan_quality: bool = Field(default=True, description="Compute each plan's SAA optimality-gap estimate and value of the stochastic solution (extra solves).")


@dataclass(frozen=True, config=_CFG)
class VariantSpec:
    """A plan variant: an explicit constraint set for the optimizer."""

    name: Name = Field(description="Variant name, e.g. A.")
    label: str = Field(default="", description="Human label, e.g. lean.")
    service: Literal["expected", "quantile", "cvar", "none"] = Field(default="expected", description="How the service target binds.")
    target: Share | None = Field(default=None, description="Fill-rate target (default: constraints.service_target).")
    level: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(default=0.9, description="Quantile or CVaR level.")
    budget: NonNeg | None = Field(default=None, description="Budget override for this variant.")
    stress: bool = Field(default=False, description="Also meet the target under the stress playbook.")


@dataclass(frozen=True, config=_CFG)
class StressSpec:
    """A named deterministic shock for the stress playbook."""

    name: str = Field(min_length=1, description="Shock name, e.g. 'uplift +30%'.")
    demand_factor: NonNeg = Field(default=1.0, description="Multiplier on demand.")
    capacity_factor: NonNeg = Field(default=1.0, description="Multiplier on base capacity.")
    periods: tuple[PeriodRef, ...] | Literal["all"] = Field(default="all", description="Affected periods.")
    segments: tuple[Name, ...] | Literal["all"] = Field(default="all", description="Affected segments.")
    resources: tuple[Name, ...] | Literal["all"] = Field(default="all", description="Affected resources.")


@dataclass(frozen=True, config=_CFG)
class FlagSettings:
    """Thresholds of the anomaly checks."""

    spike_z: NonNeg = Field(default=4.0, description="Robust z-score (median/MAD) above which a forecast cell is a spike against history.")
    level_shift: NonNeg = Field(default=0.3, description="Relative gap between recent history and the near forecast that counts as a level shift.")
    stale_days: int = Field(default=14, ge=0, description="Forecast older than this many days before the calendar start is stale.")
    recent_periods: int = Field(default=8, ge=1, description="History periods that count as recent.")


@dataclass(frozen=True, config=_CFG)
class DesSettings:
    """The discrete-event model of peak periods (time-to-serve inside a period)."""

    enabled: bool = Field(default=True, description="Simulate peak periods with the discrete-event core.")
    hours_per_day: Annotated[float, Field(gt=0.0, le=24.0)] = Field(default=16.0, description="Operating hours per day; capacity (hours per period) is spread over them to give a server count.")
    sla_hours: Annotated[float, Field(gt=0.0)] = Field(default=4.0, description="SLA: a unit counts as on time if its wait is at most this many hours.")
    sla_target: Share = Field(default=0.9, description="SLA attainment target: share of units served within sla_hours.")
    max_wait_hours: Annotated[float, Field(gt=0.0)] | None = Field(default=None, description="Units still waiting after this many hours leave unserved (abandon); None = they wait.")
    top_periods: int = Field(default=2, ge=0, le=20, description="Highest-load peak periods to simulate per plan.")
    sampled_periods: int = Field(default=2, ge=0, le=50, description="Further (path, period) pairs drawn from the Monte Carlo paths, weighted by load.")
    resources: tuple[Name, ...] | Literal["all"] = Field(default="all", description="Resources to simulate (each as one multi-server station).")


@dataclass(frozen=True, config=_CFG)
class Scenario:
    """A peak-readiness scenario: calendar, network, tables, events, constraints, settings."""

    name: Name = Field(description="Scenario name (used for run directories).")
    calendar: Calendar = Field(description="Planning horizon.")
    segments: tuple[SegmentSpec, ...] = Field(min_length=1, description="Demand segments.")
    resources: tuple[ResourceSpec, ...] = Field(min_length=1, description="Capacity pools.")
    load: dict[Name, dict[Name, NonNeg]] = Field(description="Load matrix: segment -> resource -> units of resource per unit of demand.")
    tables: Tables = Field(description="Input tables.")
    description: str = Field(default="", description="Free text.")
    currency: str = Field(default="USD", description="Currency of all costs.")
    demand: DemandModel = Field(default_factory=DemandModel, description="Demand noise model.")
    events: tuple[EventSpec, ...] = Field(default=(), description="Demand events.")
    disruptions: tuple[DisruptionSpec, ...] = Field(default=(), description="Capacity disruptions.")
    constraints: Constraints = Field(default_factory=Constraints, description="Targets and limits.")
    simulation: Simulation = Field(default_factory=Simulation, description="Monte Carlo settings.")
    variants: tuple[VariantSpec, ...] | None = Field(default=None, description="Plan variants (default: A lean, B balanced, C resilient).")
    stress_tests: tuple[StressSpec, ...] = Field(default=(), description="Stress playbook.")
    flags: FlagSettings = Field(default_factory=FlagSettings, description="Anomaly check thresholds.")
    des: DesSettings = Field(default_factory=DesSettings, description="Discrete-event model of peak periods.")
    base_dir: str = Field(default=".", description="Folder the table paths resolve against (set by the loader to the scenario file's folder).")

    @model_validator(mode="after")
    def _references(self):
        segs = [s.name for s in self.segments]
        ress = [r.name for r in self.resources]
        problems = []
        for kind, names in (("segment", segs), ("resource", ress)):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                problems.append(f"{kind} names must be unique; repeated: {', '.join(dup)}")
        for seg, row in self.load.items():
            if seg not in segs:
                problems.append(f"load: unknown segment '{seg}'; segments are {segs}")
            for res in row:
                if res not in ress:
                    problems.append(f"load.{seg}: unknown resource '{res}'; resources are {ress}")
        for s in segs:
            if not any(v > 0 for v in self.load.get(s, {}).values()):
                problems.append(f"load: segment '{s}' loads no resource; give it at least one positive entry")
        for ev in self.events:
            if ev.segments != "all":
                problems += [f"events.{ev.name}: unknown segment '{s}'; segments are {segs}" for s in ev.segments if s not in segs]
        for d in self.disruptions:
            if d.resources != "all":
                problems += [f"disruptions.{d.name}: unknown resource '{r}'; resources are {ress}" for r in d.resources if r not in ress]
        for st in self.stress_tests:
            if st.segments != "all":
                problems += [f"stress_tests.{st.name}: unknown segment '{s}'" for s in st.segments if s not in segs]
            if st.resources != "all":
                problems += [f"stress_tests.{st.name}: unknown resource '{r}'" for r in st.resources if r not in ress]
        if self.des.resources != "all":
            problems += [f"des.resources: unknown resource '{r}'; resources are {ress}" for r in self.des.resources if r not in ress]
        if self.variants:
            names = [v.name for v in self.variants]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                problems.append(f"variant names must be unique; repeated: {', '.join(dup)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def path(self, table: str) -> Path | None:
        """Resolved path of a table (``None`` if the scenario does not name it)."""
        rel = getattr(self.tables, table)
        if rel is None:
            return None
        p = Path(rel)
        return p if p.is_absolute() else Path(self.base_dir) / p


_ADAPTER = TypeAdapter(Scenario)


def parse_scenario(data: dict, source: str = "<scenario>") -> Scenario:
    """Validate a scenario mapping; raise :class:`~peakplan.errors.InputError` listing every problem."""
    from peakplan.errors import InputError

    if not isinstance(data, dict):
        raise InputError(f"{source}: the scenario must be a mapping of keys to values, found {type(data).__name__}")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = []
        errors = exc.errors()
        locs = [tuple(e["loc"]) for e in errors]
        for err in errors:
            here = tuple(err["loc"])
            if err["type"] == "too_short" and any(len(o) > len(here) and o[: len(here)] == here for o in locs):
                continue  # an item was rejected; its own error says why
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            found = err.get("input")
            shown = repr(found) if not isinstance(found, dict) else "a mapping"
            if len(shown) > 80:
                shown = shown[:77] + "..."
            msg = err["msg"]
            if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
                problems.append(f"{loc}: unknown key (found {shown}); check the spelling against `peakplan schema`")
            elif err["type"] == "missing":
                problems.append(f"{loc}: required field is missing")
            else:
                problems.append(f"{loc}: {msg} (found {shown})")
        raise InputError(f"{source}: {len(problems)} problem(s) in the scenario file", problems) from None


def json_schema() -> dict:
    """JSON Schema of the scenario file."""
    return _ADAPTER.json_schema()


def markdown() -> str:
    """The scenario file reference (Markdown), generated from the JSON Schema."""
    schema = json_schema()
    defs = schema.get("$defs", {})
    out = ["# Scenario file reference", "",
           "Generated by `peakplan.config.markdown()` from the pydantic schema; do not edit by hand. "
           "`peakplan schema` prints the same schema as JSON Schema. Periods may be given as an index "
           "(0 = first period) or as any date inside the period.", ""]

    def kind(p: dict) -> str:
        if "$ref" in p:
            return p["$ref"].split("/")[-1]
        if "anyOf" in p:
            return " or ".join(kind(x) for x in p["anyOf"])
        if "enum" in p:
            return " / ".join(repr(v) for v in p["enum"])
        if "const" in p:
            return repr(p["const"])
        if p.get("type") == "array":
            return f"list of {kind(p.get('items', {}))}"
        if p.get("type") == "object" and "additionalProperties" in p:
            return f"mapping to {kind(p['additionalProperties'])}"
        return p.get("type", "any") + (f" ({p['format']})" if "format" in p else "")

    def section(name: str, body: dict) -> list[str]:
        req = set(body.get("required", []))
        lines = [f"## {name}", "", body.get("description", "").strip(), "",
                 "| key | type | required | default | description |", "|---|---|---|---|---|"]
        for key, p in body.get("properties", {}).items():
            default = "" if "default" not in p else f"`{p['default']!r}`"
            desc = p.get("description") or defs.get(p.get("$ref", "").split("/")[-1], {}).get("description", "")
            lines.append(f"| `{key}` | {kind(p)} | {'yes' if key in req else 'no'} | {default} | {desc.strip()} |")
        return [*lines, ""]

    out += section("Scenario (top level)", schema)
    for name in sorted(defs):
        if name != "Scenario":
            out += section(name, defs[name])
    return "\n".join(out)
