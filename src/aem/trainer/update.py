"""The policy (and critic) update: PPO-style epochs over mini-batches of model rows (turns or
trajectories, :class:`aem.policy.packing.PackedBatch`); the losses see one row per response span.

loss = policy loss (PPO clip / GSPO, chosen aggregation) + kl_coef * KL(pi || ref)
       - entropy_coef * entropy        (entropy_coef defaults to 0: AEM needs no bonus)
"""

from __future__ import annotations

from dataclasses import dataclass

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
from aem.policy.packing import PackedBatch
from aem.policy.scoring import score
from aem.policy.value import CriticModel
from aem.trainer.config import AlgorithmConfig, OptimConfig


@dataclass
class UpdateBatch:
    """Everything the update needs: the model rows and, per response span, ``[S, R]`` tensors
    (span ``s`` as in ``packed``)."""

    packed: PackedBatch
    loss_mask: Tensor  # span tokens that enter the loss (Analysis A may drop some spans)
    old_log_probs: Tensor
    advantages: Tensor
    ref_log_probs: Tensor | None = None
    returns: Tensor | None = None
    old_values: Tensor | None = None

    @property
    def num_rows(self) -> int:
        return int(self.packed.input_ids.shape[0])

    def rows(self, index: Tensor) -> UpdateBatch:
        """The model rows ``index`` and their spans."""
        packed, spans = self.packed.select_rows(index)
        values = {
            name: None if value is None else value[spans]
            for name, value in vars(self).items()
            if name != "packed"
        }
        return UpdateBatch(packed=packed, **values)

    def mini_batches(self, size: int, generator: torch.Generator) -> list[UpdateBatch]:
        """Shuffled mini-batches of ``size`` model rows (the last may be smaller)."""
        order = torch.randperm(self.num_rows, generator=generator)
        return [self.rows(order[start : start + size]) for start in range(0, self.num_rows, size)]

    def micro_batches(self, max_tokens: int) -> list[UpdateBatch]:
        """This batch as rows of similar length, ``max_tokens`` padded tokens at most per
        forward (:meth:`PackedBatch.length_groups`), each cropped to its attended columns."""
        parts = [self.rows(group) for group in self.packed.length_groups(max_tokens)]
        for part in parts:
            part.packed = part.packed.cropped()
        return parts


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
    batch: UpdateBatch,
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
    model.train()
    for _ in range(optim.epochs):
        for part in batch.mini_batches(optim.mini_batch_rows, generator):
            total = loss_units(part.loss_mask, algo.agg_mode)
            if int(total) == 0:
                continue
            optimizer.zero_grad(set_to_none=True)
            step: dict[str, float] = {}
            for micro in part.micro_batches(optim.micro_batch_tokens):
                share = float(loss_units(micro.loss_mask, algo.agg_mode) / total)
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
    part: UpdateBatch,
    algo: AlgorithmConfig,
    loss_fn: PolicyLossFn,
    loss_config: PolicyLossConfig,
    temperature: float,
    bf16: bool,
    body: torch.nn.Module | None,
) -> tuple[Tensor, dict[str, float]]:
    """Policy loss (+ KL, - entropy bonus) of one micro-batch and its metrics."""
    mask, rows = part.loss_mask, part.packed
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
    pg_loss, pg_metrics = loss_fn(part.old_log_probs, log_probs, part.advantages, mask, loss_config)
    metrics = {f"actor/{key}": float(value.detach()) for key, value in pg_metrics.items()}
    metrics["actor/pg_loss"] = float(pg_loss.detach())
    loss = pg_loss
    if part.ref_log_probs is not None and algo.kl_coef > 0:
        kl = aggregate_loss(
            kl_penalty(log_probs, part.ref_log_probs, algo.kl_kind), mask, algo.agg_mode
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
    batch: UpdateBatch,
    optim: OptimConfig,
    generator: torch.Generator,
    bf16: bool,
    value_clip: float = 0.5,
    body: torch.nn.Module | None = None,
) -> dict[str, float]:
    """Clipped value regression to the GAE returns (PPO's critic loss), token-mean; ``body``:
    the critic's compiled body (:meth:`CriticModel.values`)."""
    if batch.returns is None or batch.old_values is None:
        raise ValueError("update_critic needs batch.returns and batch.old_values")
    losses: list[float] = []
    critic.train()
    for _ in range(optim.epochs):
        for part in batch.mini_batches(optim.mini_batch_rows, generator):
            total = loss_units(part.loss_mask, "token-mean")
            if int(total) == 0:
                continue
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for micro in part.micro_batches(optim.micro_batch_tokens):
                share = float(loss_units(micro.loss_mask, "token-mean") / total)
                if share == 0.0:
                    continue
                rows = micro.packed
                values = rows.to_spans(
                    critic.values(rows.input_ids, rows.attention_mask, bf16=bf16, body=body)
                )
                old = micro.old_values
                clipped = old + (values - old).clamp(-value_clip, value_clip)
                loss_mat = torch.maximum(
                    (values - micro.returns) ** 2, (clipped - micro.returns) ** 2
                )
                loss = 0.5 * aggregate_loss(loss_mat, micro.loss_mask, "token-mean")
                (share * loss).backward()
                step_loss += share * float(loss.detach())
            torch.nn.utils.clip_grad_norm_(optimized_parameters(optimizer), optim.grad_clip)
            optimizer.step()
            losses.append(step_loss)
    critic.eval()
    return {"critic/value_loss": _mean(losses)}
