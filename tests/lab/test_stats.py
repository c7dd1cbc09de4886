"""The lab's statistics against known values."""

from __future__ import annotations

import math

import torch

from aem.lab.stats import estimate, mean_band, pearson, sign_agreement


def test_estimate_and_minimum_detectable_effect():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    result = estimate(values)
    sd = math.sqrt(2.5)
    assert result.mean == 3.0 and abs(result.sd - sd) < 1e-12 and result.n == 5
    half = 2.7764 * sd / math.sqrt(5)
    assert abs(result.high - 3.0 - half) < 1e-3 and abs(3.0 - result.low - half) < 1e-3
    assert abs(result.mde - (2.7764 + 0.9410) * sd / math.sqrt(5)) < 2e-3
    assert result.significant
    assert not estimate(torch.tensor([-1.0, 1.0, -2.0, 2.0])).significant
    assert estimate(torch.tensor([float("nan"), 1.0, 3.0])).n == 2


def test_band_pearson_and_sign_agreement():
    mean, low, high = mean_band(torch.tensor([[0.0, 1.0], [2.0, 1.0]]))
    torch.testing.assert_close(mean, torch.tensor([1.0, 1.0]))
    assert float(low[1]) == float(high[1]) == 1.0 and float(low[0]) < 1.0 < float(high[0])
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert abs(pearson(x, 2 * x + 1) - 1.0) < 1e-12 and abs(pearson(x, -x) + 1.0) < 1e-12
    assert sign_agreement(
        torch.tensor([1.0, -1.0, 0.0, 2.0]), torch.tensor([1.0, 1.0, 5.0, 0.0])
    ) == (0.5, 2)
