"""Multi-turn sampling that keeps each row's KV cache from one turn to the next.

A :class:`DecodingSession` holds a batch of growing sequences (one per trajectory). Each call
feeds only the tokens a row gained since the last call (its new observation), then samples the
row's next response on top of the cached context, so a trajectory's earlier turns are never
encoded again. Rows that finish are dropped from the cache; the others continue.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from aem.policy.rows import left_pad
from aem.policy.sampling import (
    GenerationOutput,
    SamplingConfig,
    check_context_length,
    check_generation_inputs,
    check_token_range,
    decode,
    growing_cache,
)


class DecodingSession:
    """Batched sampling over the turns of ``len(rows)`` sequences with one shared KV cache.

    ``step(rows, new_tokens)`` appends ``new_tokens[k]`` to sequence ``rows[k]`` and samples its
    next response. The first call opens the sequences; every later call names a subset of the
    rows still open, in the same order (a row left out is closed for good and leaves the cache).
    A row's context is everything it was fed and everything it sampled, so the responses are
    distributed exactly as :func:`aem.policy.generate` would sample them from the concatenated
    sequence. Sampling draws from ``generator``; same inputs and generator state, same tokens.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: SamplingConfig,
        generator: torch.Generator,
    ) -> None:
        self.pad_id = check_generation_inputs(model, tokenizer, generator)
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.generator = generator
        self.device = model.get_input_embeddings().weight.device
        self.rows: list[int] = []
        self._lengths: dict[int, int] = {}
        self._pending: list[list[int]] = []  # sampled tokens not yet in the cache, per row
        self._cache: DynamicCache | None = None
        self._mask = torch.zeros((0, 0), dtype=torch.long, device=self.device)

    def length(self, row: int) -> int:
        """Tokens in sequence ``row`` so far (fed and sampled)."""
        if row not in self._lengths:
            raise ValueError(f"row {row!r} is not open in this session, open rows: {self.rows}")
        return self._lengths[row]

    @torch.no_grad()
    def step(self, rows: Sequence[int], new_tokens: Sequence[Sequence[int]]) -> GenerationOutput:
        """Feed ``new_tokens[k]`` (non-empty) to row ``rows[k]`` and sample one response each.

        The output's ``prompt_ids`` / ``prompt_mask`` are the block fed this call (left-padded;
        it starts with each row's last sampled token of the previous call, which the cache
        lacked); responses, log-probs and texts are as in :func:`aem.policy.generate`.
        """
        rows = [int(row) for row in rows]
        if len(rows) != len(new_tokens):
            raise ValueError(
                f"rows and new_tokens must have the same length, got {len(rows)} and "
                f"{len(new_tokens)}"
            )
        if not rows:
            raise ValueError("rows must not be empty")
        if len(set(rows)) != len(rows):
            raise ValueError(f"rows must be distinct, got {rows}")
        for row, tokens in zip(rows, new_tokens, strict=True):
            if len(tokens) == 0:
                raise ValueError(f"new_tokens of row {row} must not be empty")
        if self._cache is None:
            self._open(rows)
        else:
            self._keep(rows)
        feed = [pending + [int(t) for t in tokens] for pending, tokens in zip(
            self._pending, new_tokens, strict=True
        )]  # fmt: skip
        ids, block_mask = left_pad(feed, self.pad_id, self.device)
        check_token_range(self.model, ids)
        for row, tokens in zip(rows, new_tokens, strict=True):
            self._lengths[row] += len(tokens)
            check_context_length(
                self.model,
                self._lengths[row] + self.config.max_new_tokens,
                f"row {row}: context + max_new_tokens",
            )
        attention_mask = torch.cat([self._mask, block_mask], dim=1)
        out = decode(
            self.model,
            self.tokenizer,
            self._cache,
            ids,
            attention_mask,
            self.config,
            self.generator,
        )
        self._mask = out.attention_mask
        last_alive = out.response_mask[:, -1].bool()
        last_token = out.response_ids[:, -1]
        self._pending = [
            [int(last_token[k])] if bool(last_alive[k]) else [] for k in range(len(rows))
        ]
        for k, row in enumerate(rows):
            self._lengths[row] += int(out.response_mask[k].sum())
        return out.output(self.tokenizer, ids, block_mask)

    def _open(self, rows: list[int]) -> None:
        self.rows = rows
        self._lengths = dict.fromkeys(rows, 0)
        self._pending = [[] for _ in rows]
        self._cache = growing_cache(self.model)
        self._mask = torch.zeros((len(rows), 0), dtype=torch.long, device=self.device)

    def _keep(self, rows: list[int]) -> None:
        """Close every open row not in ``rows`` (which must keep the open rows' order)."""
        where = {row: k for k, row in enumerate(self.rows)}
        missing = [row for row in rows if row not in where]
        if missing:
            raise ValueError(f"rows {missing} are not open in this session, open rows: {self.rows}")
        index = [where[row] for row in rows]
        if index != sorted(index):
            raise ValueError(f"rows must keep the session's order {self.rows}, got {rows}")
        if len(index) < len(self.rows):
            assert self._cache is not None
            selected = torch.tensor(index, dtype=torch.long, device=self.device)
            self._cache.batch_select_indices(selected)
            self._mask = self._mask[selected]
            self._pending = [self._pending[k] for k in index]
            for row in set(self.rows) - set(rows):
                del self._lengths[row]
        self.rows = rows
