"""Token rows for the model: left padding, position ids, the attention inputs of a no-cache
forward, and :func:`last_hidden_state`, the one place a model body runs over rows (scoring and
the critic)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from aem.checks import bool_mask, require_integer, require_ndim, require_tensor
from aem.policy.precision import autocast_context


def left_pad(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """Stack token-id lists into ``(ids [B, L], attention_mask [B, L])``, padded on the left
    with ``pad_id`` to the longest length ``L``. Every sequence must be non-empty."""
    if len(sequences) == 0:
        raise ValueError("sequences must not be empty")
    for index, sequence in enumerate(sequences):
        if len(sequence) == 0:
            raise ValueError(f"sequences[{index}] must not be empty")
    length = max(len(sequence) for sequence in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(sequences), length), dtype=torch.long, device=device)
    for row, sequence in enumerate(sequences):
        ids[row, length - len(sequence) :] = torch.as_tensor(sequence, dtype=torch.long)
        mask[row, length - len(sequence) :] = 1
    return ids, mask


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Position of each token among the attended tokens of its row (0 for leading pads).

    With these positions (and the mask) a left-padded row sees the same rotary phases as the
    unpadded sequence, so its logits match. Holes in the mask (pads after a stop token) keep
    the position of the previous real token, so the next real token continues the count.
    """
    require_tensor("attention_mask", attention_mask)
    require_ndim("attention_mask", attention_mask, 2)
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)


def check_token_batch(input_ids: Tensor, attention_mask: Tensor) -> None:
    """Validate a ``[B, T]`` integer id batch and its same-shaped 0/1 attention mask."""
    require_tensor("input_ids", input_ids)
    require_tensor("attention_mask", attention_mask)
    require_ndim("input_ids", input_ids, 2)
    require_integer("input_ids", input_ids)
    bool_mask("attention_mask", attention_mask, input_ids.shape)


def body_inputs(attention_mask: Tensor) -> dict[str, Tensor | None]:
    """``attention_mask`` and ``position_ids`` for a no-cache forward over ``[B, T]`` rows.

    When every row is right-padded only (its mask a run of ones then zeros), causal attention
    alone keeps every real token from seeing padding, so the mask is dropped: the model then
    takes its plain causal path (SDPA's ``is_causal`` kernel, about 2x faster than an explicit
    mask on 1,400-token rows on CPU). The outputs at padding positions differ and are unused.
    """
    mask = attention_mask.long()
    if bool((mask[:, 1:] <= mask[:, :-1]).all()):
        positions = torch.arange(mask.shape[1], device=mask.device).expand(mask.shape)
        return {"attention_mask": None, "position_ids": positions}
    return {"attention_mask": attention_mask, "position_ids": position_ids_from_mask(mask)}


def last_hidden_state(
    body: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor, bf16: bool = False
) -> Tensor:
    """``body``'s last hidden states ``[B, T, H]`` for rows ``input_ids`` (no cache; inputs from
    :func:`body_inputs`), under bfloat16 autocast when ``bf16``. ``body`` is a model body
    (``model.base_model``, a critic's body) or its compiled wrapper
    (:class:`aem.policy.runner.PolicyRunner` picks)."""
    with autocast_context(input_ids.device, bf16):
        return body(input_ids=input_ids, **body_inputs(attention_mask)).last_hidden_state
