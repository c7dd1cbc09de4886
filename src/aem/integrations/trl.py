"""AEM inside TRL's ``GRPOTrainer`` (TRL 1.16), without forking TRL.

TRL has no advantage hook; its maintainers advise overriding ``_generate_and_score_completions``
(huggingface/trl#4525). :class:`AEMGRPOTrainer` does exactly that: it lets TRL generate, score
and compute its per-completion advantages ``A`` (shape ``[B]``), then

1. takes the token entropy of every completion token under the sampling policy (TRL's
   temperature-scaled distribution, Eq. 5) from TRL's own no-grad old-log-prob pass when TRL runs
   one, otherwise from one extra no-grad forward of the policy;
2. averages it over the completion's own tokens (``completion_mask * tool_mask``: padding and
   tool/environment tokens are excluded) to get h_j (Eq. 13);
3. computes the AEM weights w_j (Eq. 14-15) over the groups TRL uses for its baseline (the
   ``num_generations`` consecutive completions of one prompt, gathered across processes);
4. hands TRL token-level advantages ``[B, T]``: ``w_j * A_j`` on the completion's tokens and
   ``A_j`` elsewhere (masked out of the loss anyway). TRL's loss accepts ``[B, T]`` advantages
   (it unsqueezes only 1-D ones), and since w_j is constant over a completion this is the same
   objective as the per-completion scalar ``w_j * A_j``.

The three-line change for a TRL user::

    from aem.integrations.trl import AEMGRPOTrainer          # 1. import
    trainer = AEMGRPOTrainer(                                 # 2. class name
        model=..., reward_funcs=..., args=grpo_config, train_dataset=...,
        aem_temperature=1.0,                                  # 3. tau of Eq. 15
    )
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from aem.algorithms.modulation import modulate_advantages, response_entropy
from aem.checks import (
    require_finite,
    require_int_at_least,
    require_ndim,
    require_non_negative,
    require_nonempty,
    require_shape,
    require_tensor,
)

try:
    import trl
    from trl import GRPOTrainer
    from trl.models.utils import disable_gradient_checkpointing
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "aem.integrations.trl needs TRL 1.16: pip install 'trl>=1.16,<1.17'"
    ) from error

__all__ = ["AEMCompletionAdvantages", "AEMGRPOTrainer", "modulate_completion_advantages"]

TESTED_TRL_SERIES = "1.16"

# Optional model inputs TRL keeps in its batch dict and passes back to the policy forward (the same
# keys its own loss pass reads), needed to repeat the forward for multimodal models.
_FORWARD_INPUT_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "num_images",
    "pixel_attention_mask",
    "spatial_shapes",
    "num_tiles",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
)


class AEMCompletionAdvantages(NamedTuple):
    """Result of :func:`modulate_completion_advantages`.

    Attributes:
        token_advantages: ``[B, T]`` this process's advantages, ``w_j * A_j`` on completion j's
            loss tokens and ``A_j`` elsewhere.
        completion_advantages: ``[B_all]`` ``w_j * A_j`` of every completion of all processes
            (for TRL's completions table).
        stats: AEM logging statistics over all processes (see :func:`aem.modulate_advantages`).
    """

    token_advantages: Tensor
    completion_advantages: Tensor
    stats: dict[str, Tensor]


def _identity(tensor: Tensor) -> Tensor:
    return tensor


def modulate_completion_advantages(
    advantages: Tensor,
    token_entropy: Tensor,
    loss_mask: Tensor,
    num_generations: int,
    temperature: float = 1.0,
    eps: float = 1e-6,
    *,
    gather: Callable[[Tensor], Tensor] = _identity,
    process_index: int = 0,
) -> AEMCompletionAdvantages:
    """AEM (Eq. 13-15) on per-completion advantages, with groups that may span processes.

    Completion i of process p has global position ``p * B + i`` and belongs to group
    ``position // num_generations``, TRL's GRPO grouping (each prompt's ``num_generations``
    completions are consecutive in the gathered batch). Each process reduces its completions to
    ``(h_j, token count, A_j)`` and one ``gather`` call collects these ``[B, 3]`` rows, so the
    result equals :func:`aem.modulate_advantages` on the whole gathered ``[B_all, T]`` batch.

    Args:
        advantages: ``[B]`` this process's per-completion base advantages.
        token_entropy: ``[B, T]`` token entropy of this process's completions (Eq. 5).
        loss_mask: ``[B, T]`` bool or 0/1, True on the tokens the policy generated (TRL's
            ``completion_mask * tool_mask``). A completion with no such token gets w = 1 and stays
            out of the group statistics.
        num_generations: completions per prompt (TRL's ``num_generations``).
        temperature, eps: tau and the degenerate-range threshold of Eq. 14-15.
        gather: concatenates a tensor across processes along dim 0 in process order (under
            accelerate, ``accelerator.gather``); the identity on one process.
        process_index: this process's rank.

    Returns:
        :class:`AEMCompletionAdvantages`.

    Raises:
        ValueError: wrong shapes, empty input, non-finite values on loss tokens, a gathered batch
            that is not a multiple of ``num_generations``, negative ``temperature`` or ``eps``.
    """
    require_tensor("advantages", advantages)
    require_ndim("advantages", advantages, 1)
    require_nonempty("advantages", advantages)
    require_tensor("token_entropy", token_entropy)
    require_ndim("token_entropy", token_entropy, 2)
    if token_entropy.shape[0] != advantages.shape[0]:
        raise ValueError(
            f"token_entropy must have one row per completion ({advantages.shape[0]}), "
            f"got shape {tuple(token_entropy.shape)}"
        )
    require_tensor("loss_mask", loss_mask)
    require_shape("loss_mask", loss_mask, token_entropy.shape)
    require_int_at_least("num_generations", num_generations, 1)
    require_non_negative("temperature", temperature)
    require_non_negative("eps", eps)
    mask = loss_mask.bool()
    require_finite("advantages", advantages)

    with torch.no_grad():
        local_entropy = response_entropy(token_entropy, mask)
        dtype = torch.promote_types(local_entropy.dtype, advantages.dtype)
        local_rows = torch.stack(
            [
                local_entropy.to(dtype),
                mask.sum(dim=1).to(dtype),
                advantages.detach().to(dtype),
            ],
            dim=1,
        )
        rows = gather(local_rows)
        total = rows.shape[0]
        if total % num_generations != 0:
            raise ValueError(
                f"the gathered batch ({total} completions) must be a multiple of "
                f"num_generations ({num_generations})"
            )
        if process_index < 0 or (process_index + 1) * advantages.shape[0] > total:
            raise ValueError(
                f"process_index {process_index} is out of range for a gathered batch of {total} "
                f"completions and {advantages.shape[0]} per process"
            )
        group_index = torch.arange(total, device=rows.device) // num_generations
        # One "token" per completion carrying its mean entropy: Eq. 13 over that single token is
        # h_j itself, so this is aem.modulate_advantages on the gathered batch.
        modulated, stats = modulate_advantages(
            rows[:, 2:3],
            rows[:, 0:1],
            rows[:, 1:2] > 0,
            group_index,
            temperature=temperature,
            eps=eps,
        )
        completion_advantages = modulated[:, 0].to(advantages.dtype)
        local_size = advantages.shape[0]
        start = process_index * local_size
        local_modulated = completion_advantages[start : start + local_size].to(advantages.device)
        token_advantages = torch.where(
            mask, local_modulated[:, None], advantages.detach()[:, None]
        ).to(advantages.dtype)
    return AEMCompletionAdvantages(token_advantages, completion_advantages, stats)


class AEMGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` with Adaptive Entropy Modulation of its advantages (paper Sec. 4).

    Same constructor as ``GRPOTrainer`` plus three keyword-only arguments:

    Args:
        aem_temperature: tau >= 0 of Eq. 15 (0 gives w = 1, i.e. plain GRPO with ``[B, T]``
            advantages).
        aem_eps: a prompt group whose completion-entropy range is ``<= aem_eps`` keeps w = 1.
        aem_enabled: False makes this class behave exactly like ``GRPOTrainer`` (TRL's ``[B]``
            advantages, no extra work).

    After TRL has computed its per-completion advantages A_j (any ``scale_rewards`` /
    ``multi_objective_aggregation``), the batch's ``"advantages"`` become ``[B, T]``:
    ``w_j * A_j`` on completion j's tokens (see :func:`modulate_completion_advantages`). Groups are
    TRL's: the ``num_generations`` completions of one prompt (``num_generations_eval`` in eval),
    gathered across processes with ``accelerator.gather``.

    Entropy cost: when TRL runs its no-grad old-log-prob pass (``num_iterations > 1``,
    ``steps_per_generation`` not dividing ``gradient_accumulation_steps``, or vLLM importance
    sampling), the entropy is read from that pass; TRL's fused LM head already computes it there
    and drops it, so this is free. Otherwise AEM runs **one extra no-grad forward** of the policy
    over the generation batch (TRL skips the pass in that case, and AEM needs all completions'
    entropies before the first loss step). The entropy is that of TRL's temperature-scaled
    sampling distribution.

    Logs ``aem/weight_{min,max,std}``, ``aem/degenerate_group_frac`` and
    ``aem/entropy_{mean,pos,neg}`` through TRL's metrics; the completions table shows the
    modulated advantage ``w_j * A_j``. Relies on TRL-internal methods: tested with TRL 1.16
    (other versions get a warning).

    Raises:
        ValueError: negative or non-finite ``aem_temperature`` / ``aem_eps``, non-bool
            ``aem_enabled``.
    """

    def __init__(
        self,
        *args: Any,
        aem_temperature: float = 1.0,
        aem_eps: float = 1e-6,
        aem_enabled: bool = True,
        **kwargs: Any,
    ) -> None:
        require_non_negative("aem_temperature", aem_temperature)
        require_non_negative("aem_eps", aem_eps)
        if not isinstance(aem_enabled, bool):
            raise ValueError(f"aem_enabled must be a bool, got {aem_enabled!r}")
        if not trl.__version__.startswith(TESTED_TRL_SERIES + "."):
            warnings.warn(
                f"AEMGRPOTrainer overrides TRL internals and was tested with TRL "
                f"{TESTED_TRL_SERIES}.x, found {trl.__version__}",
                stacklevel=2,
            )
        self.aem_temperature = float(aem_temperature)
        self.aem_eps = float(aem_eps)
        self.aem_enabled = aem_enabled
        # (log-probs, entropy) of every no-grad policy pass TRL makes while a batch is scored.
        self._aem_policy_passes: list[tuple[Tensor, Tensor]] | None = None
        super().__init__(*args, **kwargs)

    def _get_per_token_logps_and_entropies(
        self,
        model: Any,
        input_ids: Tensor,
        attention_mask: Tensor,
        logits_to_keep: int,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        **kwargs: Any,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """TRL's scoring pass; while a batch is scored, policy passes also keep the entropy."""
        recording = self._aem_policy_passes is not None and model is self.model
        logps, entropy, aux_loss = super()._get_per_token_logps_and_entropies(
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            batch_size=batch_size,
            compute_entropy=compute_entropy or recording,
            **kwargs,
        )
        if recording:
            self._aem_policy_passes.append((logps, entropy))
        return logps, entropy if compute_entropy else None, aux_loss

    def _generate_and_score_completions(
        self, inputs: list[dict[str, Tensor | Any]]
    ) -> dict[str, Tensor | Any]:
        if not self.aem_enabled:
            return super()._generate_and_score_completions(inputs)
        self._aem_policy_passes = []
        try:
            output = super()._generate_and_score_completions(inputs)
            passes = self._aem_policy_passes
        finally:
            self._aem_policy_passes = None

        advantages = output["advantages"]
        if advantages.dim() != 1:
            raise RuntimeError(
                "AEMGRPOTrainer expects TRL's per-completion advantages of shape [B], got "
                f"{tuple(advantages.shape)}; this TRL version is not supported"
            )
        mode = "train" if self.model.training else "eval"
        mask = output["completion_mask"]
        if "tool_mask" in output:
            mask = mask * output["tool_mask"]
        result = modulate_completion_advantages(
            advantages,
            self._aem_token_entropy(output, passes, mode),
            mask,
            self.num_generations if mode == "train" else self.num_generations_eval,
            self.aem_temperature,
            self.aem_eps,
            gather=self.accelerator.gather,
            process_index=self.accelerator.process_index,
        )
        output["advantages"] = result.token_advantages
        for name, value in result.stats.items():
            self._metrics[mode][name].append(value.item())
        self._aem_replace_logged_advantages(result.completion_advantages)
        return output

    def _aem_token_entropy(
        self, output: dict[str, Any], passes: list[tuple[Tensor, Tensor]], mode: str
    ) -> Tensor:
        """``[B, T]`` completion-token entropy: TRL's old-log-prob pass if it ran, else a new
        no-grad forward of the policy."""
        old_logps = output.get("old_per_token_logps")
        for logps, entropy in passes:
            if logps is old_logps:
                return entropy
        batch_size = (
            self.args.per_device_train_batch_size
            if mode == "train"
            else self.args.per_device_eval_batch_size
        )
        extra = {key: output[key] for key in _FORWARD_INPUT_KEYS if key in output}
        gradient_checkpointing_kwargs = self.args.gradient_checkpointing_kwargs
        with (
            torch.no_grad(),
            disable_gradient_checkpointing(self.model, gradient_checkpointing_kwargs),
        ):
            _, entropy, _ = self._get_per_token_logps_and_entropies(
                self.model,
                torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1),
                torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1),
                output["completion_ids"].size(1),
                batch_size=batch_size,
                compute_entropy=True,
                **extra,
            )
        return entropy

    def _aem_replace_logged_advantages(self, completion_advantages: Tensor) -> None:
        """Show ``w_j * A_j`` instead of ``A_j`` in TRL's completions table (TRL appended the
        gathered batch's advantages last)."""
        logged = self._logs["advantages"]
        for _ in range(min(len(logged), completion_advantages.shape[0])):
            logged.pop()
        logged.extend(completion_advantages.tolist())
