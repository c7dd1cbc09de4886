"""The policy (and critic) update: PPO-style epochs over mini-batches of model rows (turns or
trajectories, :class:`aem.batch.SpanBatch`); the losses see one row per response span.

loss = policy loss (PPO clip / GSPO, chosen aggregation) + kl_coef * KL(pi || ref)
       - entropy_coef * entropy        (entropy_coef defaults to 0: AEM needs no bonus)
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import PreTrainedModel

from aem.algorithms.kl import kl_penalty
from aem.algorithms.losses import (
    PolicyLossConfig,
    PolicyLossFn,
    aggregate_loss,
    entropy_bonus,
    get_policy_loss,
)
from aem.batch import SpanBatch
from aem.policy.scoring import score
from aem.policy.value import CriticModel
from aem.trainer.config import AlgorithmConfig, OptimConfig

POLICY_FIELDS = ("loss_mask", "old_log_probs", "advantages", "ref_log_probs")
CRITIC_FIELDS = ("loss_mask", "returns", "values")
"""The span fields each update reads (the others are not carried into its mini-batches)."""


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
        norm_length=None,
    )


def trainable_parameters(module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """``(name, parameter)`` of every parameter of ``module`` that requires grad, in module order:
    what an optimiser should hold (under LoRA only the adapters). Named, so the optimiser's
    state dict records which parameter each state belongs to (checked on resume)."""
    return [(name, param) for name, param in module.named_parameters() if param.requires_grad]


def optimized_parameters(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    """The parameters ``optimizer`` steps: the gradient norm is clipped and reported over these
    only, so a stale ``.grad`` on a frozen parameter can never enter it."""
    return [param for group in optimizer.param_groups for param in group["params"]]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def update_policy(
    model: PreTrainedModel,
    optimizer: torch.optim.Optimizer,
    batch: SpanBatch,
    algo: AlgorithmConfig,
    optim: OptimConfig,
    generator: torch.Generator,
    temperature: float,
    bf16: bool,
    body: torch.nn.Module | None = None,
) -> dict[str, float]:
    """``optim.epochs`` passes over shuffled mini-batches of ``optim.mini_batch_rows`` rows, one
    optimiser step each; a mini-batch runs as length-sorted micro-batches of at most
    ``optim.micro_batch_tokens`` padded tokens with accumulated gradients (:func:`loss_units`).
    Returns the mean of each metric over the steps (micro-batches weighted by their units).
    ``body``: the compiled body to score with (:func:`aem.policy.scoring.score`)."""
    loss_fn = get_policy_loss(algo.loss)
    loss_config = policy_loss_config(algo)
    log: dict[str, list[float]] = {}
    batch = batch.keep(*POLICY_FIELDS)
    model.train()
    for _ in range(optim.epochs):
        for part in batch.minibatches(optim.mini_batch_rows, generator):
            total = loss_units(part["loss_mask"], algo.agg_mode)
            if int(total) == 0:
                continue
            optimizer.zero_grad(set_to_none=True)
            step: dict[str, float] = {}
            for micro in part.microbatches(optim.micro_batch_tokens):
                share = float(loss_units(micro["loss_mask"], algo.agg_mode) / total)
                if share == 0.0:
                    continue
                loss, metrics = _policy_loss(
                    model, micro, algo, loss_fn, loss_config, temperature, bf16, body
                )
                (share * loss).backward()
                for key, value in metrics.items():
                    step[key] = step.get(key, 0.0) + share * value
            grad_norm = torch.nn.utils.clip_grad_norm_(
                optimized_parameters(optimizer), optim.grad_clip
            )
            optimizer.step()
            step["actor/grad_norm"] = float(grad_norm)
            for key, value in step.items():
                log.setdefault(key, []).append(value)
    model.eval()
    return {key: _mean(values) for key, values in log.items()}


def _policy_loss(
    model: PreTrainedModel,
    part: SpanBatch,
    algo: AlgorithmConfig,
    loss_fn: PolicyLossFn,
    loss_config: PolicyLossConfig,
    temperature: float,
    bf16: bool,
    body: torch.nn.Module | None,
) -> tuple[Tensor, dict[str, float]]:
    """Policy loss (+ KL, - entropy bonus) of one micro-batch and its metrics."""
    mask, rows = part["loss_mask"], part
    scored = score(
        model,
        rows.input_ids,
        rows.attention_mask,
        rows.response_mask,
        temperature=temperature,
        compute_entropy=algo.entropy_coef > 0,
        bf16=bf16,
        body=body,
    )
    log_probs = rows.to_spans(scored.log_probs)
    pg_loss, pg_metrics = loss_fn(
        part["old_log_probs"], log_probs, part["advantages"], mask, loss_config
    )
    metrics = {f"actor/{key}": float(value.detach()) for key, value in pg_metrics.items()}
    metrics["actor/pg_loss"] = float(pg_loss.detach())
    loss = pg_loss
    if "ref_log_probs" in part and algo.kl_coef > 0:
        kl = aggregate_loss(
            kl_penalty(log_probs, part["ref_log_probs"], algo.kl_kind), mask, algo.agg_mode
        )
        loss = loss + algo.kl_coef * kl
        metrics["actor/kl"] = float(kl.detach())
    if algo.entropy_coef > 0:
        bonus = entropy_bonus(rows.to_spans(scored.entropy), mask, algo.agg_mode)
        loss = loss - algo.entropy_coef * bonus
    return loss, metrics


def update_critic(
    critic: CriticModel,
    optimizer: torch.optim.Optimizer,
    batch: SpanBatch,
    optim: OptimConfig,
    generator: torch.Generator,
    bf16: bool,
    value_clip: float = 0.5,
    body: torch.nn.Module | None = None,
) -> dict[str, float]:
    """Clipped value regression to the GAE returns (PPO's critic loss), token-mean; ``body``:
    the critic's compiled body (:meth:`CriticModel.values`)."""
    if "returns" not in batch or "values" not in batch:
        raise ValueError("update_critic needs the span fields 'returns' and 'values'")
    losses: list[float] = []
    batch = batch.keep(*CRITIC_FIELDS)
    critic.train()
    for _ in range(optim.epochs):
        for part in batch.minibatches(optim.mini_batch_rows, generator):
            total = loss_units(part["loss_mask"], "token-mean")
            if int(total) == 0:
                continue
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for micro in part.microbatches(optim.micro_batch_tokens):
                share = float(loss_units(micro["loss_mask"], "token-mean") / total)
                if share == 0.0:
                    continue
                values = micro.to_spans(
                    critic.values(micro.input_ids, micro.attention_mask, bf16=bf16, body=body)
                )
                old, returns = micro["values"], micro["returns"]
                clipped = old + (values - old).clamp(-value_clip, value_clip)
                loss_mat = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
                loss = 0.5 * aggregate_loss(loss_mat, micro["loss_mask"], "token-mean")
                (share * loss).backward()
                step_loss += share * float(loss.detach())
            torch.nn.utils.clip_grad_norm_(optimized_parameters(optimizer), optim.grad_clip)
            optimizer.step()
            losses.append(step_loss)
    critic.eval()
    return {"critic/value_loss": _mean(losses)}
