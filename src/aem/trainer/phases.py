"""The trainer's phases, in the order a batch flows through them.

Each phase is a plain function of a :class:`~aem.batch.SpanBatch` that reads the span fields of
the phases before it and adds its own (:data:`aem.batch.PHASE_FIELDS`), so each can be run and
tested on a batch built by hand:

    score -> reference -> values -> advantages -> modulate -> analysis -> update -> metrics

``update_policy`` minimises (per mini-batch, gradients accumulated over micro-batches)::

    policy loss (PPO clip / GSPO, chosen aggregation) + kl_coef * KL(pi || ref)
      - entropy_coef * entropy        (entropy_coef defaults to 0: AEM needs no bonus)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor

from aem.algorithms.advantages import AdvantageConfig, AdvantageInputs, compute_advantages
from aem.algorithms.analysis import predicted_entropy_drift, quadrant_keep_mask, span_quadrants
from aem.algorithms.kl import importance_corrected_kl, kl_penalty
from aem.algorithms.losses import (
    PolicyLossConfig,
    aggregate_loss,
    entropy_bonus,
    get_policy_loss,
)
from aem.algorithms.modulation import ModulationConfig, get_modulation
from aem.algorithms.shaping import overlong_penalty
from aem.batch import SpanBatch
from aem.checks import require_finite, trusted_inputs
from aem.policy.runner import CriticRunner, PolicyRunner
from aem.trainer.config import AlgorithmConfig, OptimConfig

T = TypeVar("T")

SCORE_ROWS = 64
"""Rows per no-grad scoring chunk."""

POLICY_FIELDS = ("loss_mask", "old_log_probs", "advantages", "ref_log_probs")
CRITIC_FIELDS = ("loss_mask", "returns", "values")
"""The span fields each update reads (the others are not carried into its mini-batches)."""

MicroLoss = Callable[[SpanBatch], tuple[Tensor, dict[str, float]]]
"""The loss of one micro-batch and its metrics."""


# ----------------------------------------------------------------------------- scoring


@torch.no_grad()
def score(batch: SpanBatch, policy: PolicyRunner, rows_per_chunk: int = SCORE_ROWS) -> None:
    """``old_log_probs`` and ``entropy`` (Eq. 5): one pass over the rows, in chunks of rows of
    similar length cropped to their tokens (:meth:`SpanBatch.chunks`). AEM's entropy comes from
    this pass, never from an extra one."""
    batch["old_log_probs"], batch["entropy"] = _score_spans(batch, policy, rows_per_chunk)


@dataclass
class HeldForward:
    """The update's own forward, run before any advantage exists (``optim.fused_scoring``): per
    chunk of rows, the ids of its spans, their log-probs with the graph, and their entropy with
    the graph when the loss has an entropy bonus (else None)."""

    chunks: list[tuple[Tensor, Tensor, Tensor | None]]


def score_for_update(
    batch: SpanBatch, policy: PolicyRunner, entropy_graph: bool, rows_per_chunk: int = SCORE_ROWS
) -> HeldForward:
    """``old_log_probs`` and ``entropy`` as :func:`score` writes them, taken from a forward with
    grad whose graph :func:`update_policy_fused` then differentiates: with one epoch and one
    mini-batch the old log-probs are the update's own (TRL's ``num_iterations=1``), so the
    scoring pass is saved and AEM's entropy still comes from the pass that gives them. Holds the
    whole batch's graph until the update."""
    log_probs = torch.zeros(batch.span_mask().shape)
    entropy = torch.zeros_like(log_probs)
    held = []
    policy.train()
    with trusted_inputs():  # rows built by SpanBatch
        for spans, chunk in batch.chunks(rows_per_chunk):
            out = policy.score(chunk.input_ids, chunk.attention_mask, chunk.response_mask)
            chunk_log_probs, chunk_entropy = (
                chunk.to_spans(out.log_probs),
                chunk.to_spans(out.entropy),
            )
            log_probs[spans] = chunk_log_probs.detach()
            entropy[spans] = chunk_entropy.detach()
            held.append((spans, chunk_log_probs, chunk_entropy if entropy_graph else None))
    batch["old_log_probs"], batch["entropy"] = log_probs, entropy
    return HeldForward(held)


@torch.no_grad()
def reference(batch: SpanBatch, reference: PolicyRunner, rows_per_chunk: int = SCORE_ROWS) -> None:
    """``ref_log_probs``: the same pass under the frozen KL reference."""
    batch["ref_log_probs"] = _score_spans(batch, reference, rows_per_chunk)[0]


def _score_spans(
    batch: SpanBatch, policy: PolicyRunner, rows_per_chunk: int
) -> tuple[Tensor, Tensor]:
    log_probs = torch.zeros(batch.span_mask().shape)
    entropy = torch.zeros_like(log_probs)
    with trusted_inputs():  # rows built by SpanBatch
        for spans, chunk in batch.chunks(rows_per_chunk):
            out = policy.score(chunk.input_ids, chunk.attention_mask, chunk.response_mask)
            log_probs[spans] = chunk.to_spans(out.log_probs)
            entropy[spans] = chunk.to_spans(out.entropy)
    return log_probs, entropy


@torch.no_grad()
def values(batch: SpanBatch, critic: CriticRunner) -> None:
    """``values``: the critic's value of every response token, one pass over all rows."""
    batch["values"] = batch.to_spans(critic.values(batch.input_ids, batch.attention_mask))


# ----------------------------------------------------------------------------- advantages


def scores(batch: SpanBatch, algo: AlgorithmConfig, max_response_tokens: int) -> Tensor:
    """verl-agent's per-span score: the trajectory's return plus the span's own penalty
    (``reward - env_reward``: every turn of a trajectory shares the outcome, invalid turns are
    marked down), plus DAPO's soft overlong penalty when ``algo.overlong_buffer`` is set."""
    result = batch["episode_return"].float() + (batch["reward"] - batch["env_reward"])
    if algo.overlong_buffer:
        result = result + overlong_penalty(
            batch.span_mask().sum(dim=1),
            max_response_tokens,
            algo.overlong_buffer * max_response_tokens,
            algo.overlong_factor,
        )
    return result


def span_inputs(batch: SpanBatch) -> AdvantageInputs:
    """The per-span view the estimators and modulations get."""
    return AdvantageInputs(
        response_mask=batch.span_mask(),
        group_id=batch["group"],
        traj_id=batch["traj"],
        turn=batch["turn"],
        scores=batch["scores"],
        step_rewards=batch["reward"],
        values=batch.get("values"),
        anchor_id=batch["anchor"],
    )


def advantage_config(algo: AlgorithmConfig) -> AdvantageConfig:
    return AdvantageConfig(
        epsilon=algo.advantage_eps,
        norm_by_std=bool(algo.norm_by_std),
        grpo_stats=algo.grpo_stats,
        std_scope=algo.std_scope,
        gamma=algo.gamma,
        lam=algo.lam,
        gae_whiten=algo.gae_whiten,
        gigpo_step_weight=algo.gigpo_step_weight,
        gigpo_step_gamma=algo.gigpo_step_gamma,
    )


def advantages(batch: SpanBatch, algo: AlgorithmConfig, max_response_tokens: int) -> None:
    """``scores``, then the estimator's ``advantages`` and ``returns`` and each span's mean
    advantage ``span_advantage`` (before any modulation)."""
    batch["scores"] = scores(batch, algo, max_response_tokens)
    mask = batch.span_mask()
    advantage, returns = compute_advantages(
        algo.estimator, span_inputs(batch), advantage_config(algo)
    )
    batch["advantages"], batch["returns"] = advantage, returns
    batch["span_advantage"] = (advantage * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def modulate(batch: SpanBatch, name: str, config: ModulationConfig) -> dict[str, float]:
    """The modulation ``name`` (``aem``: Eq. 13-15; ``none``) rescales ``advantages`` and sets
    ``span_entropy`` and ``weight``; returns its statistics."""
    result = get_modulation(name)(batch["advantages"], batch["entropy"], span_inputs(batch), config)
    batch["advantages"] = result.advantages
    batch["span_entropy"], batch["weight"] = result.span_entropy, result.weights
    return {key: float(value) for key, value in result.stats.items()}


def analysis(batch: SpanBatch, mask_quadrant: str | None) -> dict[str, float]:
    """The predicted entropy drift (Eq. 16-17) and ``loss_mask``: every span token, or with
    ``mask_quadrant`` (Analysis A) none of the spans in those quadrants."""
    span_advantage, span_entropy, group = (
        batch["span_advantage"],
        batch["span_entropy"],
        batch["group"],
    )
    drift = predicted_entropy_drift(span_advantage, span_entropy, group, batch["weight"])
    record = {key: float(value) for key, value in drift.items()}
    loss_mask = batch.span_mask()
    if mask_quadrant is not None:
        keep = quadrant_keep_mask(
            span_quadrants(span_advantage, span_entropy, group), mask_quadrant
        )
        loss_mask = loss_mask & keep[:, None]
        record["analysis/masked_span_frac"] = float((~keep).float().mean())
    batch["loss_mask"] = loss_mask
    return record


@torch.no_grad()
def same_batch_drift(
    batch: SpanBatch, policy: PolicyRunner, rows_per_chunk: int = SCORE_ROWS
) -> dict[str, float]:
    """The entropy change an update caused on its own batch, beside its first-order prediction.

    After the update the batch is scored again (one extra scoring pass); ``drift/same_batch_
    measured`` is the change of mean token entropy over the batch's response tokens, and
    ``drift/same_batch_token_prediction`` the token-level form of Theorem 3.2.2 from the pass
    before the update: the mean over the loss tokens of A_t (-log p_t - H_t), with A the
    advantages the loss used (modulated) — a unit-step prediction, so compare signs and trends.
    The AEM proxy of the same update (Eq. 16-17) is ``drift/total``."""
    response, loss = batch.span_mask(), batch["loss_mask"]
    before = batch["entropy"]
    _, after = _score_spans(batch, policy, rows_per_chunk)
    measured = torch.where(response, after - before, 0.0).sum() / response.sum().clamp(min=1)
    surprisal_gap = -batch["old_log_probs"] - before
    advantage = batch["advantages"].to(before.dtype)
    predicted = torch.where(loss, advantage * surprisal_gap, 0.0).sum() / loss.sum().clamp(min=1)
    return {
        "drift/same_batch_measured": float(measured),
        "drift/same_batch_token_prediction": float(predicted),
    }


# ----------------------------------------------------------------------------- update


def loss_units(mask: Tensor, agg_mode: str) -> Tensor:
    """What ``agg_mode`` averages over: kept tokens (``token-mean``) or spans with a kept token
    (the ``seq-mean-*`` modes). A micro-batch's loss weighs its share of the mini-batch's units,
    so the accumulated gradient is the gradient of the whole mini-batch's loss."""
    return mask.sum() if agg_mode == "token-mean" else mask.any(dim=1).sum()


def policy_loss_config(algo: AlgorithmConfig) -> PolicyLossConfig:
    return PolicyLossConfig(
        clip_low=algo.clip_low,
        clip_high=algo.clip_high,
        dual_clip_c=algo.dual_clip_c,
        agg_mode=algo.agg_mode,
        norm_length=algo.norm_length,
    )


def optimized_parameters(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    """The parameters ``optimizer`` steps: the gradient norm is clipped and reported over these
    only, so a stale ``.grad`` on a frozen parameter can never enter it."""
    return [param for group in optimizer.param_groups for param in group["params"]]


def gradient_steps(
    runner: PolicyRunner | CriticRunner,
    optimizer: torch.optim.Optimizer,
    batch: SpanBatch,
    optim: OptimConfig,
    generator: torch.Generator,
    agg_mode: str,
    micro_loss: MicroLoss,
) -> list[dict[str, float]]:
    """``optim.epochs`` passes over shuffled mini-batches of ``optim.mini_batch_rows`` rows, one
    optimiser step each; a mini-batch runs as length-sorted micro-batches of at most
    ``optim.micro_batch_tokens`` padded tokens with accumulated gradients (:func:`loss_units`).
    Returns each step's metrics (micro-batches weighted by their units) and its ``grad_norm``
    (before clipping to ``optim.grad_clip``). The batch's span fields are checked once by the
    caller, so the micro-batches run under :func:`~aem.checks.trusted_inputs`."""
    steps = []
    runner.train()
    with trusted_inputs():
        for _ in range(optim.epochs):
            for part in batch.minibatches(optim.mini_batch_rows, generator):
                total = loss_units(part["loss_mask"], agg_mode)
                if int(total) == 0:
                    continue
                shares = (
                    (float(loss_units(micro["loss_mask"], agg_mode) / total), micro)
                    for micro in part.microbatches(optim.micro_batch_tokens)
                )
                steps.append(accumulated_step(optimizer, optim, shares, micro_loss))
    runner.eval()
    return steps


def accumulated_step(
    optimizer: torch.optim.Optimizer,
    optim: OptimConfig,
    shares: Iterable[tuple[float, T]],
    loss_of: Callable[[T], tuple[Tensor, dict[str, float]]],
) -> dict[str, float]:
    """One optimiser step whose gradient accumulates ``share * loss`` over the ``(share, part)``
    pairs (parts with share 0 are skipped); returns the share-weighted metrics and ``grad_norm``
    (before clipping to ``optim.grad_clip``)."""
    optimizer.zero_grad(set_to_none=True)
    step: dict[str, float] = {}
    for share, part in shares:
        if share == 0.0:
            continue
        loss, metrics = loss_of(part)
        (share * loss).backward()
        for key, value in metrics.items():
            step[key] = step.get(key, 0.0) + share * value
    grad_norm = torch.nn.utils.clip_grad_norm_(optimized_parameters(optimizer), optim.grad_clip)
    optimizer.step()
    step["grad_norm"] = float(grad_norm)
    return step


def policy_loss(
    fields: Mapping[str, Tensor],
    log_probs: Tensor,
    entropy: Tensor | None,
    algo: AlgorithmConfig,
) -> tuple[Tensor, dict[str, float]]:
    """The loss of spans whose ``loss_mask``, ``old_log_probs``, ``advantages`` (and
    ``ref_log_probs``) are ``fields``, at the current ``log_probs`` (and ``entropy``, for the
    bonus), and its ``actor/*`` metrics."""
    mask = fields["loss_mask"]
    pg_loss, pg_metrics = get_policy_loss(algo.loss)(
        fields["old_log_probs"], log_probs, fields["advantages"], mask, policy_loss_config(algo)
    )
    metrics = {f"actor/{key}": float(value.detach()) for key, value in pg_metrics.items()}
    metrics["actor/pg_loss"] = _finite("the policy loss", float(pg_loss.detach()))
    loss = pg_loss
    if "ref_log_probs" in fields and algo.kl_coef > 0:
        per_token_kl = kl_penalty(log_probs, fields["ref_log_probs"], algo.kl_kind, algo.kl_clamp)
        if algo.kl_bias_correction:  # TRL's use_bias_correction_kl
            per_token_kl = importance_corrected_kl(per_token_kl, log_probs, fields["old_log_probs"])
        kl = aggregate_loss(per_token_kl, mask, algo.agg_mode)
        loss = loss + algo.kl_coef * kl
        metrics["actor/kl"] = float(kl.detach())
    if algo.entropy_coef > 0 and entropy is not None:
        loss = loss - algo.entropy_coef * entropy_bonus(entropy, mask, algo.agg_mode)
    return loss, metrics


def _check_policy_fields(batch: SpanBatch) -> None:
    for name in ("old_log_probs", "advantages", "ref_log_probs"):
        if name in batch:
            require_finite(name, batch[name], where=batch["loss_mask"])


def update_policy(
    batch: SpanBatch,
    policy: PolicyRunner,
    optimizer: torch.optim.Optimizer,
    algo: AlgorithmConfig,
    optim: OptimConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """The policy's :func:`gradient_steps` on ``loss_mask``, ``old_log_probs``, ``advantages``
    (and ``ref_log_probs``); returns the mean of each ``actor/*`` metric over the steps."""
    _check_policy_fields(batch)
    bonus = algo.entropy_coef > 0

    def micro_loss(part: SpanBatch) -> tuple[Tensor, dict[str, float]]:
        scored = policy.score(part.input_ids, part.attention_mask, part.response_mask, bonus)
        entropy = part.to_spans(scored.entropy) if bonus else None
        return policy_loss(part, part.to_spans(scored.log_probs), entropy, algo)

    steps = gradient_steps(
        policy, optimizer, batch.keep(*POLICY_FIELDS), optim, generator, algo.agg_mode, micro_loss
    )
    for step in steps:
        step["actor/grad_norm"] = step.pop("grad_norm")
    return _mean_over(steps)


def update_policy_fused(
    batch: SpanBatch,
    held: HeldForward,
    policy: PolicyRunner,
    optimizer: torch.optim.Optimizer,
    algo: AlgorithmConfig,
    optim: OptimConfig,
) -> dict[str, float]:
    """One optimiser step on the whole batch from the forward :func:`score_for_update` held:
    each chunk's loss weighs its share of the batch's loss units (:func:`loss_units`), as the
    micro-batches of :func:`gradient_steps` do, so the step is that of one mini-batch."""
    _check_policy_fields(batch)
    total = loss_units(batch["loss_mask"], algo.agg_mode)
    step: dict[str, float] = {}
    if int(total) > 0:
        shares = []
        for spans, log_probs, entropy in held.chunks:
            fields = {name: batch[name][spans] for name in POLICY_FIELDS if name in batch}
            share = float(loss_units(fields["loss_mask"], algo.agg_mode) / total)
            shares.append((share, (fields, log_probs, entropy)))
        step = accumulated_step(optimizer, optim, shares, lambda part: policy_loss(*part, algo))
        step["actor/grad_norm"] = step.pop("grad_norm")
    held.chunks.clear()  # the graph is freed
    policy.eval()
    return step


def update_critic(
    batch: SpanBatch,
    critic: CriticRunner,
    optimizer: torch.optim.Optimizer,
    algo: AlgorithmConfig,
    optim: OptimConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """The critic's :func:`gradient_steps`: clipped value regression to ``returns`` (PPO's
    critic loss; the value moves at most ``algo.value_clip`` from ``values``), token-mean;
    returns the mean ``critic/value_loss`` over the steps."""
    value_clip = algo.value_clip
    for name in ("values", "returns"):
        require_finite(name, batch[name], where=batch["loss_mask"])

    def micro_loss(part: SpanBatch) -> tuple[Tensor, dict[str, float]]:
        predicted = part.to_spans(critic.values(part.input_ids, part.attention_mask))
        old, returns = part["values"], part["returns"]
        clipped = old + (predicted - old).clamp(-value_clip, value_clip)
        loss_mat = torch.maximum((predicted - returns) ** 2, (clipped - returns) ** 2)
        loss = 0.5 * aggregate_loss(loss_mat, part["loss_mask"], "token-mean")
        return loss, {"critic/value_loss": _finite("the value loss", float(loss.detach()))}

    steps = gradient_steps(
        critic, optimizer, batch.keep(*CRITIC_FIELDS), optim, generator, "token-mean", micro_loss
    )
    losses = [step["critic/value_loss"] for step in steps]
    return {"critic/value_loss": sum(losses) / len(losses) if losses else float("nan")}


def _finite(what: str, value: float) -> float:
    """``value``, or a ValueError when the model's outputs made it non-finite (the inputs were
    checked finite at the phase's start)."""
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value}: the model's outputs are not")
    return value


def _mean_over(steps: list[dict[str, float]]) -> dict[str, float]:
    values: dict[str, list[float]] = {}
    for step in steps:
        for key, value in step.items():
            values.setdefault(key, []).append(value)
    return {key: sum(v) / len(v) for key, v in values.items()}


# ----------------------------------------------------------------------------- metrics


def metrics(batch: SpanBatch) -> dict[str, float]:
    """The batch's entropy, advantage sign, weight spread and size."""
    weight = batch["weight"]
    return {
        "entropy/response_mean": float(batch["span_entropy"].mean()),
        "entropy/token_mean": float(batch["entropy"][batch.span_mask()].mean()),
        "advantage/positive_span_frac": float((batch["span_advantage"] > 0).float().mean()),
        "aem/weight_span_std": float(weight.std()) if weight.numel() > 1 else 0.0,
        "throughput/tokens": float(batch.attention_mask.sum()),
        "rollout/rows": float(batch.num_rows),
        "rollout/response_tokens": float(batch.span_length.float().mean()),
    }
