"""The Gaussian mechanism's privacy accounting, in pure Python (no torch: reports use it).

A release M(x) = f(x) + N(0, s^2 I) of a function with L2 sensitivity D is mu-GDP with
mu = D / s (Dong, Roth, Su, "Gaussian differential privacy", JRSS-B 2022), and mu-GDP is exactly
(epsilon, delta)-DP for every epsilon >= 0 with

    delta(mu, epsilon) = Phi(mu/2 - epsilon/mu) - e^epsilon Phi(-mu/2 - epsilon/mu)

(their Corollary 2.13; the same curve as Balle & Wang's analytic Gaussian mechanism, ICML 2018,
Theorem 8, written with mu = D / s). So:

* `analytic_mu(epsilon, delta)`: the largest mu with delta(mu, epsilon) <= delta, by bisection;
  the analytic mechanism's noise is s = D / mu, the smallest s that gives (epsilon, delta).
* `classic_mu(epsilon, delta)`: Dwork & Roth's Theorem 3.22, s = D sqrt(2 ln(1.25/delta)) / epsilon,
  valid only for epsilon < 1.
* K releases of one record, each mu-GDP (even chosen adaptively), are sqrt(K) mu-GDP together
  (Dong, Roth, Su, Corollary 3.3): `composed_epsilon(mu, delta, K)` inverts the curve at delta.

Phi is written with math.erfc and the e^epsilon term in logs, so epsilon up to ~1e4 and delta down to
~1e-12 are computed without overflow or cancellation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from splitleak.errors import InputError

CALIBRATIONS = ("analytic", "classic")
_SQRT2 = math.sqrt(2.0)
_ITERATIONS = 200


def _phi(t: float) -> float:
    """The standard normal CDF."""
    return 0.5 * math.erfc(-t / _SQRT2)


def _log_phi_lower(b: float) -> float:
    """log Phi(-b) for b >= 0 (the asymptotic series where erfc underflows)."""
    if b < 30.0:
        return math.log(0.5 * math.erfc(b / _SQRT2))
    return -0.5 * b * b - math.log(b) - 0.5 * math.log(2 * math.pi) + math.log1p(-1 / b**2 + 3 / b**4 - 15 / b**6)


def gaussian_delta(mu: float, epsilon: float) -> float:
    """The smallest delta for which a mu-GDP mechanism is (epsilon, delta)-DP."""
    if mu <= 0:
        return 0.0
    a, b = mu / 2 - epsilon / mu, mu / 2 + epsilon / mu
    return max(0.0, _phi(a) - math.exp(epsilon + _log_phi_lower(b)))


def _check(epsilon: Any, delta: Any) -> tuple[float, float]:
    for name, value in (("epsilon", epsilon), ("delta", delta)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"dp-noise {name} must be a finite number, got {value!r}")
    if epsilon <= 0:
        raise InputError(f"dp-noise epsilon must be > 0, got {epsilon!r}")
    if not 0 < delta < 1:
        raise InputError(f"dp-noise delta must be in (0, 1), got {delta!r}")
    return float(epsilon), float(delta)


def _bracket(ok: Callable[[float], bool]) -> tuple[float, float]:
    """(low, high), adjacent floats or `_ITERATIONS` halvings apart, where `ok` flips on [0, inf):
    ok(low) == ok(0) != ok(high); found by doubling, then bisection."""
    start = ok(0.0)
    low, high = 0.0, 1.0
    while ok(high) == start:
        low, high = high, 2 * high
    for _ in range(_ITERATIONS):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        low, high = (middle, high) if ok(middle) == start else (low, middle)
    return low, high


def analytic_mu(epsilon: float, delta: float) -> float:
    """The largest mu with delta(mu, epsilon) <= delta (delta grows with mu), by bisection."""
    epsilon, delta = _check(epsilon, delta)
    low, _ = _bracket(lambda mu: gaussian_delta(mu, epsilon) <= delta)
    return low


def classic_mu(epsilon: float, delta: float) -> float:
    """Dwork & Roth's calibration (Theorem 3.22), as mu = D / s; refused for epsilon >= 1."""
    epsilon, delta = _check(epsilon, delta)
    if epsilon >= 1:
        raise InputError(f"dp-noise calibration 'classic' holds only for epsilon < 1, got {epsilon:g}; use 'analytic'")
    return epsilon / math.sqrt(2 * math.log(1.25 / delta))


def calibrated_mu(epsilon: float, delta: float, calibration: str = "analytic") -> float:
    """mu = sensitivity / noise std of the `calibration` ('analytic' or 'classic')."""
    if calibration not in CALIBRATIONS:
        raise InputError(f"dp-noise calibration must be one of {list(CALIBRATIONS)}, got {calibration!r}")
    return analytic_mu(epsilon, delta) if calibration == "analytic" else classic_mu(epsilon, delta)


def noise_std(epsilon: float, delta: float, sensitivity: float, calibration: str = "analytic") -> float:
    """The Gaussian noise std per coordinate that makes one release (epsilon, delta)-DP."""
    return sensitivity / calibrated_mu(epsilon, delta, calibration)


def composed_epsilon(mu: float, delta: float, releases: int) -> float:
    """The smallest epsilon at which `releases` mu-GDP releases are (epsilon, delta)-DP together."""
    _check(1.0, delta)
    if isinstance(releases, bool) or not isinstance(releases, int) or releases < 1:
        raise InputError(f"releases must be a whole number >= 1, got {releases!r}")
    total = math.sqrt(releases) * mu
    if gaussian_delta(total, 0.0) <= delta:
        return 0.0
    _, high = _bracket(lambda epsilon: gaussian_delta(total, epsilon) <= delta)  # delta falls as epsilon grows
    return high


def sensitivity(clip: float) -> float:
    """L2 sensitivity of one clipped release under replace-one adjacency: 2C."""
    return 2.0 * clip


def epsilon_after(params: Mapping[str, Any], releases: int) -> float:
    """The epsilon of `releases` releases of one input under dp-noise `params` (at its delta)."""
    epsilon, delta = float(params.get("epsilon", 8.0)), float(params.get("delta", 1e-5))
    calibration = str(params.get("calibration", "analytic"))
    if releases == 1:
        return epsilon
    return composed_epsilon(calibrated_mu(epsilon, delta, calibration), delta, releases)


def guarantee(params: Mapping[str, Any], releases: int = 1) -> str:
    """The dp-noise guarantee, in words: per released activation, and after `releases` of one input."""
    epsilon, delta = float(params.get("epsilon", 8.0)), float(params.get("delta", 1e-5))
    clip, calibration = float(params.get("clip", 1.0)), str(params.get("calibration", "analytic"))
    std = noise_std(epsilon, delta, sensitivity(clip), calibration)
    text = (f"(ε={epsilon:.3g}, δ={delta:.3g})-DP per released activation (replace-one adjacency on the input, "
            f"L2 clip C={clip:g}, sensitivity 2C, {calibration} calibration: noise std {std:.4g} per coordinate)")
    if releases > 1:
        text += f"; after {releases} releases of one input: (ε={epsilon_after(params, releases):.3g}, δ={delta:.3g})"
    return text


__all__ = ["CALIBRATIONS", "analytic_mu", "calibrated_mu", "classic_mu", "composed_epsilon", "epsilon_after", "gaussian_delta", "guarantee", "noise_std", "sensitivity"]
