"""Statistics over seeds: mean ± std, the paired difference with its t interval and the minimum
detectable effect (``aem compare`` and ``aem lab`` share them; stdlib only).

scipy is not a dependency, so the Student-t CDF is computed from the regularised incomplete beta
function (continued fraction, modified Lentz) and its quantile by bisection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

_TINY = 1e-300
_EPS = 1e-15


def _require_finite_values(name: str, values: Sequence[float]) -> list[float]:
    out = [float(v) for v in values]
    for index, value in enumerate(out):
        if not math.isfinite(value):
            raise ValueError(f"{name} must hold finite numbers, got {value!r} at index {index}")
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) over seeds; std is nan for fewer than 2."""
    xs = _require_finite_values("values", values)
    if not xs:
        raise ValueError("values must not be empty, got 0 values")
    mean = math.fsum(xs) / len(xs)
    if len(xs) < 2:
        return mean, math.nan
    var = math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return mean, math.sqrt(var)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            step = d * c
            h *= step
        if abs(step - 1.0) < _EPS:
            break
    return h


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if not (a > 0 and b > 0):
        raise ValueError(f"a and b must be > 0, got a={a!r}, b={b!r}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x!r}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if not (df > 0 and math.isfinite(df)):
        raise ValueError(f"df must be a finite number > 0, got {df!r}")
    if math.isnan(t):
        raise ValueError(f"t must not be nan, got {t!r}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on the CDF)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < p:
        low, high = high, high * 2.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if student_t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-13 * max(1.0, high):
            break
    return 0.5 * (low + high)


def minimum_detectable_effect(
    sd: float, n: int, confidence: float = 0.95, power: float = 0.8
) -> float:
    """The smallest true mean difference a two-sided paired t-test at level ``1 - confidence``
    detects with probability ``power``, given the standard deviation ``sd`` of the paired
    differences over ``n`` seeds: ``(t_{(1+c)/2, n-1} + t_{power, n-1}) · sd / √n`` (the usual
    approximation of the noncentral t; nan for fewer than 2 seeds)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    if n < 2 or math.isnan(sd):
        return math.nan
    if sd < 0:
        raise ValueError(f"sd must be >= 0, got {sd!r}")
    quantiles = student_t_quantile(0.5 + confidence / 2.0, n - 1) + student_t_quantile(power, n - 1)
    return quantiles * sd / math.sqrt(n)


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``treatment - control`` over paired seeds, its two-sided t interval, and the
    minimum detectable effect at 80% power (:func:`minimum_detectable_effect`)."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float
    mde: float = math.nan

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0 (never with fewer than 2 pairs)."""
        return self.n >= 2 and not (self.low <= 0.0 <= self.high)

    def verdict(self) -> str:
        """A plain-words reading of the interval."""
        if self.n < 2:
            return f"no interval (only {self.n} paired seed{'s' if self.n != 1 else ''})"
        if not self.significant:
            return "not significant"
        verdict = "significantly higher" if self.mean > 0 else "significantly lower"
        return verdict + (" (every seed gave the same difference)" if self.low == self.high else "")


def paired_difference(
    treatment: Sequence[float], control: Sequence[float], confidence: float = 0.95
) -> PairedDifference:
    """Paired t interval of ``mean(treatment - control)``: mean ± t_{(1+c)/2, n-1} · sd / √n.

    Pairs share a seed (same starting policy, same task draws), so the per-seed differences are
    the sample. With one pair the interval is (nan, nan)."""
    a = _require_finite_values("treatment", treatment)
    b = _require_finite_values("control", control)
    if len(a) != len(b):
        raise ValueError(f"treatment and control must pair up, got {len(a)} and {len(b)} values")
    if not a:
        raise ValueError("treatment and control must not be empty, got 0 pairs")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean, sd = mean_std(diffs)
    n = len(diffs)
    if n < 2:
        return PairedDifference(mean, math.nan, math.nan, n, confidence)
    half = student_t_quantile(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)
    mde = minimum_detectable_effect(sd, n, confidence)
    return PairedDifference(mean, mean - half, mean + half, n, confidence, mde)
