"""Statistics over seeds: means with Student-t 95% intervals, paired differences with their
minimum detectable effect, Pearson r and sign agreement.

Scalar statistics (t quantiles, the minimum detectable effect) come from :mod:`aem.stats`, which
``aem compare`` uses too; this module applies them to tensors of per-seed values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from aem.stats import minimum_detectable_effect, student_t_quantile

POWER = 0.8
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """Mean over seeds with a 95% t interval; ``mde`` is the smallest true mean a two-sided 5%
    t-test detects with 80% power at this spread and number of seeds (for paired differences)."""

    mean: float
    low: float
    high: float
    sd: float
    n: int
    mde: float

    @property
    def significant(self) -> bool:
        return self.low > 0.0 or self.high < 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "sd": self.sd,
            "n": self.n,
            "mde": self.mde,
        }


def estimate(values: Tensor) -> Estimate:
    """:class:`Estimate` of the mean of ``values`` (``[R]``, NaN entries dropped)."""
    kept = values[torch.isfinite(values)].to(torch.float64)
    n = int(kept.numel())
    if n == 0:
        nan = float("nan")
        return Estimate(nan, nan, nan, nan, 0, nan)
    mean = float(kept.mean())
    if n < 2:
        return Estimate(mean, float("nan"), float("nan"), float("nan"), n, float("nan"))
    sd = float(kept.std())
    half = student_t_quantile(0.5 + LEVEL / 2, n - 1) * sd / math.sqrt(n)
    mde = minimum_detectable_effect(sd, n, LEVEL, POWER)
    return Estimate(mean, mean - half, mean + half, sd, n, mde)


def mean_band(values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean and 95% t interval over seeds (axis 0) at every later index: ``([T], [T], [T])``."""
    n = values.shape[0]
    mean = values.mean(0)
    if n < 2:
        return mean, mean, mean
    half = student_t_quantile(0.5 + LEVEL / 2, n - 1) * values.std(0) / math.sqrt(n)
    return mean, mean - half, mean + half


def pearson(x: Tensor, y: Tensor) -> float:
    """Pearson correlation of two flat samples (NaN if either is constant)."""
    x, y = x.flatten().to(torch.float64), y.flatten().to(torch.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum()) / denominator if denominator > 0 else float("nan")


def sign_agreement(predicted: Tensor, measured: Tensor) -> tuple[float, int]:
    """Share of pairs whose signs agree, over pairs where both are non-zero; and that count."""
    predicted, measured = predicted.flatten(), measured.flatten()
    counted = (predicted != 0) & (measured != 0)
    number = int(counted.sum())
    if number == 0:
        return float("nan"), 0
    same = torch.sign(predicted[counted]) == torch.sign(measured[counted])
    return float(same.to(torch.float64).mean()), number
