"""Closed-form queueing formulas: Erlang B, Erlang C, M/M/c (and M/M/1) metrics, staffing.

These are the analytic yardsticks the discrete-event simulator (``peakplan.simulate.des``)
is validated against, and quick staffing answers in their own right.

Notation (used in every docstring below):

=========  ==========================================================  =================
symbol     meaning                                                     unit
=========  ==========================================================  =================
``λ``      arrival rate                                                customers / time
``μ``      service rate of one server, ``1 / AHT``                     customers / time
``AHT``    average handling (service) time, ``1 / μ``                  time
``N, c``   number of servers (agents)                                  servers
``A``      offered traffic ``λ / μ = λ · AHT``                         erlangs
``ρ``      utilization (occupancy) ``A / N``                           dimensionless
``t``      answer-time threshold of a service level                    time (as AHT)
=========  ==========================================================  =================

"time" is any unit (seconds, minutes, hours) as long as every argument uses the same one.

Sources:

* [GSTH] Gross, Shortle, Thompson & Harris, *Fundamentals of Queueing Theory*, 4th ed.,
  Wiley 2008: section 2.2 (M/M/1), section 2.3 (M/M/c), section 2.6 (M/M/c/c, Erlang's
  loss formula).
* [GKM] Gans, Koole & Mandelbaum, "Telephone call centers: tutorial, review, and research
  prospects", *M&SOM* 5(2), 2003, section 4.1 (Erlang C service level and ASA).
* The worked example in ``shared/reference/erlang_c_call_centre_10_erlangs.json``
  (Call Centre Helper, "Erlang C formula made simple"), reproduced by the tests.

Every function takes scalars or numpy arrays (broadcast together) and returns a Python
``float`` / ``int`` for all-scalar input and a numpy array otherwise. Unstable inputs
(``A >= N``) are not errors: waiting probabilities become 1 and waits become ``inf``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from peakplan.errors import InputError

__all__ = [
    "MMcMetrics",
    "asa",
    "erlang_b",
    "erlang_c",
    "mm1_metrics",
    "mmc_metrics",
    "occupancy",
    "required_servers",
    "service_level",
]

ArrayLike = Any  # float | int | sequence | np.ndarray


# --------------------------------------------------------------------------- validation
def _show(values: np.ndarray) -> str:
    """The offending values, at most five, for an error message."""
    flat = np.asarray(values).ravel()
    shown = ", ".join(repr(v.item()) for v in flat[:5])
    return shown + (f", ... ({flat.size} values)" if flat.size > 5 else "")


def _real(name: str, value: ArrayLike, *, low: float, low_open: bool, high: float = math.inf,
          high_open: bool = True, unit: str = "") -> np.ndarray:
    """``value`` as a float array, every element finite and inside the stated interval."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    bad = ~np.isfinite(arr) | (arr <= low if low_open else arr < low)
    if math.isfinite(high):
        bad |= arr >= high if high_open else arr > high
    if bad.any():
        lo = "(" if low_open else "["
        hi = ")" if high_open or not math.isfinite(high) else "]"
        rng = f"{lo}{low:g}, {high:g}{hi}"
        unit_txt = f" {unit}" if unit else ""
        raise InputError(f"{name} must be finite and in {rng}{unit_txt}, got {_show(arr[bad])}")
    return arr


def _servers(name: str, value: ArrayLike) -> np.ndarray:
    """``value`` as an int64 array of non-negative whole numbers."""
    try:
        arr = np.asarray(value)
        num = arr.astype(float)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a whole number of servers, got {value!r}") from None
    bad = ~np.isfinite(num) | (num < 0) | (num != np.round(num))
    if bad.any():
        raise InputError(f"{name} must be a whole number >= 0, got {_show(arr[bad])}")
    return num.astype(np.int64)


def _out(x: np.ndarray, scalar: bool) -> Any:
    """Python scalar for all-scalar input, else the array."""
    if scalar:
        return x.item()
    return x


def _is_scalar(*values: ArrayLike) -> bool:
    return all(np.ndim(v) == 0 for v in values)


# --------------------------------------------------------------------------- Erlang B / C
def _erlang_b(n: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Erlang B on broadcast, validated arrays (the stable recursion)."""
    n, a = np.broadcast_arrays(n, a)
    b = np.ones(a.shape)
    top = int(n.max()) if n.size else 0
    for k in range(1, top + 1):
        ab = a * b
        b = np.where(k <= n, ab / (k + ab), b)
    return b


def erlang_b(servers: ArrayLike, traffic: ArrayLike) -> Any:
    """Erlang's loss formula ``B(N, A)``: the blocking probability of an M/M/N/N system.

    ``B(N, A) = (A^N / N!) / sum_{k=0}^{N} A^k / k!``  [GSTH section 2.6], evaluated by the
    recursion ``B(0, A) = 1``, ``B(k, A) = A·B(k-1, A) / (k + A·B(k-1, A))``, which never
    forms ``A^N`` or ``N!`` and so stays accurate for thousands of servers.

    Parameters
    ----------
    servers:
        ``N``, number of servers (whole number >= 0).
    traffic:
        ``A = λ / μ``, offered traffic in erlangs (>= 0).

    Returns
    -------
    The probability that an arrival finds all ``N`` servers busy and is lost, in [0, 1].
    """
    n = _servers("servers", servers)
    a = _real("traffic", traffic, low=0.0, low_open=False, unit="erlangs")
    return _out(_erlang_b(n, a), _is_scalar(servers, traffic))


def _erlang_c(n: np.ndarray, a: np.ndarray) -> np.ndarray:
    n, a = np.broadcast_arrays(n, a)
    b = _erlang_b(n, a)
    stable = a < n
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(stable, n * b / (n - a * (1.0 - b)), 1.0)
    return c


def erlang_c(servers: ArrayLike, traffic: ArrayLike) -> Any:
    """Erlang's delay formula ``C(N, A)``: the probability that an arrival must wait (M/M/N).

    ``C(N, A) = N·B(N, A) / (N - A·(1 - B(N, A)))`` for ``A < N``  [GSTH section 2.3,
    eq. for ``P(T_q > 0)``; written through Erlang B for numerical stability]. For ``A >= N``
    the queue is unstable and every arrival waits: ``C = 1``.

    Parameters
    ----------
    servers:
        ``N``, number of servers (whole number >= 0).
    traffic:
        ``A = λ / μ``, offered traffic in erlangs (>= 0).

    Returns
    -------
    ``P(wait > 0)``, in [0, 1].
    """
    n = _servers("servers", servers)
    a = _real("traffic", traffic, low=0.0, low_open=False, unit="erlangs")
    return _out(_erlang_c(n, a), _is_scalar(servers, traffic))


def occupancy(servers: ArrayLike, traffic: ArrayLike) -> Any:
    """Agent occupancy (utilization) ``ρ = A / N`` of an M/M/N queue, capped at 1.

    Parameters
    ----------
    servers:
        ``N``, number of servers (whole number >= 1).
    traffic:
        ``A``, offered traffic in erlangs (>= 0).
    """
    n = _servers("servers", servers)
    if (n < 1).any():
        raise InputError(f"servers must be >= 1 for occupancy, got {_show(n[n < 1])}")
    a = _real("traffic", traffic, low=0.0, low_open=False, unit="erlangs")
    return _out(np.minimum(a / n, 1.0), _is_scalar(servers, traffic))


def service_level(servers: ArrayLike, traffic: ArrayLike, aht: ArrayLike,
                  threshold: ArrayLike) -> Any:
    """Erlang C service level: the share of arrivals answered within ``t``.

    ``SL(t) = 1 - C(N, A) · exp(-(N - A) · t / AHT)``  [GKM section 4.1; GSTH section 2.3,
    the waiting-time distribution of M/M/c]. ``SL = 0`` when ``A >= N`` (unstable).

    Parameters
    ----------
    servers:
        ``N``, number of servers (agents).
    traffic:
        ``A``, offered traffic in erlangs.
    aht:
        ``AHT = 1 / μ``, mean service time (time units, > 0).
    threshold:
        ``t``, answer-time target (same time unit as ``aht``, >= 0).
    """
    n = _servers("servers", servers)
    a = _real("traffic", traffic, low=0.0, low_open=False, unit="erlangs")
    h = _real("aht", aht, low=0.0, low_open=True, unit="time units")
    t = _real("threshold", threshold, low=0.0, low_open=False, unit="time units")
    n, a, h, t = np.broadcast_arrays(n, a, h, t)
    c = _erlang_c(n, a)
    with np.errstate(over="ignore", invalid="ignore"):
        sl = np.where(a < n, 1.0 - c * np.exp(-(n - a) * t / h), 0.0)
    return _out(sl, _is_scalar(servers, traffic, aht, threshold))


def asa(servers: ArrayLike, traffic: ArrayLike, aht: ArrayLike) -> Any:
    """Average speed of answer (mean wait in queue over all arrivals) of an M/M/N queue.

    ``ASA = W_q = C(N, A) · AHT / (N - A)``  [GSTH section 2.3, ``W_q = L_q / λ``; GKM
    section 4.1]. ``inf`` when ``A >= N``.

    Parameters
    ----------
    servers:
        ``N``, number of servers (agents).
    traffic:
        ``A``, offered traffic in erlangs.
    aht:
        ``AHT = 1 / μ``, mean service time (time units, > 0); the result has the same unit.
    """
    n = _servers("servers", servers)
    a = _real("traffic", traffic, low=0.0, low_open=False, unit="erlangs")
    h = _real("aht", aht, low=0.0, low_open=True, unit="time units")
    n, a, h = np.broadcast_arrays(n, a, h)
    c = _erlang_c(n, a)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(a < n, c * h / (n - a), np.inf)
    return _out(w, _is_scalar(servers, traffic, aht))


# --------------------------------------------------------------------------- M/M/c metrics
@dataclass(frozen=True)
class MMcMetrics:
    """Steady-state metrics of an M/M/c queue (FCFS, infinite queue, no abandonment).

    Fields are floats for scalar input, arrays for array input. Unstable entries
    (``ρ >= 1``) have ``p0 = 0``, ``pw = 1`` and infinite ``lq``, ``wq``, ``l``, ``w``.
    """

    p0: Any
    """``P_0``: probability that the system is empty (no customer present)."""
    pw: Any
    """``P_w = C(c, A)``: probability that an arrival waits (Erlang C)."""
    lq: Any
    """``L_q``: mean number waiting in queue (customers)."""
    wq: Any
    """``W_q``: mean wait in queue (time units of the rates)."""
    l: Any
    """``L = L_q + A``: mean number in system (customers)."""
    w: Any
    """``W = W_q + 1/μ``: mean time in system (time units of the rates)."""
    utilization: Any
    """``ρ = λ / (c μ)``: long-run share of server time busy (may exceed 1 when unstable)."""


def mmc_metrics(arrival_rate: ArrayLike, service_rate: ArrayLike,
                servers: ArrayLike) -> MMcMetrics:
    """Steady-state metrics of the M/M/c queue  [GSTH section 2.3].

    With ``A = λ/μ`` and ``ρ = A/c``:

    * ``P_0 = [sum_{k=0}^{c-1} A^k/k! + A^c / (c! (1 - ρ))]^{-1}``, computed as
      ``e^{-A} / F(c; A) / (1 + B(c, A) ρ / (1 - ρ))`` with ``F`` the Poisson CDF and ``B``
      Erlang B (the same quantity, rearranged so that no factorial overflows);
    * ``P_w = C(c, A)``; ``L_q = P_w ρ / (1 - ρ)``; ``W_q = L_q / λ = P_w / (c μ - λ)``;
    * ``W = W_q + 1/μ``; ``L = λ W = L_q + A`` (Little's law).

    With ``c = 1`` these are the M/M/1 formulas ``P_0 = 1 - ρ``, ``L = ρ/(1 - ρ)``,
    ``W = 1/(μ - λ)``  [GSTH section 2.2]; see :func:`mm1_metrics`.

    Parameters
    ----------
    arrival_rate:
        ``λ``, arrivals per time unit (> 0).
    service_rate:
        ``μ``, services per time unit of one busy server (> 0).
    servers:
        ``c``, number of servers (whole number >= 1).
    """
    lam = _real("arrival_rate", arrival_rate, low=0.0, low_open=True, unit="per time unit")
    mu = _real("service_rate", service_rate, low=0.0, low_open=True, unit="per time unit")
    c = _servers("servers", servers)
    if (c < 1).any():
        raise InputError(f"servers must be >= 1 for an M/M/c queue, got {_show(c[c < 1])}")
    scalar = _is_scalar(arrival_rate, service_rate, servers)
    lam, mu, c = np.broadcast_arrays(lam, mu, c)
    a = lam / mu
    rho = a / c
    stable = rho < 1.0
    b = _erlang_b(c, a)
    pw = _erlang_c(c, a)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        poisson_cdf = special.pdtr(c, a)
        p0 = np.where(stable, np.exp(-a) / poisson_cdf / (1.0 + b * rho / (1.0 - rho)), 0.0)
        lq = np.where(stable, pw * rho / (1.0 - rho), np.inf)
        wq = np.where(stable, pw / (c * mu - lam), np.inf)
    w = wq + 1.0 / mu
    el = lq + a
    return MMcMetrics(
        p0=_out(p0, scalar), pw=_out(pw, scalar), lq=_out(lq, scalar), wq=_out(wq, scalar),
        l=_out(el, scalar), w=_out(w, scalar), utilization=_out(rho, scalar),
    )


def mm1_metrics(arrival_rate: ArrayLike, service_rate: ArrayLike) -> MMcMetrics:
    """Steady-state metrics of the M/M/1 queue: :func:`mmc_metrics` with ``c = 1``.

    ``P_0 = 1 - ρ``, ``P_w = ρ``, ``L = ρ/(1-ρ)``, ``L_q = ρ²/(1-ρ)``, ``W = 1/(μ-λ)``,
    ``W_q = ρ/(μ-λ)`` with ``ρ = λ/μ``  [GSTH section 2.2].
    """
    return mmc_metrics(arrival_rate, service_rate, 1)


# --------------------------------------------------------------------------- staffing
def required_servers(arrival_rate: ArrayLike, aht: ArrayLike, target_sl: ArrayLike,
                     threshold: ArrayLike, shrinkage: ArrayLike = 0.0,
                     max_occupancy: ArrayLike = 1.0) -> Any:
    """Fewest servers (agents) that meet an Erlang C service-level target.

    The raw requirement is the smallest ``N > A`` with ``SL(t) >= target`` (see
    :func:`service_level`) and ``A / N <= max_occupancy``; scheduled positions are then
    ``ceil(N_raw / (1 - shrinkage))`` (shrinkage = share of paid time not available to
    serve: breaks, training, absence). This is the method of the Call Centre Helper worked
    example: 10 erlangs, 80% in 20 s, AHT 180 s -> 14 raw agents, 20 with 30% shrinkage.
    The ceiling forgives a relative rounding error of 1e-9, so ``14 / 0.7`` gives 20, not 21.
    Zero traffic needs zero servers.

    Parameters
    ----------
    arrival_rate:
        ``λ``, arrivals per time unit (>= 0), e.g. ``100 / 1800`` calls per second.
    aht:
        ``AHT``, mean service time in the same time unit (> 0); ``A = λ · AHT``.
    target_sl:
        Required share answered within ``threshold``, in [0, 1).
    threshold:
        ``t``, answer-time target in the same time unit (>= 0).
    shrinkage:
        Share of scheduled agents unavailable, in [0, 1).
    max_occupancy:
        Cap on ``ρ = A / N``, in (0, 1].

    Returns
    -------
    Number of positions to schedule (``int``, or an int64 array for array input).
    """
    lam = _real("arrival_rate", arrival_rate, low=0.0, low_open=False, unit="per time unit")
    h = _real("aht", aht, low=0.0, low_open=True, unit="time units")
    sl = _real("target_sl", target_sl, low=0.0, low_open=False, high=1.0, high_open=True)
    t = _real("threshold", threshold, low=0.0, low_open=False, unit="time units")
    s = _real("shrinkage", shrinkage, low=0.0, low_open=False, high=1.0, high_open=True)
    occ = _real("max_occupancy", max_occupancy, low=0.0, low_open=True, high=1.0,
                high_open=False)
    scalar = _is_scalar(arrival_rate, aht, target_sl, threshold, shrinkage, max_occupancy)
    lam, h, sl, t, s, occ = np.broadcast_arrays(lam, h, sl, t, s, occ)
    a = lam * h
    # Start at the smallest N that is stable and within the occupancy cap.
    n = np.maximum(np.floor(a) + 1.0, np.ceil(a / occ * (1.0 - 1e-12)))
    n = np.where(a > 0, n, 0.0).astype(np.int64)
    b = _erlang_b(n, a)
    todo = a > 0
    while todo.any():
        # Erlang C and SL from the current Erlang B; one recursion step per extra server.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            c = n * b / (n - a * (1.0 - b))
            got = 1.0 - c * np.exp(-(n - a) * t / h)
        short = todo & (got < sl)
        n = n + short
        with np.errstate(invalid="ignore"):
            b = np.where(short, a * b / (n + a * b), b)
        todo = short
    positions = np.ceil(n / (1.0 - s) * (1.0 - 1e-9)).astype(np.int64)
    return _out(positions, scalar)
