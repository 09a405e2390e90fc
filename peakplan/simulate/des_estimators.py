"""Statistics of :func:`peakplan.simulate.des.run_station`: per-replication metrics and estimators.

Holds the metric definitions (``METRICS``, ``METRIC_DTYPE``), the per-replication summary
of a replication's customer records (:func:`_summarise`), :class:`Estimate` (mean with a 95%
Student-t confidence interval across replications) and :class:`StationResult` with its
estimators: plain (a metric's mean across replications, :meth:`StationResult.ci`,
:meth:`StationResult.service_level`), conditional Monte Carlo (Rao-Blackwellised,
``mean_wait_cond`` and :meth:`StationResult.service_level_cond`) and the infinite-server
control variate (:meth:`StationResult.mean_wait_cv`, :meth:`StationResult.service_level_cv`).
Everything public here is also importable from :mod:`peakplan.simulate.des`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from scipy import stats

from peakplan.errors import InputError
from peakplan.queueing import _real

if TYPE_CHECKING:
    from peakplan.simulate.des import _Model

__all__ = [
    "COND_METRICS",
    "METRICS",
    "METRIC_DTYPE",
    "Estimate",
    "StationResult",
]

#: Metrics with a confidence interval (each a float field of ``METRIC_DTYPE``).
METRICS = (
    "p_wait", "mean_wait", "utilization", "abandon_rate", "p_block", "throughput",
    "arrival_rate", "mean_in_system", "mean_sojourn", "mean_queue", "p_empty",
    "mean_wait_cond",
)
#: Metrics of the conditional (Rao-Blackwellised) estimators; NaN where they are invalid.
COND_METRICS = ("mean_wait_cond",)
#: One row per replication (``StationResult.per_replication``): counts in the window,
#: all customers simulated (``customers``, warm-up included), then the metrics.
METRIC_DTYPE = np.dtype(
    [(name, np.int64) for name in
     ("customers", "offered", "admitted", "served", "abandoned", "blocked", "unserved")]
    + [(name, np.float64) for name in METRICS]
)


class Estimate(NamedTuple):
    """A mean across replications with its 95% Student-t confidence interval."""

    mean: float
    """Mean of the per-replication values (NaN values skipped)."""
    half_width: float
    """``t_{0.975, R-1} · s / sqrt(R)``; NaN with fewer than two replications."""
    lo: float
    """``mean - half_width``."""
    hi: float
    """``mean + half_width``."""


def _estimate(values: np.ndarray) -> Estimate:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan)
    mean = float(v.mean())
    if v.size < 2:
        return Estimate(mean, math.nan, math.nan, math.nan)
    hw = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return Estimate(mean, hw, mean - hw, mean + hw)


# --------------------------------------------------------------------------- statistics
def _overlap(a: np.ndarray, b: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Length of ``[a, b] ∩ [lo, hi]`` elementwise."""
    return np.maximum(np.minimum(b, hi) - np.maximum(a, lo), 0.0)


def _capacity_time(schedule: np.ndarray, horizon: float, lo: float, hi: float) -> float:
    """``∫_lo^hi servers(t) dt`` for the piecewise-constant schedule over ``[0, horizon)``."""
    edges = np.linspace(0.0, horizon, schedule.size + 1)
    return float(np.sum(schedule * _overlap(edges[:-1], edges[1:], lo, hi)))


def _summarise(m: _Model, rec: np.ndarray) -> np.void:
    """Per-replication counts and metrics (one ``METRIC_DTYPE`` row)."""
    lo, hi = m.warmup, m.horizon
    span = hi - lo
    row = np.zeros((), dtype=METRIC_DTYPE)
    a, e = rec["arrival"], rec["end"]
    admitted_all = ~rec["blocked"]
    win = a >= lo
    adm = win & admitted_all
    served_w = win & rec["served"]
    n_off, n_adm = int(win.sum()), int(adm.sum())
    row["customers"] = rec.size
    row["offered"], row["admitted"] = n_off, n_adm
    row["served"] = int(served_w.sum())
    row["abandoned"] = int((win & rec["abandoned"]).sum())
    row["blocked"] = int((win & rec["blocked"]).sum())
    row["unserved"] = int((win & rec["unserved"]).sum())
    nan = math.nan
    immediate = rec["served"] & (rec["start"] == a)
    row["p_wait"] = (adm & ~immediate).sum() / n_adm if n_adm else nan
    row["mean_wait"] = rec["wait"][adm].mean() if n_adm else nan
    row["mean_sojourn"] = (e - a)[adm].mean() if n_adm else nan
    row["abandon_rate"] = row["abandoned"] / n_off if n_off else nan
    row["p_block"] = row["blocked"] / n_off if n_off else nan
    row["arrival_rate"] = n_off / span
    done = rec["served"] & (e >= lo) & (e <= hi)
    row["throughput"] = done.sum() / span
    cap = _capacity_time(m.schedule, m.horizon, lo, hi)
    busy = _overlap(rec["start"][rec["served"]], e[rec["served"]], lo, hi).sum()
    row["utilization"] = busy / cap if cap > 0 else nan
    # Time averages over the window from all admitted customers, warm-up arrivals included.
    a_in, e_in = a[admitted_all], e[admitted_all]
    row["mean_in_system"] = _overlap(a_in, e_in, lo, hi).sum() / span
    q_exit = np.where(rec["served"], rec["start"], e)[admitted_all]
    row["mean_queue"] = _overlap(a_in, q_exit, lo, hi).sum() / span
    row["p_empty"] = _empty_share(a_in, e_in, lo, hi)
    row["mean_wait_cond"] = nan
    if _cond_invalid(m) is None and n_adm:
        c, mu = int(m.schedule[0]), 1.0 / m.service_mean
        k = np.maximum(rec["in_system"][win].astype(np.int64) - c + 1, 0)
        row["mean_wait_cond"] = k.mean() / (c * mu)
    return row


def _cond_invalid(m: _Model) -> str | None:
    """Why the conditional estimators do not apply to model ``m`` (None when they do):
    ``W_q | n ~ Gamma(n - c + 1, c μ)`` for an arrival finding ``n >= c`` needs FCFS
    exponential service, a fixed ``c`` (after the horizon too) and every customer served
    (no abandonment, blocking, closing). The arrival process may be anything."""
    if m.service_dist != "exponential":
        return f"service_dist={m.service_dist!r} (they need exponential service)"
    if m.patience_mean is not None or m.max_wait is not None:
        return "abandonment (patience_mean or max_wait is set)"
    if m.queue_capacity is not None:
        return "a finite queue (queue_capacity is set; blocking)"
    if m.initial or np.any(m.schedule != m.schedule[0]) or m.late_servers != m.schedule[0]:
        return "a server count that changes (server_schedule or closing)"
    return None


def _empty_share(enter: np.ndarray, leave: np.ndarray, lo: float, hi: float) -> float:
    """Share of ``[lo, hi]`` during which no customer is in the system."""
    t = np.concatenate([enter, leave])
    step = np.concatenate([np.ones(enter.size, np.int64), -np.ones(leave.size, np.int64)])
    order = np.argsort(t, kind="stable")
    t, level = t[order], np.cumsum(step[order])
    edges = np.concatenate([[lo], np.clip(t, lo, hi), [hi]])
    levels = np.concatenate([[0], level])
    return float(np.diff(edges)[levels == 0].sum() / (hi - lo))


# --------------------------------------------------------------------------- results
class _Metric:
    """A ``StationResult`` attribute that returns the :class:`Estimate` of one metric."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else obj.ci(self.name)


@dataclass(frozen=True, eq=False)
class StationResult:
    """Output of :func:`run_station`: per-replication metrics, their CIs, and records.

    Each metric attribute returns an :class:`Estimate` (mean and 95% CI across
    replications); :meth:`ci` does the same by name. Little's law reads
    ``mean_in_system ≈ arrival_rate · (1 - p_block) · mean_sojourn``.
    """

    per_replication: np.ndarray
    """One ``METRIC_DTYPE`` row per replication, in replication order."""
    records: np.ndarray | None
    """Per-customer ``RECORD_DTYPE`` rows (all replications, warm-up included), or None."""
    horizon: float
    """End of the arrival window (time units)."""
    warmup: float
    """Start of the statistics window (time units)."""
    seed_entropy: Any
    """Entropy of the root ``SeedSequence``; with ``seed_spawn_key`` it reproduces the run."""
    seed_spawn_key: tuple[int, ...]
    """Spawn key of the root ``SeedSequence`` (empty for an integer seed)."""
    service_time_mean: float = math.nan
    """``1/μ``, the mean service time (time units; NaN when unknown)."""
    cond_invalid: str | None = "no model information"
    """Why the conditional estimators (``*_cond``, ``*_cv``) do not apply, or None."""
    arrival_rate_in: float | None = None
    """``λ`` of homogeneous Poisson arrivals; None with an ``arrival_profile``."""

    p_wait = _Metric("P(wait > 0): share of admitted customers who queued.")
    mean_wait = _Metric("W_q: mean time in queue of admitted customers (time units).")
    utilization = _Metric("Busy server time / scheduled server time in the window.")
    abandon_rate = _Metric("Share of offered customers who abandoned.")
    p_block = _Metric("Share of offered customers blocked by a full queue.")
    throughput = _Metric("Service completions per time unit in the window.")
    arrival_rate = _Metric("Offered arrivals per time unit in the window.")
    mean_in_system = _Metric("L: time-average number of customers in the system.")
    mean_sojourn = _Metric("W: mean time in system of admitted customers (time units).")
    mean_queue = _Metric("L_q: time-average number of customers waiting.")
    p_empty = _Metric("P_0: share of the window with nobody in the system.")
    mean_wait_cond = _Metric(
        "W_q by conditional Monte Carlo: window mean of ``E[W_q | n] = max(n - c + 1, 0) / "
        "(c μ)``, ``n`` found on arrival (see :func:`_cond_invalid` for when it is valid).")

    @property
    def replications(self) -> int:
        """Number of independent replications."""
        return int(self.per_replication.size)

    def ci(self, name: str) -> Estimate:
        """The :class:`Estimate` of metric ``name`` (one of ``METRICS``)."""
        if name not in METRICS:
            raise InputError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")
        if name in COND_METRICS:
            self._check_cond(name)
        return _estimate(self.per_replication[name])

    def _check_cond(self, name: str) -> None:
        if self.cond_invalid is not None:
            raise InputError(f"{name} (a conditional estimator) is only valid for FCFS "
                             f"exponential service with a fixed server count and no "
                             f"abandonment or blocking; this run has {self.cond_invalid}. "
                             f"Use the plain estimator instead")

    def service_level(self, threshold: float) -> Estimate:
        """Share of offered customers (window arrivals) whose service started within
        ``threshold`` time units (abandoned, blocked, unserved count as misses), with CI.
        """
        t = float(_real("threshold", threshold, low=0.0, low_open=False, unit="time units"))
        if self.records is None:
            raise InputError("service_level needs per-customer records; "
                             "run run_station(..., keep_records=True)")
        r = self.records
        hit = (r["arrival"] >= self.warmup) & r["served"] & (r["wait"] <= t)
        hits = np.bincount(r["replication"][hit], minlength=self.replications)
        offered = self.per_replication["offered"]
        with np.errstate(invalid="ignore", divide="ignore"):
            return _estimate(np.where(offered > 0, hits / offered, np.nan))

    def service_level_cond(self, threshold: float) -> Estimate:
        """:meth:`service_level` by conditional Monte Carlo (Rao-Blackwellised), with CI:
        each window arrival adds ``P(W_q <= t | n) = P(Gamma(n - c + 1, rate c μ) <= t)``
        (1 for ``n < c``) instead of ``1{W_q <= t}``. Needs records; InputError where
        invalid (:func:`_cond_invalid`)."""
        t = float(_real("threshold", threshold, low=0.0, low_open=False, unit="time units"))
        r, _, c = self._cond_records("service_level_cond", shadow=False)
        tail = _gamma_tail(r["in_system"], c, t, 1.0 / self.service_time_mean)
        return _estimate(1.0 - self._per_rep(r, tail))

    def mean_wait_cv(self) -> Estimate:
        """``mean_wait_cond`` with an infinite-server control variate, with CI.

        Control: the same statistic with ``n∞``, the number of earlier customers still in
        service (arrival + service > this arrival) in a shadow M/M/∞ station fed by the same
        customers; ``n∞`` seen by a Poisson arrival is Poisson(λ/μ), so the control's mean
        comes from ``λ`` and ``μ`` alone. Estimate ``y - b (x - E x)``, ``b`` fitted across
        replications; regression CI with Student t, ``R - 2`` d.o.f. (``R >= 3``). Needs
        records and homogeneous Poisson arrivals; InputError where invalid.
        """
        mu = 1.0 / self.service_time_mean
        return self._cv("mean_wait_cv", lambda n, c: np.maximum(n - c + 1, 0) / (c * mu))

    def service_level_cv(self, threshold: float) -> Estimate:
        """``service_level_cond`` with the control variate of :meth:`mean_wait_cv`
        (per arrival ``P(Gamma(n∞ - c + 1, c μ) <= t)``), with CI; same conditions."""
        t = float(_real("threshold", threshold, low=0.0, low_open=False, unit="time units"))
        mu = 1.0 / self.service_time_mean
        return self._cv("service_level_cv", lambda n, c: 1.0 - _gamma_tail(n, c, t, mu))

    def _cv(self, name: str, f: Any) -> Estimate:
        """Control-variate estimate of the window mean of ``f(n, c)``, ``n`` on arrival."""
        r, n_inf, c = self._cond_records(name, shadow=True)
        a = self.arrival_rate_in * self.service_time_mean  # offered load λ/μ
        n = np.arange(int(2 * a + 10 * math.sqrt(a) + 30))
        mx = float((stats.poisson.pmf(n, a) * f(n, c)).sum())
        y = self._per_rep(r, f(r["in_system"].astype(np.int64), c))
        return _controlled(y, self._per_rep(r, f(n_inf, c)), mx)

    def _per_rep(self, r: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Mean of per-customer ``values`` by replication (NaN where there are none)."""
        count = np.bincount(r["replication"], minlength=self.replications)
        total = np.bincount(r["replication"], weights=values, minlength=self.replications)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / count, np.nan)

    def _cond_records(self, name: str, *, shadow: bool) -> tuple[np.ndarray, np.ndarray, int]:
        """Window records, their ``n∞`` (M/M/∞ shadow, when ``shadow``) and servers ``c``."""
        self._check_cond(name)
        if shadow and self.arrival_rate_in is None:
            raise InputError(f"{name} needs homogeneous Poisson arrivals; this run has an "
                             f"arrival_profile. Use the conditional estimator instead")
        if self.records is None:
            raise InputError(f"{name} needs per-customer records; "
                             f"run run_station(..., keep_records=True)")
        rec = self.records
        n_inf = np.zeros(rec.size, np.int64)
        bounds = np.searchsorted(rec["replication"], np.arange(self.replications + 1))
        for lo, hi in itertools.pairwise(bounds if shadow else ()):
            a = rec["arrival"][lo:hi]
            done = np.sort(a + rec["service"][lo:hi])
            n_inf[lo:hi] = np.arange(hi - lo) - np.searchsorted(done, a, side="right")
        win = rec["arrival"] >= self.warmup
        return rec[win], n_inf[win], int(rec["servers"][0]) if rec.size else 1


def _gamma_tail(n: np.ndarray, c: int, t: float, mu: float) -> np.ndarray:
    """``P(W_q > t | n in system on arrival)`` for ``c`` exponential(μ) FCFS servers."""
    k = np.maximum(np.asarray(n, np.int64) - c + 1, 0)
    ks, inv = np.unique(k, return_inverse=True)  # few distinct values: one sf per value
    tail = np.where(ks > 0, stats.gamma.sf(t, np.maximum(ks, 1), scale=1.0 / (c * mu)), 0.0)
    return tail[inv.reshape(k.shape)]


def _controlled(y: np.ndarray, x: np.ndarray, mx: float) -> Estimate:
    """Control-variate estimate of ``E y`` from replications ``(y, x)`` with ``E x = mx``:
    the regression of ``y`` on ``x`` evaluated at ``mx``, CI with ``R - 2`` d.o.f."""
    ok = np.isfinite(y) & np.isfinite(x)
    y, x = y[ok], x[ok]
    if y.size < 3 or not np.ptp(x) > 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan)
    sxx = float(((x - x.mean()) ** 2).sum())
    b = float(((x - x.mean()) * (y - y.mean())).sum()) / sxx
    mean = float(y.mean() - b * (x.mean() - mx))
    resid = y - y.mean() - b * (x - x.mean())
    var = float((resid**2).sum()) / (y.size - 2) * (1.0 / y.size + (x.mean() - mx) ** 2 / sxx)
    hw = float(stats.t.ppf(0.975, y.size - 2) * math.sqrt(var))
    return Estimate(mean, hw, mean - hw, mean + hw)

