"""The stdlib-only argument checks and the environments' shared constructor check."""

from __future__ import annotations

import math

import pytest

from aem.envs.base import check_episode_limits
from aem.validation import require_finite_number, require_int_at_least


@pytest.mark.parametrize("value", [True, 2.0, "3", None, -1, 0])
def test_require_int_at_least_refuses_non_ints_and_small_ints(value: object) -> None:
    with pytest.raises(ValueError, match=rf"^turns must be an int >= 1, got {value!r}$"):
        require_int_at_least("turns", value, 1)


def test_require_int_at_least_returns_the_value() -> None:
    assert require_int_at_least("turns", 1, 1) == 1
    assert require_int_at_least("index", 0, 0) == 0


@pytest.mark.parametrize("value", [math.inf, math.nan, True, "1.0", None])
def test_require_finite_number_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="reward must be a finite number"):
        require_finite_number("reward", value)


def test_check_episode_limits_names_the_field() -> None:
    check_episode_limits(1, 10)
    with pytest.raises(ValueError, match="max_steps must be an int >= 1, got 0"):
        check_episode_limits(0, 10.0)
    with pytest.raises(ValueError, match="success_reward must be a finite number, got inf"):
        check_episode_limits(5, math.inf)
