"""Update rules: exact natural gradient, plain softmax policy gradient, Adam, Adam with PPO-style
clipping. All ascend J = (1 / n) sum_j A'_j log pi(y_j | s_j) (n = played turns of the run, A' the
arm's advantage), each run on its own parameters.

The logit-space gradient is closed-form: at context c of state s,
``dJ/dz[s, c] = (1 / n) sum_{tokens (j, t) in c} A'_j (onehot(y_jt) - p(. | s, c))``. A natural
step preconditions it with a batch Fisher, block-diagonal over contexts:

- ``natural``: block ``(n_s / n) P(c | s) (diag p - p p^T)`` at context c (n_s: the batch's turns
  at s; P(c | s): the probability of reaching the prefix): the exact expected Fisher of
  log pi(y | s) over the batch's states. For the tabular policy it pushes forward to the
  Fisher-Rao gradient on each state's *response* simplex, so the first-order change of the exact
  response entropy on the batch's states is Theorem 3.2.2's mean of A (surprisal - H).
- ``natural_token``: block ``(n_c / (n L)) (diag p - p p^T)`` (n_c: the batch's tokens sampled in
  context c): the Fisher over the batch's own token contexts. For the tabular policy it is the
  Fisher-Rao gradient on each sampled context's *token* simplex, so the first-order change of the
  token entropy on the batch's own tokens is the mean of A sum_t (-log p_t - H_t) over L.

With ``trust_region`` a natural step is rescaled to unit Fisher norm, ``F^+ g / sqrt(g^T F^+ g)``
(Kakade 2001's natural policy gradient with a fixed KL per update, ~ lr^2 / 2), which keeps
learning runs stable when a rarely reached context gets a huge 1 / weight; the drift checks use
the plain step. ``ppo`` runs ``ppo_epochs`` Adam steps on the clipped surrogate
``min(r A, clip(r, 1 - eps, 1 + eps) A)`` per token (r = pi / pi_old), whose gradient is the
policy-gradient term weighted by r on unclipped tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from aem.lab.policies import LogitGradient, PolicyTables, ResponseSpace

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class BatchTurns:
    """The turns an update learns from: ``[R', B, G, K]`` (advantage = the arm's A')."""

    state: Tensor
    response: Tensor
    alive: Tensor
    advantage: Tensor
    space: ResponseSpace

    def token_index(self) -> tuple[Tensor, Tensor]:
        """``[R', B, G, K, L]`` flat (state, context) index of every token, and the tokens."""
        return self.space.token_index(self.state, self.response)

    def counts(self) -> Tensor:
        """``[R']`` played turns per run (at least 1)."""
        return self.alive.sum((1, 2, 3)).clamp(min=1)


def logit_gradient(
    turns: BatchTurns,
    old: PolicyTables,
    current: PolicyTables,
    clip: float | None = None,
    token_fisher: bool = False,
) -> LogitGradient:
    """dJ/dz and the batch Fisher's context weights at ``current`` (:class:`LogitGradient`).

    With ``clip`` the PPO surrogate's gradient (ratios against ``old``); without, J's. The
    weights are the response-level Fisher's, or with ``token_fisher`` the token-level one's.
    """
    runs, states, contexts, vocab = current.log_probs.shape
    where, tokens = turns.token_index()
    count = turns.counts().to(current.log_probs.dtype)
    per_turn = turns.advantage * turns.alive / count[:, None, None, None]
    weight = per_turn[..., None].expand(where.shape)
    chosen_index = (where * vocab + tokens).view(runs, -1)
    if clip is not None:
        old_lp = old.log_probs.reshape(runs, -1).gather(1, chosen_index).view(where.shape)
        new_lp = current.log_probs.reshape(runs, -1).gather(1, chosen_index).view(where.shape)
        ratio = torch.exp(new_lp - old_lp)
        sign = turns.advantage[..., None].expand(where.shape)
        clipped = ((sign > 0) & (ratio > 1 + clip)) | ((sign < 0) & (ratio < 1 - clip))
        weight = torch.where(clipped, 0.0, weight * ratio)
    flat_weight = weight.reshape(runs, -1)
    totals = current.log_probs.new_zeros(runs, states * contexts)
    totals.scatter_add_(1, where.view(runs, -1), flat_weight)
    chosen = current.log_probs.new_zeros(runs, states * contexts * vocab)
    chosen.scatter_add_(1, chosen_index, flat_weight)
    probs = current.log_probs.exp()
    chosen, totals = chosen.view_as(probs), totals.view(runs, states, contexts, 1)
    gradient = chosen - totals * probs
    # g / p without 0 / 0 where a token's probability underflows: only sampled tokens divide.
    inverse = torch.exp(-current.log_probs.clamp(min=-80.0))
    over_probs = torch.where(chosen != 0, chosen * inverse, 0.0) - totals
    if token_fisher:  # share of the batch's tokens sampled in each context
        played = turns.alive[..., None].expand(where.shape).reshape(runs, -1).to(probs.dtype)
        context_weight = current.log_probs.new_zeros(runs, states * contexts)
        context_weight.scatter_add_(1, where.view(runs, -1), played)
        context_weight = context_weight.view(runs, states, contexts) / (
            count * where.shape[-1]
        ).view(runs, 1, 1)
    else:  # share of the batch's turns at each state times the probability of the prefix
        visits = current.log_probs.new_zeros(runs, states)
        visits.scatter_add_(
            1, turns.state.view(runs, -1), turns.alive.view(runs, -1).to(probs.dtype)
        )
        context_weight = (visits / count[:, None])[..., None] * current.prefix_probs
    return LogitGradient(gradient, over_probs, context_weight)


class Optimizer:
    """Applies one update rule to a policy's ``params`` (independent per run: every rule is
    elementwise or block-diagonal per run)."""

    def __init__(self, update: str, lr: float, params: Tensor, trust_region: bool = False):
        self.update, self.lr, self.steps, self.trust_region = update, lr, 0, trust_region
        if update in ("adam", "ppo"):
            self.first = torch.zeros_like(params)
            self.second = torch.zeros_like(params)

    def step(self, policy, logit_grad: LogitGradient, tables: PolicyTables) -> None:
        if self.update in ("natural", "natural_token"):
            direction = policy.natural_direction(logit_grad, tables)
            if self.trust_region:  # unit Fisher norm: KL(old || new) ~ lr^2 / 2 per update
                gradient = policy.parameter_gradient(logit_grad.value)
                norm = (gradient * direction).flatten(1).sum(-1).clamp(min=0).sqrt()
                scale = torch.where(norm > 0, 1.0 / norm.clamp(min=1e-30), 0.0)
                direction = direction * scale.view(-1, *([1] * (direction.dim() - 1)))
        else:
            direction = policy.parameter_gradient(logit_grad.value)
            if self.update != "pg":
                direction = self._adam(direction)
        policy.params += self.lr * direction

    def _adam(self, gradient: Tensor) -> Tensor:
        self.steps += 1
        beta1, beta2 = ADAM_BETAS
        self.first.mul_(beta1).add_(gradient, alpha=1 - beta1)
        self.second.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
        first = self.first / (1 - beta1**self.steps)
        second = self.second / (1 - beta2**self.steps)
        return first / (second.sqrt() + ADAM_EPS)
