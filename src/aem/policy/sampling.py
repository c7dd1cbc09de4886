"""Batched sampling with a KV cache, drawing every token from a caller-owned ``torch.Generator``.

The loop runs the model's own forward with a ``DynamicCache``: one prefill over the left-padded
prompts, then one step per new token. Rows that emit eos or a stop token (e.g. ``</action>``
when the tokenizer has it as one token), or whose response text comes to contain a stop string
(``</action>`` split into several tokens by a pretrained vocabulary), keep that last token and
then only receive pad ids with response mask 0.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicLayer

from aem.checks import require_int_at_least, require_non_negative
from aem.policy.precision import autocast_context
from aem.policy.rows import left_pad, position_ids_from_mask


@dataclass(frozen=True)
class SamplingConfig:
    """How to draw responses.

    ``temperature == 0`` means greedy (argmax) decoding. ``top_p`` keeps the smallest set of
    most likely tokens whose probability reaches ``top_p`` (nucleus sampling). ``stop_token_ids``
    end a row in addition to eos (when ``stop_at_eos``); so does a token after which the decoded
    response contains one of ``stop_strings`` (however the tokenizer split it; the row keeps
    that token, which may carry text past the stop string). ``bf16`` runs the model under
    CPU/GPU bfloat16 autocast; the sampling math itself is fp32.
    """

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    stop_token_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()
    stop_at_eos: bool = True
    bf16: bool = False

    def __post_init__(self) -> None:
        require_int_at_least("max_new_tokens", self.max_new_tokens, 1)
        require_non_negative("temperature", self.temperature)
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        for token in self.stop_token_ids:
            if isinstance(token, bool) or not isinstance(token, int) or token < 0:
                raise ValueError(f"stop_token_ids must be non-negative ints, got {token!r}")
        if isinstance(self.stop_strings, str):
            raise ValueError(f"stop_strings must be a tuple of strings, got {self.stop_strings!r}")
        for text in self.stop_strings:
            if not isinstance(text, str) or not text:
                raise ValueError(f"stop_strings must be non-empty strings, got {text!r}")


@dataclass
class GenerationOutput:
    """Prompts (left-padded) and sampled responses (right-padded), row-aligned.

    ``log_probs[b, r]`` is the fp32 log-probability of ``response_ids[b, r]`` under the
    temperature-scaled full distribution ``softmax(logits / temperature)`` (before top-p
    truncation; temperature 1 in greedy mode), i.e. what :func:`aem.policy.score` recomputes
    with the same temperature. It is 0 where ``response_mask`` is 0. ``stopped[b]`` is True if
    the row ended on eos, a stop token or a stop string, False if it hit ``max_new_tokens``.
    """

    prompt_ids: Tensor
    prompt_mask: Tensor
    response_ids: Tensor
    response_mask: Tensor
    log_probs: Tensor
    stopped: Tensor
    texts: list[str] = field(default_factory=list)

    def sequences(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(input_ids, attention_mask, response_mask)`` of the full rows ``[B, P + R]``, the
        inputs of :func:`aem.policy.score`."""
        input_ids = torch.cat([self.prompt_ids, self.response_ids], dim=1)
        attention_mask = torch.cat([self.prompt_mask, self.response_mask], dim=1)
        response_mask = torch.cat([torch.zeros_like(self.prompt_mask), self.response_mask], dim=1)
        return input_ids, attention_mask, response_mask


@contextlib.contextmanager
def _eval_mode(model: PreTrainedModel) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def nucleus_filter(logits: Tensor, top_p: float) -> Tensor:
    """Set to ``-inf`` every logit outside the top-p nucleus of ``softmax(logits)`` (last dim).

    The nucleus is the shortest prefix of tokens sorted by probability whose mass reaches
    ``top_p``; the most likely token is always kept.
    """
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    sorted_probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    drop_sorted = mass_before >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next(
    logits: Tensor, config: SamplingConfig, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Draw one token per row from fp32 ``logits [B, V]``; return ``(tokens [B], log_probs [B])``
    (log-probs as documented on :class:`GenerationOutput`)."""
    if config.temperature == 0.0:
        tokens = logits.argmax(dim=-1)
        log_probs = torch.log_softmax(logits, dim=-1)
    else:
        scaled = logits / config.temperature
        log_probs = torch.log_softmax(scaled, dim=-1)
        probs = torch.softmax(nucleus_filter(scaled, config.top_p), dim=-1)
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return tokens, log_probs.gather(-1, tokens[:, None]).squeeze(-1)


def _prompt_token_lists(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str] | Sequence[Sequence[int]]
) -> list[list[int]]:
    if len(prompts) == 0:
        raise ValueError("prompts must not be empty")
    if all(isinstance(prompt, str) for prompt in prompts):
        return [list(ids) for ids in tokenizer(list(prompts))["input_ids"]]
    if any(isinstance(prompt, str) for prompt in prompts):
        raise ValueError("prompts must be all strings or all token-id lists, not a mix")
    return [[int(token) for token in prompt] for prompt in prompts]


def stop_string_hits(
    tokenizer: PreTrainedTokenizerBase,
    responses: Tensor,
    rows: Tensor,
    stop_strings: Sequence[str],
) -> Tensor:
    """Bool ``[B]``: True for each row in ``rows`` (bool ``[B]``) whose last ``max_bytes``
    response tokens (``responses [B, R]``) decode to a text containing a stop string, where
    ``max_bytes`` is the longest stop string's UTF-8 length.

    The sampler checks after every token, so a hit is a stop string completed by the newest
    token: each token holds at least one byte, so the window covers any such string, and one
    completed earlier would already have ended the row.
    """
    hits = torch.zeros(responses.shape[0], dtype=torch.bool, device=responses.device)
    if not stop_strings:
        return hits
    window = max(len(text.encode("utf-8")) for text in stop_strings)
    indices = rows.nonzero().flatten().tolist()
    if not indices:  # some tokenizers decode an empty batch as one empty text
        return hits
    tails = tokenizer.batch_decode(responses[indices, -window:].tolist(), skip_special_tokens=False)
    for index, tail in zip(indices, tails, strict=True):
        hits[index] = any(text in tail for text in stop_strings)
    return hits


def check_generation_inputs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    generator: torch.Generator,
) -> int:
    """Validate the generator and the tokenizer's pad id; return the pad id."""
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer must define pad_token_id (load_policy sets pad = eos)")
    return int(tokenizer.pad_token_id)


def check_token_range(model: PreTrainedModel, ids: Tensor, what: str = "prompt") -> None:
    """Every id of ``ids`` must index the model's vocabulary."""
    vocab = model.get_output_embeddings().weight.shape[0]
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab:
        bad = low if low < 0 else high
        raise ValueError(f"{what} token ids must be in [0, {vocab}), got {bad}")


def check_context_length(model: PreTrainedModel, longest: int, what: str) -> None:
    """``longest`` tokens (context + response budget) must fit the model's positions."""
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions is not None and longest > max_positions:
        raise ValueError(
            f"{what} = {longest} exceeds the model's max_position_embeddings = {max_positions}"
        )


class GrowingLayer(DynamicLayer):
    """A :class:`transformers.DynamicLayer` whose appends are amortised O(new tokens).

    ``DynamicLayer`` concatenates the whole cache with each new token, so decoding ``n`` tokens
    after a context of ``L`` copies ``O(n * L)`` cache entries; here keys and values live in a
    buffer with spare room along the sequence axis (doubled when full) and the layer exposes a
    view of its filled part."""

    def lazy_initialization(self, key_states: Tensor, value_states: Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._length = 0
        self._key_buffer = self._value_buffer = None

    def update(
        self, key_states: Tensor, value_states: Tensor, *args: object, **kwargs: object
    ) -> tuple[Tensor, Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self._length + key_states.shape[-2]
        if self._key_buffer is None or end > self._key_buffer.shape[-2]:
            capacity = max(
                end, 64, 0 if self._key_buffer is None else 2 * self._key_buffer.shape[-2]
            )
            self._key_buffer = self._grown(self._key_buffer, key_states, capacity)
            self._value_buffer = self._grown(self._value_buffer, value_states, capacity)
        self._key_buffer[..., self._length : end, :] = key_states
        self._value_buffer[..., self._length : end, :] = value_states
        self._length = end
        self.keys = self._key_buffer[..., :end, :]
        self.values = self._value_buffer[..., :end, :]
        return self.keys, self.values

    def _grown(self, buffer: Tensor | None, states: Tensor, capacity: int) -> Tensor:
        grown = states.new_empty((*states.shape[:-2], capacity, states.shape[-1]))
        if buffer is not None:
            grown[..., : self._length, :] = buffer[..., : self._length, :]
        return grown

    def get_seq_length(self) -> int:
        return self._length if self.is_initialized else 0

    def batch_select_indices(self, indices: Tensor) -> None:
        if self.get_seq_length() > 0:
            self._key_buffer = self._key_buffer[indices]
            self._value_buffer = self._value_buffer[indices]
            self.keys = self._key_buffer[..., : self._length, :]
            self.values = self._value_buffer[..., : self._length, :]


def cache_keyword(model: PreTrainedModel) -> str:
    """The forward's KV-cache argument: ``cache`` in newer transformers, ``past_key_values`` in
    older ones (passing the old name to a newer model warns, and stops working at 5.40)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft
    parameters = inspect.signature(type(inner).forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def growing_cache(model: PreTrainedModel) -> DynamicCache:
    """The model's ``DynamicCache`` with every plain ``DynamicLayer`` (full attention) replaced
    by a :class:`GrowingLayer`; other layer kinds (sliding windows) are kept as they are."""
    cache = DynamicCache(config=model.config)
    cache.layers = [
        GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers
    ]
    return cache


@dataclass
class Decoded:
    """What :func:`decode` sampled (fields as in :class:`GenerationOutput`) and the attention
    mask of everything now in the cache (every column but the last sampled one)."""

    response_ids: Tensor
    response_mask: Tensor
    log_probs: Tensor
    stopped: Tensor
    attention_mask: Tensor

    def output(
        self, tokenizer: PreTrainedTokenizerBase, prompt_ids: Tensor, prompt_mask: Tensor
    ) -> GenerationOutput:
        """The :class:`GenerationOutput` of these samples after ``prompt_ids``."""
        return GenerationOutput(
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            response_ids=self.response_ids,
            response_mask=self.response_mask,
            log_probs=self.log_probs,
            stopped=self.stopped,
            texts=decode_texts(tokenizer, self.response_ids, self.response_mask),
        )


def decode(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    cache: DynamicCache,
    step_ids: Tensor,
    attention_mask: Tensor,
    config: SamplingConfig,
    generator: torch.Generator,
) -> Decoded:
    """Feed ``step_ids [B, W]`` after what ``cache`` holds, then sample up to
    ``config.max_new_tokens`` tokens per row.

    ``attention_mask [B, C + W]`` covers the cached columns and ``step_ids``; it may have holes
    anywhere (left padding, finished rows of an earlier call). Each token's position is the
    number of attended tokens before it in its row (:func:`position_ids_from_mask`), so a row
    with holes sees the same rotary phases as its unpadded sequence. The last sampled column is
    not fed to the model: the cache ends one token short of the responses.
    """
    pad_id = int(tokenizer.pad_token_id)
    device = step_ids.device
    stop_ids = list(config.stop_token_ids)
    if config.stop_at_eos and tokenizer.eos_token_id is not None:
        stop_ids.append(int(tokenizer.eos_token_id))
    stop_ids_tensor = torch.tensor(stop_ids, dtype=torch.long, device=device)

    step_positions = position_ids_from_mask(attention_mask)[:, -step_ids.shape[1] :]
    finished = torch.zeros(step_ids.shape[0], dtype=torch.bool, device=device)
    tokens_per_step: list[Tensor] = []
    alive_per_step: list[Tensor] = []
    log_probs_per_step: list[Tensor] = []

    cache_argument = {cache_keyword(model): cache}
    with _eval_mode(model), autocast_context(device, config.bf16):
        for _ in range(config.max_new_tokens):
            logits = model(
                input_ids=step_ids,
                attention_mask=attention_mask,
                position_ids=step_positions,
                use_cache=True,
                logits_to_keep=1,
                **cache_argument,
            ).logits[:, -1, :]
            tokens, log_probs = sample_next(logits.float(), config, generator)
            alive = ~finished
            tokens = torch.where(alive, tokens, pad_id)
            tokens_per_step.append(tokens)
            alive_per_step.append(alive)
            log_probs_per_step.append(torch.where(alive, log_probs, 0.0))
            finished = finished | (alive & torch.isin(tokens, stop_ids_tensor))
            if config.stop_strings:
                responses = torch.stack(tokens_per_step, dim=1)
                finished = finished | stop_string_hits(
                    tokenizer, responses, alive & ~finished, config.stop_strings
                )
            if bool(finished.all()) or len(tokens_per_step) == config.max_new_tokens:
                break
            step_ids = tokens[:, None]
            step_positions = attention_mask.sum(dim=1, keepdim=True)
            attention_mask = torch.cat([attention_mask, alive.long()[:, None]], dim=1)

    return Decoded(
        response_ids=torch.stack(tokens_per_step, dim=1),
        response_mask=torch.stack(alive_per_step, dim=1).long(),
        log_probs=torch.stack(log_probs_per_step, dim=1),
        stopped=finished,
        attention_mask=attention_mask,
    )


def decode_texts(tokenizer: PreTrainedTokenizerBase, ids: Tensor, mask: Tensor) -> list[str]:
    """The response texts of ``ids [B, R]`` where ``mask`` is 1, special tokens skipped."""
    rows = [row[keep.bool()].tolist() for row, keep in zip(ids, mask, strict=True)]
    return tokenizer.batch_decode(rows, skip_special_tokens=True)


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    config: SamplingConfig,
    generator: torch.Generator,
) -> GenerationOutput:
    """Sample one response per prompt (strings are tokenized with the tokenizer's defaults).

    Reproducible: the same model, prompts, config and generator state give the same tokens
    (``generator`` must live on the model's device). The model runs in eval mode during
    sampling (its mode is restored afterwards).
    """
    pad_id = check_generation_inputs(model, tokenizer, generator)
    device = model.get_input_embeddings().weight.device
    prompt_ids, prompt_mask = left_pad(_prompt_token_lists(tokenizer, prompts), pad_id, device)
    check_token_range(model, prompt_ids)
    longest = int(prompt_mask.sum(dim=1).max()) + config.max_new_tokens
    check_context_length(model, longest, "longest prompt + max_new_tokens")
    out = decode(model, tokenizer, growing_cache(model), prompt_ids, prompt_mask, config, generator)
    return out.output(tokenizer, prompt_ids, prompt_mask)
