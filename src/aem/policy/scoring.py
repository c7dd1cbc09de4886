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

from aem.algorithms.entropy import chunked_logprobs_and_entropy
from aem.checks import bool_mask, checking_values, require_positive
from aem.policy.rows import check_token_batch, last_hidden_state

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


def check_plain_head(model: PreTrainedModel) -> torch.nn.Linear:
    """The model's LM head, which must be a plain linear layer (no logit transform)."""
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
    selected = bool_mask("response_mask", response_mask, attention_mask.shape)
    if not checking_values():
        return selected
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
) -> ScoreOutput:
    """Score the tokens of ``input_ids [B, T]`` marked by ``response_mask`` (see
    :class:`ScoreOutput`), with one forward of the model body.

    ``attention_mask`` may have left padding (prompts) and right padding (after a stop); the
    position ids are derived from it. ``chunk_size`` bounds how many response tokens go through
    the LM head at once. Gradients flow to the model when grad mode is on (the update step);
    ``bf16`` runs the body under bfloat16 autocast and the head in bfloat16, like the sampler
    (the log-prob/entropy reductions are fp32 either way). The trainer scores through
    :class:`aem.policy.runner.PolicyRunner`, which can run a compiled body.
    """
    check_token_batch(input_ids, attention_mask)
    require_positive("temperature", temperature)
    selected = _check_response_mask(response_mask, attention_mask)
    check_plain_head(model)
    hidden = last_hidden_state(model.base_model, input_ids, attention_mask, bf16)
    return score_hidden(
        model, hidden, input_ids, selected, temperature, chunk_size, compute_entropy, bf16
    )


def score_hidden(
    model: PreTrainedModel,
    hidden: Tensor,
    input_ids: Tensor,
    response_mask: Tensor,
    temperature: float,
    chunk_size: int = 1024,
    compute_entropy: bool = True,
    bf16: bool = False,
) -> ScoreOutput:
    """:func:`score` from the body's last hidden states ``hidden [B, T, H]``: the LM head is
    applied only where the bool ``response_mask [B, T]`` marks a token to score."""
    selected = response_mask[:, 1:]
    head = model.get_output_embeddings()
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


def _scatter_rows(values: Tensor, selected: Tensor) -> Tensor:
    """Place flat per-token ``values`` at the True entries of ``selected [B, T-1]`` and prepend
    column 0, giving fp32 ``[B, T]`` with zeros elsewhere (differentiable)."""
    shifted = torch.zeros(selected.shape, dtype=torch.float32, device=values.device)
    shifted = shifted.masked_scatter(selected, values.float())
    return torch.cat([shifted.new_zeros(selected.shape[0], 1), shifted], dim=1)
