"""Input table schemas, written as data.

Each :class:`TableSchema` lists its columns (name, dtype, unit, required, description,
bounds). :mod:`peakplan.loaders` validates every table against its schema, and
:func:`markdown` generates the table reference in ``docs/tables.md`` from the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["SCHEMAS", "Column", "TableSchema", "markdown"]

Dtype = Literal["date", "str", "float", "int"]


@dataclass(frozen=True)
class Column:
    """One column of an input table."""

    name: str
    """Column header, exactly."""
    dtype: Dtype
    """``date`` (ISO ``YYYY-MM-DD``), ``str``, ``float`` or ``int``."""
    unit: str
    """Unit of the values, or ``-``."""
    required: bool
    """Whether the column must be present (and non-empty in every row)."""
    description: str
    """What the column means."""
    min: float | None = None
    """Smallest allowed value (numeric columns)."""
    max: float | None = None
    """Largest allowed value (numeric columns)."""
    choices: tuple[str, ...] = ()
    """Allowed values (string columns), empty = any."""


@dataclass(frozen=True)
class TableSchema:
    """An input table."""

    name: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    """Columns that identify a row (duplicates are flagged or rejected)."""
    one_of: tuple[tuple[str, ...], ...] = ()
    """Alternative column groups of which at least one must be complete."""

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


FORECAST = TableSchema(
    "forecast",
    "Demand forecast per period and segment, as quantiles (p10/p50/p90) or mean and sd.",
    (
        Column("period", "date", "-", True, "Any date inside the period (usually its start)."),
        Column("segment", "str", "-", True, "Segment name from the scenario."),
        Column("p10", "float", "demand units", False, "10th percentile of demand.", min=0.0),
        Column("p50", "float", "demand units", False, "Median demand.", min=0.0),
        Column("p90", "float", "demand units", False, "90th percentile of demand.", min=0.0),
        Column("mean", "float", "demand units", False, "Mean demand (with sd, instead of quantiles).", min=0.0),
        Column("sd", "float", "demand units", False, "Standard deviation of demand.", min=0.0),
        Column("as_of", "date", "-", False, "Date the forecast was made."),
    ),
    key=("period", "segment"),
    one_of=(("p50", "p90"), ("mean", "sd")),
)

HISTORY = TableSchema(
    "history",
    "Actual demand per past period and segment.",
    (
        Column("period", "date", "-", True, "Any date inside the period."),
        Column("segment", "str", "-", True, "Segment name from the scenario."),
        Column("actual", "float", "demand units", True, "Demand observed.", min=0.0),
    ),
    key=("period", "segment"),
)

CAPACITY = TableSchema(
    "capacity",
    "Baseline capacity per period and resource, before availability and levers.",
    (
        Column("period", "date", "-", True, "Any date inside the period."),
        Column("resource", "str", "-", True, "Resource name from the scenario."),
        Column("capacity", "float", "resource units per period", True, "Baseline capacity.", min=0.0),
    ),
    key=("period", "resource"),
)

LEVERS = TableSchema(
    "levers",
    "Levers that add (reserve, flex) or release capacity.",
    (
        Column("name", "str", "-", True, "Lever name, unique."),
        Column("kind", "str", "-", True, "reserve, flex or release.", choices=("reserve", "flex", "release")),
        Column("resource", "str", "-", True, "Resource the lever acts on."),
        Column("unit_cost", "float", "currency per unit-period", True,
               "Reserve: per active unit and period; flex: per unit used; release: saved per unit and period.", min=0.0),
        Column("lead_time", "int", "periods", False, "Periods from decision to effect (default 0).", min=0),
        Column("fixed_cost", "float", "currency per order", False, "Cost per order (default 0).", min=0.0),
        Column("quota", "float", "resource units", False, "Most units active/usable per period (default unlimited).", min=0.0),
        Column("min_term", "int", "periods", False, "Minimum periods a reserved unit stays (default 1).", min=1),
        Column("notice", "int", "periods", False, "Notice needed to reduce or release (default 0).", min=0),
        Column("ramp", "float", "resource units per period", False, "Largest change per period (default unlimited).", min=0.0),
        Column("reliability", "float", "probability", False, "Chance an increase arrives on time (default 1).", min=0.0, max=1.0),
        Column("tiers", "str", "-", False, "Convex cost curve 'up_to@price;up_to@price;...' with rising prices."),
    ),
    key=("name",),
)

COMMITTED = TableSchema(
    "committed",
    "Lever orders already placed (fixed in every plan).",
    (
        Column("lever", "str", "-", True, "Lever name from the levers table."),
        Column("start", "date", "-", True, "First period the capacity is active."),
        Column("end", "date", "-", True, "Last period the capacity is active (inclusive)."),
        Column("quantity", "float", "resource units", True, "Units active per period.", min=0.0),
    ),
)

SCHEMAS: dict[str, TableSchema] = {s.name: s for s in (FORECAST, HISTORY, CAPACITY, LEVERS, COMMITTED)}


def markdown() -> str:
    """The table reference (Markdown), generated from :data:`SCHEMAS`."""
    out = ["# Input tables", "",
           "Generated by `peakplan.schemas.markdown()`; do not edit by hand. "
           "Tables are CSV (UTF-8, header row) or Parquet. Row numbers in error messages count "
           "data rows from 1 (the header is not a row).", ""]
    for s in SCHEMAS.values():
        out += [f"## {s.name}", "", s.description, ""]
        if s.key:
            out += [f"Key: ({', '.join(s.key)}).", ""]
        if s.one_of:
            out += ["At least one complete group of: " + " or ".join("(" + ", ".join(g) + ")" for g in s.one_of) + ".", ""]
        out += ["| column | type | unit | required | description |", "|---|---|---|---|---|"]
        for c in s.columns:
            rule = ""
            if c.min is not None:
                rule += f" Min {c.min:g}."
            if c.max is not None:
                rule += f" Max {c.max:g}."
            if c.choices:
                rule += " One of: " + ", ".join(c.choices) + "."
            out.append(f"| `{c.name}` | {c.dtype} | {c.unit} | {'yes' if c.required else 'no'} | {c.description}{rule} |")
        out.append("")
    return "\n".join(out)
