"""Token rows for the model and response spans for the algorithms.

A batch of turns reaches the model in one of two layouts: one row per turn (its prompt, then its
response) or one row per trajectory (turn after turn: what the turn added, then its response;
rLLM's layout, where a context shared by the turns is encoded once). Either way the per-token
outputs of a pass over the rows (log-probs, entropies, values) are gathered into one row per
*span* (a turn's response), ``[S, R]``, so advantages, AEM and the losses see the same per-turn
tensors whatever the layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class PackedBatch:
    """Rows ``[N, L]`` (``input_ids``, ``attention_mask``, ``response_mask`` over every span) and
    the spans: span ``s`` is ``span_length[s]`` tokens of row ``span_row[s]`` from column
    ``span_start[s]``. Span tensors are ``[S, span_width]`` (the longest span of the batch the
    rows were packed in, kept by :meth:`select_rows`)."""

    input_ids: Tensor
    attention_mask: Tensor
    response_mask: Tensor
    span_row: Tensor
    span_start: Tensor
    span_length: Tensor
    span_width: int

    @property
    def num_spans(self) -> int:
        return int(self.span_row.shape[0])

    def span_mask(self) -> Tensor:
        """Bool ``[S, span_width]``: True on the first ``span_length[s]`` columns."""
        return torch.arange(self.span_width)[None, :] < self.span_length[:, None]

    def to_spans(self, values: Tensor) -> Tensor:
        """``values [N, L]`` (a pass over the rows) gathered to ``[S, span_width]``, 0 off the
        spans. Differentiable."""
        if values.shape != self.input_ids.shape:
            raise ValueError(
                f"values must have the rows' shape {tuple(self.input_ids.shape)}, "
                f"got {tuple(values.shape)}"
            )
        mask = self.span_mask()
        columns = (self.span_start[:, None] + torch.arange(mask.shape[1])[None, :]).clamp(
            max=values.shape[1] - 1
        )
        gathered = values[self.span_row[:, None], columns]
        return torch.where(mask, gathered, torch.zeros((), dtype=values.dtype))

    def select_rows(self, rows: Tensor) -> tuple[PackedBatch, Tensor]:
        """The rows ``rows`` (in that order) and the ids of their spans in this batch."""
        position = torch.full((self.input_ids.shape[0],), -1, dtype=torch.long)
        position[rows] = torch.arange(rows.shape[0])
        new_row = position[self.span_row]
        spans = (new_row >= 0).nonzero().flatten()
        spans = spans[torch.argsort(new_row[spans], stable=True)]
        packed = PackedBatch(
            input_ids=self.input_ids[rows],
            attention_mask=self.attention_mask[rows],
            response_mask=self.response_mask[rows],
            span_row=new_row[spans],
            span_start=self.span_start[spans],
            span_length=self.span_length[spans],
            span_width=self.span_width,
        )
        return packed, spans

    def cropped(self) -> PackedBatch:
        """The same rows without the columns no row attends (leading and trailing padding)."""
        attended = self.attention_mask.bool().any(dim=0).nonzero().flatten()
        if attended.numel() == 0:
            return self
        low, high = int(attended.min()), int(attended.max()) + 1
        return PackedBatch(
            input_ids=self.input_ids[:, low:high],
            attention_mask=self.attention_mask[:, low:high],
            response_mask=self.response_mask[:, low:high],
            span_row=self.span_row,
            span_start=self.span_start - low,
            span_length=self.span_length,
            span_width=self.span_width,
        )

    def length_groups(self, max_tokens: int) -> list[Tensor]:
        """Row ids in groups of similar length (sorted by attended tokens), each as many rows
        as fit in ``max_tokens`` padded tokens once cropped (at least one row per group)."""
        mask = self.attention_mask.bool()
        columns = torch.arange(mask.shape[1])
        first = torch.where(mask, columns, mask.shape[1]).amin(dim=1)
        last = torch.where(mask, columns, -1).amax(dim=1)
        groups: list[list[int]] = []
        low = high = 0
        for row in torch.argsort(mask.sum(dim=1), stable=True).tolist():
            row_low, row_high = int(first[row]), int(last[row]) + 1
            if groups:
                new_low, new_high = min(low, row_low), max(high, row_high)
                if (len(groups[-1]) + 1) * (new_high - new_low) <= max_tokens:
                    groups[-1].append(row)
                    low, high = new_low, new_high
                    continue
            groups.append([row])
            low, high = row_low, row_high
        return [torch.tensor(group, dtype=torch.long) for group in groups]


def _check_pairs(prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]]):
    if len(prompt_ids) != len(response_ids):
        raise ValueError(
            f"prompt_ids and response_ids must have the same length, got "
            f"{len(prompt_ids)} and {len(response_ids)}"
        )


def pack_turns(
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    pad_id: int,
    right_padded: bool = False,
) -> PackedBatch:
    """One row per turn. By default the sampler's layout: prompts left-padded to the longest
    prompt ``P``, responses right-padded after it, span ``s`` is row ``s`` from column ``P``.
    ``right_padded``: each row is its prompt then its response from column 0, padding only at
    the end (the model can then run without an attention mask,
    :func:`aem.policy.batching.body_inputs`); span ``s`` starts at ``len(prompt_ids[s])``."""
    _check_pairs(prompt_ids, response_ids)
    rows = len(prompt_ids)
    P = max((len(p) for p in prompt_ids), default=0)
    R = max((len(r) for r in response_ids), default=0)
    width = max((len(p) + len(r) for p, r in zip(prompt_ids, response_ids, strict=True)), default=0)
    width = width if right_padded else P + R
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((rows, width), dtype=torch.long)
    response_mask = torch.zeros((rows, width), dtype=torch.bool)
    starts = []
    for row, (prompt, response) in enumerate(zip(prompt_ids, response_ids, strict=True)):
        begin = 0 if right_padded else P - len(prompt)
        start, end = begin + len(prompt), begin + len(prompt) + len(response)
        input_ids[row, begin:end] = torch.as_tensor([*prompt, *response], dtype=torch.long)
        attention_mask[row, begin:end] = 1
        response_mask[row, start:end] = True
        starts.append(start)
    return PackedBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        response_mask=response_mask,
        span_row=torch.arange(rows),
        span_start=torch.tensor(starts, dtype=torch.long),
        span_length=torch.tensor([len(r) for r in response_ids], dtype=torch.long),
        span_width=R,
    )


def pack_trajectories(
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    traj_id: Sequence[int],
    pad_id: int,
) -> PackedBatch:
    """One row per trajectory: turn ``k`` of a trajectory (rows of the same ``traj_id``, which
    must be contiguous and in turn order) adds ``prompt_ids[k]`` then ``response_ids[k]``; rows
    are right-padded. Span ``s`` is turn ``s``'s response inside its trajectory's row."""
    _check_pairs(prompt_ids, response_ids)
    if len(traj_id) != len(prompt_ids):
        raise ValueError(f"traj_id must have {len(prompt_ids)} entries, got {len(traj_id)}")
    sequences: list[list[int]] = []
    span_row, span_start = [], []
    seen: set[int] = set()
    previous = None
    for prompt, response, traj in zip(prompt_ids, response_ids, traj_id, strict=True):
        traj = int(traj)
        if traj != previous:
            if traj in seen:
                raise ValueError(f"the turns of trajectory {traj} must be contiguous")
            seen.add(traj)
            sequences.append([])
            previous = traj
        sequence = sequences[-1]
        sequence.extend(int(t) for t in prompt)
        span_row.append(len(sequences) - 1)
        span_start.append(len(sequence))
        sequence.extend(int(t) for t in response)
    length = max((len(s) for s in sequences), default=0)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.as_tensor(sequence, dtype=torch.long)
        attention_mask[row, : len(sequence)] = 1
    lengths = torch.tensor([len(r) for r in response_ids], dtype=torch.long)
    packed = PackedBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        response_mask=torch.zeros((len(sequences), length), dtype=torch.bool),
        span_row=torch.tensor(span_row, dtype=torch.long),
        span_start=torch.tensor(span_start, dtype=torch.long),
        span_length=lengths,
        span_width=max(lengths.tolist(), default=0),
    )
    for row, start, count in zip(span_row, span_start, lengths.tolist(), strict=True):
        packed.response_mask[row, start : start + count] = True
    return packed
