"""aem.checks: the scalar checks, the mask and compute-dtype rules, trusted inputs; and the
environments' shared constructor check."""

from __future__ import annotations

import math

import pytest

from aem.checks import require_finite_number, require_int_at_least
from aem.envs.base import check_episode_limits


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


def test_bool_mask_is_the_one_mask_rule() -> None:
    import torch

    from aem.checks import bool_mask, trusted_inputs

    assert bool_mask("m", torch.tensor([1, 0]), (2,)).tolist() == [True, False]
    assert bool_mask("m", torch.tensor([1.0, 0.0]), (2,)).dtype == torch.bool
    with pytest.raises(ValueError, match=r"m must be bool or hold only 0 and 1, got 2 at \(1,\)"):
        bool_mask("m", torch.tensor([1, 2]), (2,))
    with pytest.raises(ValueError, match=r"m must have shape \(3,\), got \(2,\)"):
        bool_mask("m", torch.tensor([1, 0]), (3,))
    with trusted_inputs():  # the value check is skipped, the shape check is not
        assert bool_mask("m", torch.tensor([1, 2]), (2,)).tolist() == [True, True]
        with pytest.raises(ValueError, match="shape"):
            bool_mask("m", torch.tensor([1, 0]), (3,))


def test_trusted_inputs_skips_only_value_checks() -> None:
    import torch

    from aem.checks import checking_values, require_finite, require_tensor, trusted_inputs

    bad = torch.tensor([1.0, float("nan")])
    with pytest.raises(ValueError, match=r"x must be finite, got nan at index \(1,\)"):
        require_finite("x", bad)
    require_finite("x", bad, where=torch.tensor([True, False]))
    with trusted_inputs():
        assert not checking_values()
        require_finite("x", bad)
        with pytest.raises(ValueError, match=r"x must be a torch\.Tensor"):
            require_tensor("x", [1.0])
    assert checking_values()


def test_compute_dtype_is_fp64_only_for_fp64_inputs() -> None:
    import torch

    from aem.checks import compute_dtype

    assert compute_dtype(torch.bfloat16) == compute_dtype(torch.zeros(1, dtype=torch.half))
    assert compute_dtype(torch.zeros(1), torch.float64) == torch.float64
    assert compute_dtype(torch.zeros(1, dtype=torch.long)) == torch.float32
