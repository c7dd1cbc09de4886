"""AEM inside TRL's ``GRPOTrainer`` (TRL 1.16), without forking TRL.

TRL has no advantage hook; its maintainers advise overriding ``_generate_and_score_completions``
(huggingface/trl#4525). :class:`AEMGRPOTrainer` does exactly that: it lets TRL generate, score
and compute its per-completion advantages ``A`` (shape ``[B]``), then

1. takes the token entropy of every completion token under the sampling policy (TRL's
   temperature-scaled distribution, Eq. 5) from TRL's own no-grad old-log-prob pass when TRL runs
   one, otherwise from one extra no-grad forward of the policy;
2. splits each completion into its assistant turns, the runs of its own tokens
   (``completion_mask * tool_mask``: padding and the tool output between turns are 0), and
   averages the entropy over each turn's tokens to get h_s (Eq. 13); ``aem_span="row"`` takes
   the whole completion as one response instead;
3. computes the AEM weights w_s (Eq. 14-15) over the groups TRL uses for its baseline (all turns
   of the ``num_generations`` consecutive completions of one prompt, gathered across processes);
4. hands TRL token-level advantages ``[B, T]``: ``w_s * A_j`` on the tokens of turn s of
   completion j and ``A_j`` elsewhere (masked out of the loss anyway). TRL's loss accepts
   ``[B, T]`` advantages (it unsqueezes only 1-D ones).

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

from aem.algorithms.modulation import Modulation, ModulationConfig, response_entropy
from aem.checks import (
    require_finite,
    require_int_at_least,
    require_ndim,
    require_non_negative,
    require_nonempty,
    require_shape,
    require_tensor,
)
from aem.integrations.spans import (
    RowSpans,
    SpanGranularity,
    modulate_spans,
    require_integration_modulation,
    require_span_granularity,
    require_tokens,
    row_spans,
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
        token_advantages: ``[B, T]`` this process's advantages, ``w_s * A_j`` on the loss tokens
            of each span s of completion j and ``A_j`` elsewhere.
        completion_advantages: ``[B_all]`` per completion of all processes, the mean modulated
            advantage over its loss tokens (``w_j * A_j`` for a one-span completion, ``A_j`` for
            one with no loss token), for TRL's completions table.
        stats: AEM logging statistics over all processes (see :func:`aem.modulate_advantages`).
    """

    token_advantages: Tensor
    completion_advantages: Tensor
    stats: dict[str, Tensor]


def _identity(tensor: Tensor) -> Tensor:
    return tensor


# Columns of the per-span table each process contributes to the one gather.
_PRESENT, _ROW, _ENTROPY, _COUNT, _COUNTED, _ADVANTAGE = range(6)


def modulate_completion_advantages(
    advantages: Tensor,
    token_entropy: Tensor,
    loss_mask: Tensor,
    num_generations: int,
    temperature: float = 1.0,
    eps: float = 1e-6,
    *,
    span: SpanGranularity = "turn",
    stat_mask: Tensor | None = None,
    gather: Callable[[Tensor], Tensor] = _identity,
    process_index: int = 0,
    modulation: str = "aem",
    empg_k: float = 1.0,
    empg_k_future: float = 1.0,
    empg_zeta: float = 0.1,
) -> AEMCompletionAdvantages:
    """AEM (Eq. 13-15) on per-completion advantages, one weight per assistant turn, with groups
    that may span processes.

    A completion with tool calls holds several assistant turns: its loss mask (TRL's
    ``completion_mask * tool_mask``) is 1 on the model's tokens and 0 on the tool output between
    them. With ``span="turn"`` every run of the mask is one response (span) with its own weight;
    ``span="row"`` gives the whole completion one weight. Completion i of process p has global
    position ``p * B + i`` and belongs to group ``position // num_generations``, TRL's GRPO
    grouping; all spans of a group's completions form one AEM group.

    Each process reduces its spans to rows ``(row, h_s, token count, counted, A_j)`` and one
    ``gather`` call collects them (a completion without a span contributes one row of count 0),
    so the result equals :func:`aem.modulate_advantages` on the whole gathered ``[B_all, T]``
    batch with ``span_index`` from :func:`aem.algorithms.spans_from_mask` (``span="row"``: without
    ``span_index``).

    Args:
        advantages: ``[B]`` this process's per-completion base advantages.
        token_entropy: ``[B, T]`` token entropy of this process's completions (Eq. 5).
        loss_mask: ``[B, T]`` bool or 0/1, True on the tokens the policy generated.
        num_generations: completions per prompt (TRL's ``num_generations``).
        temperature, eps: tau and the degenerate-range threshold of Eq. 14-15.
        span: ``"turn"`` (one span per run of the mask) or ``"row"`` (one per completion).
        stat_mask: optional ``[B]`` bool, False for completions left out of the group statistics
            (TRL's ``mask_truncated_completions`` empties the loss mask of truncated ones); only
            these may have no loss token (they keep ``A_j``).
        gather: concatenates a tensor across processes along dim 0 in process order; dim 0 may
            differ between processes, and all-zero rows it adds as padding are ignored (under
            accelerate: ``pad_across_processes`` then ``gather``). The identity on one process.
        process_index: this process's rank.
        modulation: ``"aem"`` or ``"empg"``: EMPG (Eq. 7-12 of arXiv 2509.09265) over the
            gathered batch, each completion one trajectory whose spans are its steps in order,
            with ``empg_k``, ``empg_k_future``, ``empg_zeta``.

    Returns:
        :class:`AEMCompletionAdvantages`.

    Raises:
        ValueError: wrong shapes, empty input, non-finite values on loss tokens, a completion
            with no loss token that ``stat_mask`` does not leave out, a gathered batch that is
            not a multiple of ``num_generations``, a bad ``span``, negative ``temperature`` or
            ``eps``.
    """
    require_tensor("advantages", advantages)
    require_ndim("advantages", advantages, 1)
    require_nonempty("advantages", advantages)
    require_tensor("token_entropy", token_entropy)
    require_ndim("token_entropy", token_entropy, 2)
    rows = advantages.shape[0]
    if token_entropy.shape[0] != rows:
        raise ValueError(
            f"token_entropy must have one row per completion ({rows}), "
            f"got shape {tuple(token_entropy.shape)}"
        )
    require_tensor("loss_mask", loss_mask)
    require_shape("loss_mask", loss_mask, token_entropy.shape)
    require_int_at_least("num_generations", num_generations, 1)
    require_non_negative("temperature", temperature)
    require_non_negative("eps", eps)
    span = require_span_granularity("span", span)
    require_integration_modulation("modulation", modulation)
    for name, value in (
        ("empg_k", empg_k),
        ("empg_k_future", empg_k_future),
        ("empg_zeta", empg_zeta),
    ):
        require_non_negative(name, value)
    counted = torch.ones(rows, dtype=torch.bool, device=advantages.device)
    if stat_mask is not None:
        require_tensor("stat_mask", stat_mask)
        require_shape("stat_mask", stat_mask, (rows,))
        counted = stat_mask.to(device=advantages.device, dtype=torch.bool)
    mask = loss_mask.bool()
    require_finite("advantages", advantages)
    require_tokens("loss_mask", mask, counted)

    with torch.no_grad():
        local = row_spans(mask, span)
        local_entropy = (
            response_entropy(token_entropy, mask, local.span_index, num_spans=local.num_spans)
            if local.num_spans
            else torch.zeros(0, dtype=torch.promote_types(token_entropy.dtype, torch.float32))
        )
        table = _span_table(local, local_entropy, mask, counted, advantages, process_index)
        gathered = gather(table)
        gathered = gathered[gathered[:, _PRESENT] > 0]
        total = int(gathered[:, _ROW].max()) + 1
        if total % num_generations != 0:
            raise ValueError(
                f"the gathered batch ({total} completions) must be a multiple of "
                f"num_generations ({num_generations})"
            )
        if process_index < 0 or (process_index + 1) * rows > total:
            raise ValueError(
                f"process_index {process_index} is out of range for a gathered batch of {total} "
                f"completions and {rows} per process"
            )
        # Every span becomes one "token" carrying its mean entropy: Eq. 13 over that single
        # token is h_s itself, so this is aem.modulate_advantages on the gathered batch. A table
        # row of count 0 is a completion without a response: per turn it holds no span, per row
        # it is an empty span (weight 1, out of the statistics, as in the core). If no completion
        # has a response (TRL masked them all), every weight is 1.
        row = gathered[:, _ROW].long()
        count = gathered[:, _COUNT]
        kept = count > 0
        if span == "row" or not bool(kept.any()):
            kept = torch.ones_like(kept)
        spans = gathered[kept]
        result = modulate_spans(
            spans[:, _ADVANTAGE:].to(advantages.dtype),
            spans[:, _ENTROPY : _ENTROPY + 1].to(local_entropy.dtype),
            spans[:, _COUNT : _COUNT + 1] > 0,
            None,
            spans[:, _ROW].long() // num_generations,
            config=ModulationConfig(
                temperature=temperature,
                eps=eps,
                empg_k=empg_k,
                empg_k_future=empg_k_future,
                empg_zeta=empg_zeta,
            ),
            modulation=modulation,
            span_row=spans[:, _ROW].long(),
            span_stat_mask=spans[:, _COUNTED] > 0,
        )
        # Each table row's modulated advantage (its base advantage where nothing modulated it),
        # then this process's tokens take their span's value.
        value = gathered[:, _ADVANTAGE].to(result.advantages.dtype)
        value[kept] = result.advantages[:, 0]
        start = process_index * rows
        mine = (row >= start) & (row < start + rows)
        base = advantages.detach()[:, None]
        if local.span_index is None:  # one table row per completion, in order
            token_value = value[mine][:, None]
        else:  # this process's spans in order; tokens off every span keep the base
            span_value = value[mine & (count > 0)]
            padded = torch.cat([span_value, span_value.new_zeros(1)])
            token_value = padded[torch.where(mask, local.span_index, local.num_spans)]
        token_advantages = torch.where(mask, token_value, base).to(advantages.dtype)
        completion_advantages = _completion_means(
            row,
            count,
            gathered[:, _ADVANTAGE],
            spans[:, _ROW].long(),
            spans[:, _COUNT],
            result,
            total,
        ).to(advantages.dtype)
    return AEMCompletionAdvantages(token_advantages, completion_advantages, result.stats)


def _span_table(
    spans: RowSpans,
    span_entropy: Tensor,
    mask: Tensor,
    counted: Tensor,
    advantages: Tensor,
    process_index: int,
) -> Tensor:
    """``[N, 6]`` rows ``(1, global row, h_s, token count, counted, A_j)``: one per span, and one
    of count 0 for a completion without a span (so every completion is in the gathered table)."""
    rows = advantages.shape[0]
    device = advantages.device
    span_count = torch.zeros(spans.num_spans, dtype=torch.int64, device=device)
    if spans.span_index is None:
        span_count = mask.sum(dim=1)
    else:
        span_count.index_add_(0, spans.span_index[mask], torch.ones_like(spans.span_index[mask]))
    spanless = torch.ones(rows, dtype=torch.bool, device=device)
    spanless[spans.span_row] = False
    row = torch.cat([spans.span_row, spanless.nonzero()[:, 0]])
    order = torch.argsort(row, stable=True)
    row = row[order]
    entropy = torch.cat([span_entropy, span_entropy.new_zeros(int(spanless.sum()))])[order]
    count = torch.cat([span_count, span_count.new_zeros(int(spanless.sum()))])[order]
    dtype = torch.promote_types(span_entropy.dtype, advantages.dtype)
    columns = [
        torch.ones_like(row),
        row + process_index * rows,
        entropy,
        count,
        counted[row],
        advantages.detach()[row],
    ]
    return torch.stack([column.to(dtype) for column in columns], dim=1)


def _completion_means(
    row: Tensor,
    count: Tensor,
    row_advantage: Tensor,
    span_row: Tensor,
    span_count: Tensor,
    result: Modulation,
    total: int,
) -> Tensor:
    """Per completion, the mean modulated advantage over its loss tokens (A if it has none)."""
    advantage = row_advantage.new_zeros(total).index_copy_(0, row, row_advantage)
    tokens = count.new_zeros(total).index_add_(0, row, count)
    weighted = count.new_zeros(total).index_add_(
        0, span_row, result.advantages[:, 0].to(count.dtype) * span_count
    )
    return torch.where(tokens > 0, weighted / tokens.clamp(min=1), advantage)


class AEMGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` with Adaptive Entropy Modulation of its advantages (paper Sec. 4).

    Same constructor as ``GRPOTrainer`` plus these keyword-only arguments:

    Args:
        aem_temperature: tau >= 0 of Eq. 15 (0 gives w = 1, i.e. plain GRPO with ``[B, T]``
            advantages).
        aem_eps: a prompt group whose response-entropy range is ``<= aem_eps`` keeps w = 1.
        aem_enabled: False makes this class behave exactly like ``GRPOTrainer`` (TRL's ``[B]``
            advantages, no extra work).
        aem_span: ``"turn"`` (default): each assistant turn of a completion (a run of
            ``completion_mask * tool_mask``; tool output between turns is 0 there) is one
            response with its own weight; ``"row"``: one weight per completion.
        aem_modulation: ``"aem"`` (default) or ``"empg"``: EMPG (arXiv 2509.09265, Eq. 7-12)
            over the gathered batch, each completion one trajectory whose turns are its steps,
            with ``aem_empg_k``, ``aem_empg_k_future``, ``aem_empg_zeta`` (defaults 1, 1, 0.1);
            it logs ``empg/*`` instead of ``aem/*``.

    After TRL has computed its per-completion advantages A_j (any ``scale_rewards`` /
    ``multi_objective_aggregation``), the batch's ``"advantages"`` become ``[B, T]``:
    ``w_s * A_j`` on the tokens of each turn s of completion j (see
    :func:`modulate_completion_advantages`). Groups are TRL's: all turns of the
    ``num_generations`` completions of one prompt (``num_generations_eval`` in eval), gathered
    across processes (``accelerator.pad_across_processes`` + ``accelerator.gather``). Completions
    whose ``completion_mask`` TRL emptied (``mask_truncated_completions``) keep A_j and stay out
    of the statistics.

    Entropy cost: when TRL runs its no-grad old-log-prob pass (``num_iterations > 1``,
    ``steps_per_generation`` not dividing ``gradient_accumulation_steps``, or vLLM importance
    sampling), the entropy is read from that pass; TRL's fused LM head already computes it there
    and drops it, so this is free. Otherwise AEM runs **one extra no-grad forward** of the policy
    over the generation batch (TRL skips the pass in that case, and AEM needs all completions'
    entropies before the first loss step). The entropy is that of TRL's temperature-scaled
    sampling distribution.

    Logs ``aem/weight_{min,max,std}``, ``aem/degenerate_group_frac`` and
    ``aem/entropy_{mean,pos,neg}`` through TRL's metrics; the completions table shows the
    modulated advantage (its mean over the completion's loss tokens). Relies on TRL-internal
    methods: tested with TRL 1.16 (other versions get a warning).

    Raises:
        ValueError: negative or non-finite ``aem_temperature`` / ``aem_eps``, non-bool
            ``aem_enabled``, ``aem_span`` not ``"turn"`` or ``"row"``.
    """

    def __init__(
        self,
        *args: Any,
        aem_temperature: float = 1.0,
        aem_eps: float = 1e-6,
        aem_enabled: bool = True,
        aem_span: SpanGranularity = "turn",
        aem_modulation: str = "aem",
        aem_empg_k: float = 1.0,
        aem_empg_k_future: float = 1.0,
        aem_empg_zeta: float = 0.1,
        **kwargs: Any,
    ) -> None:
        require_non_negative("aem_temperature", aem_temperature)
        require_non_negative("aem_eps", aem_eps)
        if not isinstance(aem_enabled, bool):
            raise ValueError(f"aem_enabled must be a bool, got {aem_enabled!r}")
        self.aem_span = require_span_granularity("aem_span", aem_span)
        self.aem_modulation = require_integration_modulation("aem_modulation", aem_modulation)
        self.aem_empg = {"empg_k": aem_empg_k, "empg_k_future": aem_empg_k_future}
        self.aem_empg["empg_zeta"] = aem_empg_zeta
        for name, value in self.aem_empg.items():
            require_non_negative(f"aem_{name}", value)
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
        completion_mask = output["completion_mask"]
        mask = completion_mask
        if "tool_mask" in output:
            mask = mask * output["tool_mask"]
        result = modulate_completion_advantages(
            advantages,
            self._aem_token_entropy(output, passes, mode),
            mask,
            self.num_generations if mode == "train" else self.num_generations_eval,
            self.aem_temperature,
            self.aem_eps,
            span=self.aem_span,
            stat_mask=completion_mask.bool().any(dim=1),
            gather=self._aem_gather,
            process_index=self.accelerator.process_index,
            modulation=self.aem_modulation,
            **self.aem_empg,
        )
        output["advantages"] = result.token_advantages
        for name, value in result.stats.items():
            self._metrics[mode][name].append(value.item())
        self._aem_replace_logged_advantages(result.completion_advantages)
        return output

    def _aem_gather(self, table: Tensor) -> Tensor:
        """Concatenate every process's span table (row counts may differ; padding rows are 0)."""
        return self.accelerator.gather(self.accelerator.pad_across_processes(table, dim=0))

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
