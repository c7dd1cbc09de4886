"""One scoring pass: per-token log-probs of given tokens and the full-vocabulary entropy.

The model body runs once; the LM head is applied only to the hidden states that predict
response tokens, in vocabulary-sized chunks (``aem.algorithms.entropy``), so fp32 logits
``[B, T, V]`` are never materialised. The same call serves the old-policy pass (no grad) and
the update step (grad enabled): AEM's entropy comes from this pass, never from an extra one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedModel

from aem.algorithms._checks import (
    require_int_at_least,
    require_positive,
    require_shape,
    require_tensor,
)
from aem.algorithms.entropy import chunked_logprobs_and_entropy
from aem.policy.batching import check_token_batch
from aem.policy.compiled import last_hidden_state
from aem.policy.precision import autocast_context

# Config fields of models whose logits are not a plain ``hidden @ W.T + b``.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


@dataclass
class ScoreOutput:
    """``log_probs[b, t] = log softmax(logits_{t-1} / temperature)[input_ids[b, t]]`` and
    ``entropy[b, t]`` the entropy of that same distribution (fp32, ``[B, T]``), where the logits
    at ``t - 1`` predict token ``t``. Both are 0 wherever ``response_mask`` is 0; ``entropy`` is
    ``None`` when not requested."""

    log_probs: Tensor
    entropy: Tensor | None


def _check_plain_head(model: PreTrainedModel) -> torch.nn.Linear:
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise ValueError(
            f"score needs a linear LM head, got {type(head).__name__} for {type(model).__name__}"
        )
    for name in _LOGIT_TRANSFORMS:
        value = getattr(model.config, name, None)
        if value not in (None, 1.0):
            raise ValueError(
                f"score applies the LM head itself and does not support {name}={value!r} "
                f"({type(model).__name__})"
            )
    return head


def _check_response_mask(response_mask: Tensor, attention_mask: Tensor) -> Tensor:
    require_tensor("response_mask", response_mask)
    require_shape("response_mask", response_mask, attention_mask.shape)
    selected = response_mask.bool()
    if not bool(((response_mask == 0) | (response_mask == 1)).all()):
        raise ValueError("response_mask must hold only 0 and 1")
    if bool(selected[:, 0].any()):
        raise ValueError("response_mask must be 0 in column 0 (the first token has no context)")
    if bool((selected & ~attention_mask.bool()).any()):
        raise ValueError("response_mask must be 0 wherever attention_mask is 0")
    return selected


def score(
    model: PreTrainedModel,
    input_ids: Tensor,
    attention_mask: Tensor,
    response_mask: Tensor,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    compute_entropy: bool = True,
    bf16: bool = False,
    body: torch.nn.Module | None = None,
) -> ScoreOutput:
    """Score the tokens of ``input_ids [B, T]`` marked by ``response_mask`` (see
    :class:`ScoreOutput`), with one forward of the model body.

    ``attention_mask`` may have left padding (prompts) and right padding (after a stop); the
    position ids are derived from it. ``chunk_size`` bounds how many response tokens go through
    the LM head at once. Gradients flow to the model when grad mode is on (the update step);
    ``bf16`` runs the body under bfloat16 autocast and the head in bfloat16, like the sampler
    (the log-prob/entropy reductions are fp32 either way). ``body`` runs in place of
    ``model.base_model``: the compiled wrapper of it (:func:`aem.policy.compiled.compile_body`).
    """
    check_token_batch(input_ids, attention_mask)
    require_positive("temperature", temperature)
    selected = _check_response_mask(response_mask, attention_mask)[:, 1:]
    head = _check_plain_head(model)

    with autocast_context(input_ids.device, bf16):
        hidden = last_hidden_state(model.base_model, body, input_ids, attention_mask)
    # The head runs in one explicit dtype (bf16 under ``bf16``, like the sampler's autocast
    # head; else the model's), so the chunked backward recomputes exactly the forward logits.
    head_dtype = torch.bfloat16 if bf16 else head.weight.dtype
    with torch.autocast(device_type=input_ids.device.type, enabled=False):
        log_probs, entropy = chunked_logprobs_and_entropy(
            hidden[:, :-1][selected].to(head_dtype),
            head.weight.to(head_dtype),
            input_ids[:, 1:][selected],
            temperature=temperature,
            lm_head_bias=None if head.bias is None else head.bias.to(head_dtype),
            chunk_size=chunk_size,
            compute_entropy=compute_entropy,
        )
    return ScoreOutput(
        log_probs=_scatter_rows(log_probs, selected),
        entropy=None if entropy is None else _scatter_rows(entropy, selected),
    )


@torch.no_grad()
def score_in_chunks(
    model: PreTrainedModel,
    input_ids: Tensor,
    attention_mask: Tensor,
    response_mask: Tensor,
    rows_per_chunk: int = 64,
    temperature: float = 1.0,
    bf16: bool = False,
    body: torch.nn.Module | None = None,
) -> ScoreOutput:
    """:func:`score` without gradient over a large batch, ``rows_per_chunk`` rows at a time:
    rows of similar length go together (sorted by attended tokens) and each chunk is cropped to
    its attended columns, so little compute goes to padding (rows of whole trajectories differ
    in length far more than rows of single turns). Results are in the original row order."""
    require_int_at_least("rows_per_chunk", rows_per_chunk, 1)
    check_token_batch(input_ids, attention_mask)
    log_probs = torch.zeros(input_ids.shape, dtype=torch.float32, device=input_ids.device)
    entropy = torch.zeros_like(log_probs)
    order = torch.argsort(attention_mask.sum(dim=1), stable=True)
    for start in range(0, input_ids.shape[0], rows_per_chunk):
        rows = order[start : start + rows_per_chunk]
        attended = attention_mask[rows].bool().any(dim=0).nonzero().flatten()
        if attended.numel() == 0:
            continue
        low, high = int(attended.min()), int(attended.max()) + 1
        out = score(
            model,
            input_ids[rows, low:high],
            attention_mask[rows, low:high],
            response_mask[rows, low:high],
            temperature=temperature,
            bf16=bf16,
            body=body,
        )
        log_probs[rows, low:high] = out.log_probs
        entropy[rows, low:high] = out.entropy
    return ScoreOutput(log_probs=log_probs, entropy=entropy)


def _scatter_rows(values: Tensor, selected: Tensor) -> Tensor:
    """Place flat per-token ``values`` at the True entries of ``selected [B, T-1]`` and prepend
    column 0, giving fp32 ``[B, T]`` with zeros elsewhere (differentiable)."""
    shifted = torch.zeros(selected.shape, dtype=torch.float32, device=values.device)
    shifted = shifted.masked_scatter(selected, values.float())
    return torch.cat([shifted.new_zeros(selected.shape[0], 1), shifted], dim=1)
