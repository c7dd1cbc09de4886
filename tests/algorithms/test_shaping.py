from __future__ import annotations

import pytest
import torch

from aem.algorithms import overlong_penalty


def dapo_reference(length: int, max_length: int, buffer: float, factor: float) -> float:
    """DAPO's piecewise definition, written out case by case."""
    expected_max = max_length - buffer
    if length <= expected_max:
        return 0.0
    if length <= max_length:
        return factor * (expected_max - length) / buffer
    return -factor


@pytest.mark.parametrize("max_length,buffer,factor", [(24, 6, 1.0), (20, 4.5, 0.5), (8, 8, 2.0)])
def test_matches_the_piecewise_definition(max_length: int, buffer: float, factor: float) -> None:
    lengths = torch.arange(0, max_length + 4)
    got = overlong_penalty(lengths, max_length, buffer, factor)
    want = [dapo_reference(int(n), max_length, buffer, factor) for n in lengths]
    assert got.dtype == torch.float32
    assert got.tolist() == pytest.approx(want, abs=1e-6)


def test_bad_arguments_name_the_field() -> None:
    lengths = torch.tensor([3, 5])
    with pytest.raises(ValueError, match="lengths"):
        overlong_penalty(lengths[None], 8, 2)
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(lengths, 8, 0)
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(lengths, 8, 9)
    with pytest.raises(ValueError, match="max_length"):
        overlong_penalty(lengths, 0, 1)
    with pytest.raises(ValueError, match="factor"):
        overlong_penalty(lengths, 8, 2, factor=-1.0)
