"""The span batch: one container from the rollout to the loss.

A :class:`SpanBatch` holds the **model rows** (``input_ids``, ``attention_mask``,
``response_mask``, each ``[N, L]``, right-padded), the **span index** (span ``s`` is
``span_length[s]`` tokens of row ``span_row[s]`` from column ``span_start[s]``: one span per turn,
the turn's response) and **per-span values** by name, read and written as ``batch[name]``:
``[S]`` or ``[S, W]`` tensors (``W = span_width``, the longest span of the batch the rows were
built in) or lists of ``S`` items.

The rollout fills the span metadata (:data:`ROLLOUT_FIELDS`); each trainer phase then adds its
own fields (:data:`PHASE_FIELDS`). ``select``, ``concat`` and the mini- and micro-batches are
written once, here, for every field. The two layouts differ only in :func:`SpanBatch.from_turns`:
one row per turn (verl-agent) or one growing row per trajectory (rLLM); every phase after it sees
spans.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

LAYOUTS: tuple[str, ...] = ("turn", "trajectory")

ROLLOUT_FIELDS: dict[str, str] = {
    "group": "int64: task group (all trajectories of one task seed)",
    "traj": "int64: trajectory (environment index in the pool)",
    "turn": "int64: turn number within its trajectory, from 0",
    "anchor": "int64: the (group, observation) the turn acted from (GiGPO's anchor state)",
    "reward": "float32: the environment's reward minus the invalid-action penalty",
    "env_reward": "float32: the environment's reward on the turn",
    "valid": "bool: well formed and accepted by the engine",
    "episode_return": "float64: the trajectory's total environment reward",
    "won": "bool: the trajectory reached its goal",
    "context_full": "bool: the trajectory ended for lack of room in its sequence",
    "seed": "int64: the task seed",
    "task_type": "list[str]: the trajectory's task family",
    "error": "list[str | None]: the error its environment raised (which ended it)",
    "prompt_text": "list[str]: the text the turn added before its response",
    "response_text": "list[str]: the decoded response",
}
"""Per-span values :func:`aem.rollout.rollout` fills. Trajectory-level values repeat on every
span of the trajectory."""

PHASE_FIELDS: dict[str, str] = {
    "old_log_probs": "[S, W] log-probs of the sampled tokens under the policy (scoring)",
    "entropy": "[S, W] token entropy (Eq. 5) from the same pass (scoring)",
    "ref_log_probs": "[S, W] log-probs under the KL reference (reference)",
    "values": "[S, W] critic values (values)",
    "advantages": "[S, W] advantages: the estimator's, then modulated (advantages, modulation)",
    "scores": "[S] the score the group estimators compare (advantages)",
    "returns": "[S, W] regression targets of the critic (advantages)",
    "span_advantage": "[S] the estimator's mean advantage over the span (advantages)",
    "span_entropy": "[S] response entropy h (Eq. 13) (modulation)",
    "weight": "[S] modulation weight w (Eq. 15; 1 without modulation) (modulation)",
    "loss_mask": "[S, W] bool: span tokens that enter the loss (analysis)",
}
"""Per-span values the trainer's phases (:mod:`aem.trainer.phases`) add, by the phase that adds
them."""

ID_FIELDS: tuple[str, ...] = ("group", "traj", "anchor")
"""Ids that :meth:`SpanBatch.concat` shifts so that they stay unique across the joined batches."""

SpanValue = Tensor | list[Any]


@dataclass(frozen=True)
class TrajectoryRecord:
    """Summary of one trajectory. ``episode_return`` sums the environment rewards (no
    penalties); ``error`` is the environment's error message if it crashed (the trajectory then
    ended there, as failed); ``context_full``: it ended because its sequence had no room for
    another turn (trajectory layout)."""

    group_id: int
    traj_id: int
    seed: int
    task_type: str
    won: bool
    episode_return: float
    length: int
    invalid_turns: int
    error: str | None
    context_full: bool = False


@dataclass
class SpanBatch:
    """Model rows, the span index and named per-span values (see the module docstring)."""

    input_ids: Tensor
    attention_mask: Tensor
    response_mask: Tensor
    span_row: Tensor
    span_start: Tensor
    span_length: Tensor
    span_width: int
    layout: str = "turn"
    pad_id: int = 0
    spans: dict[str, SpanValue] = field(default_factory=dict)

    # ------------------------------------------------------------------ building

    @classmethod
    def from_turns(
        cls,
        prompt_ids: Sequence[Sequence[int]],
        response_ids: Sequence[Sequence[int]],
        traj: Sequence[int],
        layout: str,
        pad_id: int,
        spans: Mapping[str, SpanValue] | None = None,
    ) -> SpanBatch:
        """The batch of turns ``k`` (turn ``k`` adds ``prompt_ids[k]`` then ``response_ids[k]``,
        its span): in the ``"turn"`` layout each turn is a row of its own; in the
        ``"trajectory"`` layout the turns of one trajectory (equal ``traj``, contiguous and in
        turn order) extend one row. Rows are right-padded with ``pad_id``; ``spans`` are the
        per-span values."""
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
        if not len(prompt_ids) == len(response_ids) == len(traj):
            raise ValueError(
                "prompt_ids, response_ids and traj must have the same length, got "
                f"{len(prompt_ids)}, {len(response_ids)} and {len(traj)}"
            )
        sequences: list[list[int]] = []
        span_row, span_start = [], []
        seen: set[int] = set()
        previous = None
        for prompt, response, owner in zip(prompt_ids, response_ids, traj, strict=True):
            owner = int(owner)
            if layout == "turn" or owner != previous:
                if layout == "trajectory" and owner in seen:
                    raise ValueError(f"the turns of trajectory {owner} must be contiguous")
                seen.add(owner)
                sequences.append([])
                previous = owner
            sequence = sequences[-1]
            sequence.extend(prompt)
            span_row.append(len(sequences) - 1)
            span_start.append(len(sequence))
            sequence.extend(response)
        width = max((len(s) for s in sequences), default=0)
        input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        response_mask = torch.zeros((len(sequences), width), dtype=torch.bool)
        for row, sequence in enumerate(sequences):
            input_ids[row, : len(sequence)] = torch.as_tensor(sequence, dtype=torch.long)
            attention_mask[row, : len(sequence)] = 1
        lengths = [len(r) for r in response_ids]
        for row, start, count in zip(span_row, span_start, lengths, strict=True):
            response_mask[row, start : start + count] = True
        batch = cls(
            input_ids=input_ids,
            attention_mask=attention_mask,
            response_mask=response_mask,
            span_row=torch.tensor(span_row, dtype=torch.long),
            span_start=torch.tensor(span_start, dtype=torch.long),
            span_length=torch.tensor(lengths, dtype=torch.long),
            span_width=max(lengths, default=0),
            layout=layout,
            pad_id=pad_id,
        )
        for name, value in (spans or {}).items():
            batch[name] = value
        return batch

    # ------------------------------------------------------------------ per-span values

    @property
    def num_rows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_spans(self) -> int:
        return int(self.span_row.shape[0])

    def __len__(self) -> int:
        return self.num_spans

    def __getitem__(self, name: str) -> Any:
        if name not in self.spans:
            raise KeyError(f"the batch has no span field {name!r}; it has {sorted(self.spans)}")
        return self.spans[name]

    def __setitem__(self, name: str, value: SpanValue) -> None:
        """Set a per-span value: ``[S]`` or ``[S, span_width]`` tensor, or a list of S items."""
        count = len(value) if isinstance(value, list) else None
        if isinstance(value, Tensor):
            count = int(value.shape[0]) if value.dim() else None
            if value.dim() > 2 or (value.dim() == 2 and value.shape[1] != self.span_width):
                count = None
        if count != self.num_spans:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"span field {name!r} must be [{self.num_spans}] or "
                f"[{self.num_spans}, {self.span_width}] (or a list of {self.num_spans}), "
                f"got {shape}" + (f" of length {len(value)}" if isinstance(value, list) else "")
            )
        self.spans[name] = value

    def __contains__(self, name: object) -> bool:
        return name in self.spans

    def get(self, name: str, default: Any = None) -> Any:
        return self.spans.get(name, default)

    def keep(self, *names: str) -> SpanBatch:
        """This batch with only the span fields ``names`` it has (the rows are shared)."""
        kept = {name: self.spans[name] for name in names if name in self.spans}
        return replace(self, spans=kept)

    def span_mask(self) -> Tensor:
        """Bool ``[S, span_width]``: True on the first ``span_length[s]`` columns (the span's
        tokens)."""
        return torch.arange(self.span_width)[None, :] < self.span_length[:, None]

    def to_spans(self, values: Tensor) -> Tensor:
        """``values [N, L]`` (one pass over the rows) gathered to ``[S, span_width]``, 0 off the
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

    def turn_tokens(self) -> list[tuple[list[int], list[int]]]:
        """Per span, the tokens its turn added before the response and the response tokens."""
        ends: dict[int, int] = {}
        out = []
        for row, start, length in zip(
            self.span_row.tolist(), self.span_start.tolist(), self.span_length.tolist(), strict=True
        ):
            ids = self.input_ids[row]
            out.append(
                (ids[ends.get(row, 0) : start].tolist(), ids[start : start + length].tolist())
            )
            ends[row] = start + length
        return out

    def trajectories(self) -> list[TrajectoryRecord]:
        """One record per trajectory, in the order of their first span."""
        first: dict[int, int] = {}
        lengths: dict[int, int] = {}
        invalid: dict[int, int] = {}
        pairs = zip(self["traj"].tolist(), self["valid"].tolist(), strict=True)
        for s, (traj, valid) in enumerate(pairs):
            first.setdefault(traj, s)
            lengths[traj] = lengths.get(traj, 0) + 1
            invalid[traj] = invalid.get(traj, 0) + int(not valid)
        return [
            TrajectoryRecord(
                group_id=int(self["group"][s]),
                traj_id=traj,
                seed=int(self["seed"][s]),
                task_type=self["task_type"][s],
                won=bool(self["won"][s]),
                episode_return=float(self["episode_return"][s]),
                length=lengths[traj],
                invalid_turns=invalid[traj],
                error=self["error"][s],
                context_full=bool(self["context_full"][s]),
            )
            for traj, s in first.items()
        ]

    # ------------------------------------------------------------------ selecting and joining

    def select(self, rows: Tensor) -> SpanBatch:
        """The rows ``rows`` (in that order) with their spans; widths are kept."""
        return self._select(rows)[0]

    def _select(self, rows: Tensor) -> tuple[SpanBatch, Tensor]:
        """:meth:`select` and the ids of the selected spans in this batch, in their new order."""
        position = torch.full((self.num_rows,), -1, dtype=torch.long)
        position[rows] = torch.arange(rows.shape[0])
        new_row = position[self.span_row]
        spans = (new_row >= 0).nonzero().flatten()
        spans = spans[torch.argsort(new_row[spans], stable=True)]
        selected = SpanBatch(
            input_ids=self.input_ids[rows],
            attention_mask=self.attention_mask[rows],
            response_mask=self.response_mask[rows],
            span_row=new_row[spans],
            span_start=self.span_start[spans],
            span_length=self.span_length[spans],
            span_width=self.span_width,
            layout=self.layout,
            pad_id=self.pad_id,
            spans={name: _take(value, spans) for name, value in self.spans.items()},
        )
        return selected, spans

    def select_groups(self, groups: Sequence[int]) -> SpanBatch:
        """The rows of the spans of ``groups``, :meth:`cropped` to the selection (rows and
        spans)."""
        wanted = torch.tensor(sorted(set(groups)), dtype=torch.long)
        row_group = torch.full((self.num_rows,), -1, dtype=torch.long)
        row_group[self.span_row] = self["group"]
        rows = torch.isin(row_group, wanted).nonzero().flatten()
        return self.select(rows).cropped(spans=True)

    def cropped(self, spans: bool = False) -> SpanBatch:
        """The same rows without the columns no row attends; with ``spans`` also the span width
        cut to the longest span (``[S, W]`` fields cut with it)."""
        attended = self.attention_mask.bool().any(dim=0).nonzero().flatten()
        low, high = (
            (0, 0) if attended.numel() == 0 else (int(attended.min()), int(attended.max()) + 1)
        )
        width = int(self.span_length.max()) if spans and self.num_spans else self.span_width
        if attended.numel() == 0 and width == self.span_width:
            return self
        return SpanBatch(
            input_ids=self.input_ids[:, low:high],
            attention_mask=self.attention_mask[:, low:high],
            response_mask=self.response_mask[:, low:high],
            span_row=self.span_row,
            span_start=self.span_start - low,
            span_length=self.span_length,
            span_width=width,
            layout=self.layout,
            pad_id=self.pad_id,
            spans={name: _cut(value, self.span_width, width) for name, value in self.spans.items()},
        )

    @classmethod
    def concat(cls, batches: Sequence[SpanBatch]) -> SpanBatch:
        """The rows and spans of ``batches`` (one layout) in order, padded to the widest; the ids
        of :data:`ID_FIELDS` are shifted so that they stay unique."""
        layouts = {batch.layout for batch in batches}
        if len(layouts) != 1:
            raise ValueError(f"batches must share one layout, got {sorted(layouts)}")
        pad_id = batches[0].pad_id
        names = [set(batch.spans) for batch in batches]
        if any(n != names[0] for n in names):
            raise ValueError(f"batches must hold the same span fields, got {names}")
        length = max(batch.input_ids.shape[1] for batch in batches)
        width = max(batch.span_width for batch in batches)
        offsets = dict.fromkeys(ID_FIELDS, 0)
        rows = 0
        parts: dict[str, list[Any]] = {name: [] for name in ("ids", "attention", "response")}
        parts.update(span_row=[], span_start=[], span_length=[])
        values: dict[str, list[SpanValue]] = {name: [] for name in names[0]}
        for batch in batches:
            parts["ids"].append(_pad_columns(batch.input_ids, length, pad_id))
            parts["attention"].append(_pad_columns(batch.attention_mask, length, 0))
            parts["response"].append(_pad_columns(batch.response_mask, length, False))
            parts["span_row"].append(batch.span_row + rows)
            parts["span_start"].append(batch.span_start)
            parts["span_length"].append(batch.span_length)
            rows += batch.num_rows
            for name, value in batch.spans.items():
                if name in offsets:
                    value = value + offsets[name]
                values[name].append(_cut(value, batch.span_width, width))
            for name in offsets:
                if name in batch.spans and batch[name].numel():
                    offsets[name] += int(batch[name].max()) + 1
        return cls(
            input_ids=torch.cat(parts["ids"]),
            attention_mask=torch.cat(parts["attention"]),
            response_mask=torch.cat(parts["response"]),
            span_row=torch.cat(parts["span_row"]),
            span_start=torch.cat(parts["span_start"]),
            span_length=torch.cat(parts["span_length"]),
            span_width=width,
            layout=layouts.pop(),
            pad_id=pad_id,
            spans={name: _join(parts_of) for name, parts_of in values.items()},
        )

    # ------------------------------------------------------------------ mini- and micro-batches

    def rows_by_length(self) -> Tensor:
        """Row ids sorted by attended tokens (stable): rows of similar length go together."""
        return torch.argsort(self.attention_mask.sum(dim=1), stable=True)

    def chunks(self, rows_per_chunk: int) -> Iterator[tuple[Tensor, SpanBatch]]:
        """Chunks of ``rows_per_chunk`` rows of similar length (:meth:`rows_by_length`), each
        :meth:`cropped` and without span fields, with the ids of their spans in this batch;
        chunks without an attended token are skipped."""
        order, rows = self.rows_by_length(), self.keep()  # the chunks carry no span fields
        for start in range(0, self.num_rows, rows_per_chunk):
            chunk, spans = rows._select(order[start : start + rows_per_chunk])
            if bool(chunk.attention_mask.any()):
                yield spans, chunk.cropped()

    def minibatches(self, size: int, generator: torch.Generator) -> list[SpanBatch]:
        """Shuffled mini-batches of ``size`` rows (the last may be smaller)."""
        order = torch.randperm(self.num_rows, generator=generator)
        return [self.select(order[start : start + size]) for start in range(0, self.num_rows, size)]

    def microbatches(self, max_tokens: int) -> list[SpanBatch]:
        """This batch as groups of rows of similar length, each :meth:`cropped` to at most
        ``max_tokens`` padded tokens (a group holds at least one row)."""
        mask = self.attention_mask.bool()
        columns = torch.arange(mask.shape[1])
        first = torch.where(mask, columns, mask.shape[1]).amin(dim=1)
        last = torch.where(mask, columns, -1).amax(dim=1)
        groups: list[list[int]] = []
        low = high = 0
        for row in self.rows_by_length().tolist():
            row_low, row_high = int(first[row]), int(last[row]) + 1
            if groups:
                new_low, new_high = min(low, row_low), max(high, row_high)
                if (len(groups[-1]) + 1) * (new_high - new_low) <= max_tokens:
                    groups[-1].append(row)
                    low, high = new_low, new_high
                    continue
            groups.append([row])
            low, high = row_low, row_high
        return [self.select(torch.tensor(g, dtype=torch.long)).cropped() for g in groups]


def _take(value: SpanValue, index: Tensor) -> SpanValue:
    return value[index] if isinstance(value, Tensor) else [value[i] for i in index.tolist()]


def _cut(value: SpanValue, old_width: int, width: int) -> SpanValue:
    """A ``[S, old_width]`` field at ``width`` columns (cut, or padded with zeros)."""
    if not isinstance(value, Tensor) or value.dim() != 2 or width == old_width:
        return value
    if width < old_width:
        return value[:, :width]
    return torch.cat([value, value.new_zeros(value.shape[0], width - old_width)], dim=1)


def _join(values: list[SpanValue]) -> SpanValue:
    if values and isinstance(values[0], Tensor):
        return torch.cat(values)  # type: ignore[arg-type]
    return [item for value in values for item in value]


def _pad_columns(values: Tensor, length: int, fill: int | bool) -> Tensor:
    if values.shape[1] == length:
        return values
    pad = torch.full((values.shape[0], length - values.shape[1]), fill, dtype=values.dtype)
    return torch.cat([values, pad], dim=1)
