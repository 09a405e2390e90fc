"""Assertion helpers shared by tests and benchmarks."""

from __future__ import annotations

import dataclasses

import numpy as np

from peakplan.pack import PlanningPack

__all__ = ["assert_conservation", "assert_metrics_equal", "assert_packs_equal"]


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
        return type(a) is type(b) and all(_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return a == b


def assert_packs_equal(a: PlanningPack, b: PlanningPack) -> None:
    """Every field identical (arrays: same dtype, shape and values)."""
    bad = [f.name for f in dataclasses.fields(a) if not _equal(getattr(a, f.name), getattr(b, f.name))]
    assert not bad, f"packs differ in fields {bad}"


def assert_metrics_equal(a: np.ndarray, b: np.ndarray) -> None:
    """Two metric record arrays are bit-identical, field by field."""
    assert a.dtype == b.dtype, f"dtypes differ: {a.dtype} vs {b.dtype}"
    bad = [f for f in a.dtype.names if not np.array_equal(a[f], b[f], equal_nan=a[f].dtype.kind == "f")]
    assert not bad, f"metrics differ in {bad}"


def assert_conservation(metrics: np.ndarray, rtol: float = 1e-9) -> None:
    """served + final backlog + lost = demand, on every path."""
    lhs = metrics["served"] + metrics["backlog_end"] + metrics["lost"]
    np.testing.assert_allclose(lhs, metrics["demand"], rtol=rtol, atol=1e-6)
