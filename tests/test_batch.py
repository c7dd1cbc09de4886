"""The span batch: both layouts built by hand, span gathering and row selection against naive
loops, group selection and joining, mini- and micro-batches, chunks, per-span fields."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from aem.batch import SpanBatch


def build(layout: str, **spans: Any) -> SpanBatch:
    # trajectory 4: turns ([1, 2] -> [3]) and ([5] -> [6, 7]); trajectory 9: ([8] -> [9, 10, 11])
    return SpanBatch.from_turns(
        [[1, 2], [5], [8]], [[3], [6, 7], [9, 10, 11]], [4, 4, 9], layout, pad_id=0, spans=spans
    )


def test_trajectory_layout_hand_case() -> None:
    batch = build("trajectory")
    assert batch.input_ids.tolist() == [[1, 2, 3, 5, 6, 7], [8, 9, 10, 11, 0, 0]]
    assert batch.attention_mask.tolist() == [[1] * 6, [1, 1, 1, 1, 0, 0]]
    assert batch.response_mask.long().tolist() == [[0, 0, 1, 0, 1, 1], [0, 1, 1, 1, 0, 0]]
    assert batch.span_row.tolist() == [0, 0, 1]
    assert batch.span_start.tolist() == [2, 4, 1]
    assert batch.span_mask().long().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    values = torch.arange(12.0).reshape(2, 6)
    assert batch.to_spans(values).tolist() == [[2, 0, 0], [4, 5, 0], [7, 8, 9]]
    assert batch.turn_tokens() == [([1, 2], [3]), ([5], [6, 7]), ([8], [9, 10, 11])]


def test_turn_layout_hand_case() -> None:
    batch = build("turn")
    assert batch.input_ids.tolist() == [[1, 2, 3, 0], [5, 6, 7, 0], [8, 9, 10, 11]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 0], [1] * 4]
    assert batch.response_mask.long().tolist() == [[0, 0, 1, 0], [0, 1, 1, 0], [0, 1, 1, 1]]
    assert batch.span_row.tolist() == [0, 1, 2] and batch.span_start.tolist() == [2, 1, 1]
    assert batch.span_width == 3
    values = torch.arange(12.0).reshape(3, 4)
    assert batch.to_spans(values).tolist() == [[2, 0, 0], [5, 6, 0], [9, 10, 11]]
    assert batch.turn_tokens() == build("trajectory").turn_tokens()


def test_bad_turns_and_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="trajectory 1 must be contiguous"):
        SpanBatch.from_turns([[1], [2], [3]], [[1], [2], [3]], [1, 2, 1], "trajectory", 0)
    with pytest.raises(ValueError, match="same length"):
        SpanBatch.from_turns([[1], [2]], [[1], [2]], [1], "trajectory", 0)
    with pytest.raises(ValueError, match="layout must be one of"):
        SpanBatch.from_turns([[1]], [[1]], [1], "rows", 0)
    batch = build("turn")
    with pytest.raises(ValueError, match=r"span field 'x' must be \[3\] or \[3, 3\]"):
        batch["x"] = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="list of 3"):
        batch["x"] = ["a", "b"]
    with pytest.raises(KeyError, match="no span field 'x'"):
        batch["x"]


def random_batch(layout: str, seed: int = 0) -> SpanBatch:
    rng = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 6, (9, 2), generator=rng).tolist()
    traj = [0, 0, 0, 1, 2, 2, 3, 3, 3]
    batch = SpanBatch.from_turns(
        [[7] * p for p, _ in lengths], [[3] * r for _, r in lengths], traj, layout, pad_id=0
    )
    batch["traj"] = torch.tensor(traj)
    batch["group"] = torch.tensor(traj) // 2
    batch["text"] = [f"span {s}" for s in range(9)]
    batch["values"] = torch.where(batch.span_mask(), torch.randn(9, batch.span_width), 0.0)
    return batch


def naive_spans(batch: SpanBatch, values: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(batch.num_spans, batch.span_width)
    for s in range(batch.num_spans):
        row, start = int(batch.span_row[s]), int(batch.span_start[s])
        for k in range(int(batch.span_length[s])):
            out[s, k] = values[row, start + k]
    return out


@pytest.mark.parametrize("layout", ["turn", "trajectory"])
def test_to_spans_and_select_match_naive_loops(layout: str) -> None:
    batch = random_batch(layout)
    values = torch.randn(batch.input_ids.shape, generator=torch.Generator().manual_seed(1))
    assert torch.equal(batch.to_spans(values), naive_spans(batch, values))
    rows = torch.tensor([2, 0]) if layout == "trajectory" else torch.tensor([6, 1, 4])
    sub, spans = batch._select(rows)
    expected = [s for r in rows.tolist() for s in range(9) if int(batch.span_row[s]) == r]
    assert spans.tolist() == expected
    assert torch.equal(sub.to_spans(values[rows]), batch.to_spans(values)[spans])
    assert torch.equal(sub["values"], batch["values"][spans])
    assert sub["text"] == [f"span {s}" for s in expected]
    assert sub.span_width == batch.span_width


@pytest.mark.parametrize("layout", ["turn", "trajectory"])
def test_select_groups_and_concat_equal_a_fresh_build(layout: str) -> None:
    batch = random_batch(layout)
    kept = batch.select_groups([1])  # trajectories 2 and 3
    turns = [s for s in range(9) if int(batch["group"][s]) == 1]
    tokens = [batch.turn_tokens()[s] for s in turns]
    fresh = SpanBatch.from_turns(
        [p for p, _ in tokens], [r for _, r in tokens], [2, 2, 3, 3, 3], layout, pad_id=0
    )
    for name in ("input_ids", "attention_mask", "response_mask", "span_row", "span_start"):
        assert torch.equal(getattr(kept, name), getattr(fresh, name)), name
    assert kept.span_width == fresh.span_width
    joined = SpanBatch.concat([kept, batch])
    assert joined.num_spans == kept.num_spans + 9 and joined.num_rows == kept.num_rows + 9 - (
        0 if layout == "turn" else 5
    )
    assert joined["traj"].tolist() == [2, 2, 3, 3, 3] + [t + 4 for t in batch["traj"].tolist()]
    assert joined["group"].tolist()[5:] == [g + 2 for g in batch["group"].tolist()]
    assert joined["text"] == kept["text"] + batch["text"]
    values = torch.randn(joined.input_ids.shape)
    tail = values[kept.num_rows :, : batch.input_ids.shape[1]]
    assert torch.equal(joined.to_spans(values)[5:], batch.to_spans(tail))
    other = batch.select_groups([0])
    other.layout = "turn" if layout == "trajectory" else "trajectory"
    with pytest.raises(ValueError, match="one layout"):
        SpanBatch.concat([other, batch])


def test_minibatches_microbatches_and_chunks_cover_every_row_once() -> None:
    batch = random_batch("trajectory", seed=5)
    minis = batch.minibatches(2, torch.Generator().manual_seed(0))
    assert sorted(t for m in minis for t in m["traj"].tolist()) == sorted(batch["traj"].tolist())
    values = batch.to_spans(batch.input_ids.float())
    for budget in (1, 12, 20, 10**6):
        micros = batch.microbatches(budget)
        assert sum(m.num_rows for m in micros) == batch.num_rows
        for micro in micros:
            assert micro.num_rows == 1 or micro.input_ids.numel() <= budget
            assert bool(micro.attention_mask.any(dim=0).all())  # cropped
            spans = [int(text.split()[1]) for text in micro["text"]]
            assert torch.equal(micro.to_spans(micro.input_ids.float()), values[spans])
    assert len(batch.microbatches(10**6)) == 1
    seen = []
    for spans, chunk in batch.chunks(3):
        assert chunk.num_rows <= 3
        assert torch.equal(chunk.to_spans(chunk.input_ids.float()), values[spans])
        seen += spans.tolist()
    assert sorted(seen) == list(range(9))


def test_cropped_spans_cut_the_span_fields() -> None:
    batch = random_batch("turn")
    short = batch.select(torch.tensor([int(batch.span_length.argmin())]))
    cut = short.cropped(spans=True)
    assert cut.span_width == int(short.span_length.max()) < batch.span_width
    assert torch.equal(cut["values"], short["values"][:, : cut.span_width])
    assert cut.input_ids.shape[1] == int(short.attention_mask.sum())
