"""spans_from_mask: one span per run of a row's response mask, against a plain loop."""

from __future__ import annotations

import pytest
import torch

import aem
from aem.algorithms import spans_from_mask


def runs_by_loop(mask: torch.Tensor) -> list[tuple[int, int, int]]:
    """(row, start, length) of every maximal run of True, row by row, left to right."""
    runs = []
    for row, values in enumerate(mask.tolist()):
        start = None
        for column, value in enumerate([*values, False]):
            if value and start is None:
                start = column
            elif not value and start is not None:
                runs.append((row, start, column - start))
                start = None
    return runs


@pytest.mark.parametrize("seed", range(5))
def test_spans_are_the_runs_of_the_mask(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(7, 11, generator=generator) < 0.6
    mask[2] = False  # a row with no response token has no span
    mask[3] = True  # one contiguous response: one span
    found = spans_from_mask(mask.long())  # 0/1 masks work like bool ones

    expected = torch.full(mask.shape, -1, dtype=torch.int64)
    runs = runs_by_loop(mask)
    for span, (row, start, length) in enumerate(runs):
        expected[row, start : start + length] = span
    assert torch.equal(found.span_index, expected)
    assert found.span_row.tolist() == [row for row, _, _ in runs]
    assert found.num_spans == len(runs)
    assert 2 not in found.span_row.tolist()
    assert found.span_row.tolist().count(3) == 1


def test_per_turn_weights_differ_from_per_row_weights() -> None:
    """The issue's example: three rows of two turns in one group, turn entropies 0.1 / 2.0,
    1.0 / 1.0, 0.5 / 0.5. Per turn, the h = 0.1 turn gets the largest weight; per row its row
    (mean 1.05) gets the smallest."""
    turn_entropy = [(0.1, 2.0), (1.0, 1.0), (0.5, 0.5)]
    mask = torch.tensor([[1, 1, 0, 1, 1]] * 3, dtype=torch.bool)
    entropy = torch.tensor([[a, a, 9.0, b, b] for a, b in turn_entropy])
    advantages = torch.ones(3, 5)
    spans = spans_from_mask(mask)
    group = torch.zeros(spans.num_spans, dtype=torch.int64)

    per_turn, _ = aem.modulate_advantages(
        advantages, entropy, mask, group, span_index=spans.span_index
    )
    per_row, _ = aem.modulate_advantages(advantages, entropy, mask, torch.zeros(3).long())
    assert per_turn[0, 0] == per_turn.max() and per_turn[0, 0] > 1.4
    assert per_row[0, 0] == per_row[mask].min() and per_row[0, 0] < 0.7
    assert per_turn[0, 0] != per_turn[0, 3]  # two turns of one row, two weights


def test_rejects_a_mask_that_is_not_2d() -> None:
    with pytest.raises(ValueError, match="response_mask"):
        spans_from_mask(torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="response_mask"):
        spans_from_mask([[1, 0]])
