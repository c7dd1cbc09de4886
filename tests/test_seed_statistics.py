"""Sweep statistics against independent references: closed-form t quantiles (df 1 and 2),
printed t tables, numerical integration of the t density, naive paired-t loops."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aem.stats import (
    mean_std,
    minimum_detectable_effect,
    paired_difference,
    regularized_incomplete_beta,
    student_t_cdf,
    student_t_quantile,
)

# two-sided 95% critical values t_{0.975, df} from a printed table
T_TABLE_975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 10: 2.2281, 30: 2.0423}


@given(st.floats(0.001, 0.999))
def test_quantile_matches_closed_forms_for_one_and_two_dof(p):
    assert student_t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
    two = (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    assert student_t_quantile(p, 2) == pytest.approx(two, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("df", sorted(T_TABLE_975))
def test_quantile_matches_printed_table(df):
    assert student_t_quantile(0.975, df) == pytest.approx(T_TABLE_975[df], abs=1e-4)
    assert student_t_quantile(0.025, df) == pytest.approx(-T_TABLE_975[df], abs=1e-4)


def test_large_dof_approaches_the_normal_quantile():
    assert student_t_quantile(0.975, 10**7) == pytest.approx(1.959964, abs=1e-5)


def _t_density(x: float, df: float) -> float:
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))


def _cdf_by_simpson(t: float, df: float, steps: int = 20000) -> float:
    """0.5 + integral of the density from 0 to t (composite Simpson, float64)."""
    h = t / steps
    total = _t_density(0, df) + _t_density(t, df)
    total += sum((4 if i % 2 else 2) * _t_density(i * h, df) for i in range(1, steps))
    return 0.5 + total * h / 3


@pytest.mark.parametrize("df", [1, 2.5, 4, 9, 40])
@pytest.mark.parametrize("t", [-3.0, -0.7, 0.4, 1.5, 6.0])
def test_cdf_matches_numerical_integration(t, df):
    assert student_t_cdf(t, df) == pytest.approx(_cdf_by_simpson(t, df), abs=1e-9)


@settings(max_examples=50)
@given(st.floats(0.01, 0.99), st.integers(1, 200))
def test_quantile_inverts_cdf(p, df):
    assert student_t_cdf(student_t_quantile(p, df), df) == pytest.approx(p, abs=1e-10)


def test_incomplete_beta_special_cases():
    # I_x(1, 1) = x; I_x(a, 1) = x^a; I_x(1, b) = 1 - (1 - x)^b
    for x in (0.1, 0.5, 0.93):
        assert regularized_incomplete_beta(1, 1, x) == pytest.approx(x, abs=1e-13)
        assert regularized_incomplete_beta(3.5, 1, x) == pytest.approx(x**3.5, abs=1e-13)
        assert regularized_incomplete_beta(1, 2.5, x) == pytest.approx(1 - (1 - x) ** 2.5)


@given(st.lists(st.floats(-10, 10), min_size=2, max_size=12))
def test_mean_std_matches_statistics_module(values):
    mean, std = mean_std(values)
    assert mean == pytest.approx(statistics.fmean(values), abs=1e-12)
    assert std == pytest.approx(statistics.stdev(values), abs=1e-9)


def test_paired_difference_matches_hand_computed_t_interval():
    aem = [0.62, 0.55, 0.71, 0.48, 0.66]
    base = [0.50, 0.52, 0.60, 0.40, 0.58]
    diffs = []
    for a, b in zip(aem, base, strict=True):
        diffs.append(a - b)
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = T_TABLE_975[n - 1] * sd / math.sqrt(n)
    result = paired_difference(aem, base)
    assert result.n == 5
    assert result.mean == pytest.approx(mean, abs=1e-12)
    assert result.low == pytest.approx(mean - half, abs=1e-5)
    assert result.high == pytest.approx(mean + half, abs=1e-5)
    assert result.significant and result.verdict() == "significantly higher"


def test_interval_containing_zero_is_reported_not_significant():
    result = paired_difference([0.5, 0.4, 0.7], [0.45, 0.5, 0.6])
    assert result.low < 0 < result.high
    assert not result.significant and result.verdict() == "not significant"
    lower = paired_difference([0.1, 0.2, 0.15, 0.12], [0.5, 0.55, 0.6, 0.52])
    assert lower.significant and lower.verdict() == "significantly lower"


def test_one_pair_has_no_interval_and_equal_pairs_a_point_interval():
    single = paired_difference([0.7], [0.5])
    assert single.mean == pytest.approx(0.2)
    assert math.isnan(single.low) and math.isnan(single.high)
    assert not single.significant and "only 1 paired seed" in single.verdict()
    same = paired_difference([0.3, 0.3], [0.3, 0.3])
    assert (same.low, same.high) == (0.0, 0.0) and not same.significant


def test_bad_inputs_raise_naming_the_argument():
    with pytest.raises(ValueError, match="pair up, got 2 and 3"):
        paired_difference([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="treatment must hold finite numbers"):
        paired_difference([1.0, math.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="must not be empty"):
        paired_difference([], [])
    with pytest.raises(ValueError, match="confidence"):
        paired_difference([1.0, 2.0], [1.0, 1.0], confidence=1.5)
    with pytest.raises(ValueError, match="df must be"):
        student_t_cdf(1.0, 0)
    with pytest.raises(ValueError, match="p must be in"):
        student_t_quantile(1.0, 3)


@pytest.mark.parametrize(
    ("probability", "df", "expected"),
    [
        (0.975, 1, 12.7062),
        (0.975, 2, 4.3027),
        (0.975, 5, 2.5706),
        (0.975, 10, 2.2281),
        (0.975, 199, 1.9720),
        (0.8, 199, 0.8434),
        (0.8, 9, 0.8834),
        (0.025, 30, -2.0423),
    ],
)
def test_t_quantile_matches_printed_tables(probability, df, expected):
    assert student_t_quantile(probability, df) == pytest.approx(expected, abs=5e-5)


def test_minimum_detectable_effect_by_hand():
    # sd 1, 10 seeds: (t_.975,9 = 2.2622 + t_.8,9 = 0.8834) / sqrt(10)
    assert minimum_detectable_effect(1.0, 10) == pytest.approx(3.1456 / math.sqrt(10), abs=1e-4)
    assert minimum_detectable_effect(2.0, 10) == pytest.approx(2 * minimum_detectable_effect(1, 10))
    assert math.isnan(minimum_detectable_effect(1.0, 1))
    diff = paired_difference([0.5, 0.4, 0.7, 0.6], [0.45, 0.5, 0.6, 0.5])
    sd = statistics.stdev([0.05, -0.1, 0.1, 0.1])
    assert diff.mde == pytest.approx(minimum_detectable_effect(sd, 4))
    for bad in ({"sd": 1.0, "n": 5, "power": 1.0}, {"sd": -1.0, "n": 5}, {"sd": 1.0, "n": 2.5}):
        with pytest.raises(ValueError):
            minimum_detectable_effect(**bad)
