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
from aem.algorithms.losses import PolicyLossConfig, aggregate_loss, entropy_bonus, get_policy_loss
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


def policy_loss_config(algo: AlgorithmConfig) -> PolicyLossConfig:
    return PolicyLossConfig(
        clip_low=algo.clip_low,
        clip_high=algo.clip_high,
        dual_clip_c=algo.dual_clip_c,
        agg_mode=algo.agg_mode,
        norm_length=None,
    )


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
) -> dict[str, float]:
    """``optim.epochs`` passes over shuffled mini-batches of ``optim.mini_batch_rows`` rows, one
    optimiser step each. Returns the mean of each metric over the steps."""
    loss_fn = get_policy_loss(algo.loss)
    loss_config = policy_loss_config(algo)
    log: dict[str, list[float]] = {}
    model.train()
    for _ in range(optim.epochs):
        for part in batch.mini_batches(optim.mini_batch_rows, generator):
            mask = part.loss_mask
            if not bool(mask.any()):
                continue
            rows = part.packed
            scored = score(
                model,
                rows.input_ids,
                rows.attention_mask,
                rows.response_mask,
                temperature=temperature,
                compute_entropy=algo.entropy_coef > 0,
                bf16=bf16,
            )
            log_probs = rows.to_spans(scored.log_probs)
            pg_loss, pg_metrics = loss_fn(
                part.old_log_probs, log_probs, part.advantages, mask, loss_config
            )
            loss = pg_loss
            if part.ref_log_probs is not None and algo.kl_coef > 0:
                kl = aggregate_loss(
                    kl_penalty(log_probs, part.ref_log_probs, algo.kl_kind), mask, algo.agg_mode
                )
                loss = loss + algo.kl_coef * kl
                log.setdefault("actor/kl", []).append(float(kl.detach()))
            if algo.entropy_coef > 0:
                bonus = entropy_bonus(rows.to_spans(scored.entropy), mask, algo.agg_mode)
                loss = loss - algo.entropy_coef * bonus
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
            optimizer.step()
            log.setdefault("actor/pg_loss", []).append(float(pg_loss.detach()))
            log.setdefault("actor/grad_norm", []).append(float(grad_norm))
            for key, value in pg_metrics.items():
                log.setdefault(f"actor/{key}", []).append(float(value))
    model.eval()
    return {key: _mean(values) for key, values in log.items()}


def update_critic(
    critic: CriticModel,
    optimizer: torch.optim.Optimizer,
    batch: UpdateBatch,
    optim: OptimConfig,
    generator: torch.Generator,
    bf16: bool,
    value_clip: float = 0.5,
) -> dict[str, float]:
    """Clipped value regression to the GAE returns (PPO's critic loss), token-mean."""
    if batch.returns is None or batch.old_values is None:
        raise ValueError("update_critic needs batch.returns and batch.old_values")
    losses: list[float] = []
    critic.train()
    for _ in range(optim.epochs):
        for part in batch.mini_batches(optim.mini_batch_rows, generator):
            mask = part.loss_mask
            if not bool(mask.any()):
                continue
            rows = part.packed
            values = rows.to_spans(critic.values(rows.input_ids, rows.attention_mask, bf16=bf16))
            clipped = part.old_values + (values - part.old_values).clamp(-value_clip, value_clip)
            loss_mat = torch.maximum((values - part.returns) ** 2, (clipped - part.returns) ** 2)
            loss = 0.5 * aggregate_loss(loss_mat, mask, "token-mean")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(critic.parameters(), optim.grad_clip)
            optimizer.step()
            losses.append(float(loss.detach()))
    critic.eval()
    return {"critic/value_loss": _mean(losses)}
