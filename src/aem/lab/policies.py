"""Small autoregressive policies whose token and response entropies are exact.

A response is L tokens from a vocabulary of V, sampled token by token; the N = V**L responses are
listed in lexicographic order (as :func:`aem.algorithms.theory.all_responses`). The policy has one
token distribution per *context* (state, prefix): the P = sum_{t<L} V**t prefixes of every state
are numbered depth by depth, prefix ``y_<t`` getting
``(V**t - 1) / (V - 1) + sum_i y_i V**(t-1-i)``, which is the layout of
:class:`aem.algorithms.theory.AutoregressivePolicy` concatenated over t.

Logits are ``[R, S, P, V]`` (R runs, S observed states) = a fixed "pretrained" base plus a
trainable part:

- :class:`TabularPolicy`: one free logit per (state, prefix, token) (the tabular softmax of
  Theorem 3.2.2; its natural gradient is the Fisher-Rao gradient on every state's response
  simplex).
- :class:`LogLinearPolicy`: logits ``W[prefix, token] . psi(state)`` with shared state features
  ``psi`` (a one-hot of the state's role plus a random embedding of the instance state), so one
  response's update moves other states' and responses' probabilities: the parameterised case of
  App. C.5 with its kernel-weighted baseline.

Both give the gradient of an objective in parameter space from its gradient in logit space, and
the exact natural gradient for the batch Fisher ``F = mean_j E_{y~pi(.|s_j)}[score score^T]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from aem.algorithms.theory import all_responses
from aem.lab import rng


class LogitGradient(NamedTuple):
    """The objective's gradient in logit space and what a natural step needs."""

    value: Tensor  # [R', S, P, V] dJ/dz
    over_probs: Tensor  # [R', S, P, V] dJ/dz / p, computed without dividing by underflowed p
    context_weight: Tensor  # [R', S, P] the batch Fisher's weight of each context


POLICIES: tuple[str, ...] = ("tabular", "loglinear")
_BASE_STREAM = 200
_FEATURE_STREAM = 210


@dataclass(frozen=True)
class ResponseSpace:
    """Responses of L tokens over a vocabulary of V and the contexts they pass through."""

    vocab: int
    length: int

    @property
    def num_responses(self) -> int:
        return self.vocab**self.length

    @property
    def num_contexts(self) -> int:
        return sum(self.vocab**t for t in range(self.length))

    def offset(self, depth: int) -> int:
        """Id of the first context of prefix length ``depth``."""
        return sum(self.vocab**t for t in range(depth))

    @property
    def tokens(self) -> Tensor:
        """``[N, L]`` the tokens of every response."""
        return all_responses(self.vocab, self.length)

    @property
    def contexts(self) -> Tensor:
        """``[N, L]`` the context each token of every response is sampled in."""
        index = torch.arange(self.num_responses)
        return torch.stack(
            [self.offset(t) + index // self.vocab ** (self.length - t) for t in range(self.length)],
            dim=1,
        )

    def token_index(self, state: Tensor, response: Tensor) -> tuple[Tensor, Tensor]:
        """``(state * P + context, token)`` of every token of the given responses, each
        ``[*state.shape, L]``: where each token was sampled in a ``[S * P]`` table, and which."""
        return state[..., None] * self.num_contexts + self.contexts[response], self.tokens[response]


@dataclass(frozen=True)
class PolicyTables:
    """Exact quantities of a logit table ``[R, S, P, V]`` at every state."""

    log_probs: Tensor  # [R, S, P, V] token log-probabilities per context
    context_entropy: Tensor  # [R, S, P] token entropy of each context (Eq. 5)
    response_log_probs: Tensor  # [R, S, N] log pi(y | s) (Eq. 22)
    response_entropy: Tensor  # [R, S] H(pi(. | s)) (Eq. 4)
    prefix_probs: Tensor  # [R, S, P] probability of reaching each context


def policy_tables(logits: Tensor, space: ResponseSpace) -> PolicyTables:
    """Token and response distributions and entropies of every state, by enumeration."""
    log_probs = logits - logits.logsumexp(-1, keepdim=True)  # 2x log_softmax's speed at V = 3
    probs = log_probs.exp()
    context_entropy = -(probs * log_probs).sum(-1)
    response_log_probs = log_probs[:, :, space.contexts, space.tokens].sum(-1)
    response_entropy = -(response_log_probs.exp() * response_log_probs).sum(-1)
    prefix_probs = torch.ones_like(context_entropy)
    for depth in range(1, space.length):
        start, count = space.offset(depth), space.vocab**depth
        parents = space.offset(depth - 1) + torch.arange(count) // space.vocab
        last = torch.arange(count) % space.vocab
        prefix_probs[:, :, start : start + count] = (
            prefix_probs[:, :, parents] * probs[:, :, parents, last]
        )
    return PolicyTables(
        log_probs, context_entropy, response_log_probs, response_entropy, prefix_probs
    )


def prior_logits(
    plausible: Tensor, space: ResponseSpace, boost: float, noise: float, seeds: Tensor, dtype
) -> Tensor:
    """The "pretrained" base logits ``[R, S, P, V]``.

    Response prior q(y|s) proportional to ``exp(boost * plausible[s, y])``, written exactly as
    token logits (the log mass of each prefix's continuations), plus N(0, noise^2) per token logit
    so that responses of equal prior differ in token entropy.
    """
    runs, states, responses = plausible.shape
    weight = torch.exp(boost * plausible.to(dtype))
    weight = weight / weight.sum(-1, keepdim=True)
    logits = torch.zeros(runs, states, space.num_contexts, space.vocab, dtype=dtype)
    index = torch.arange(responses)
    for depth in range(space.length):
        children = space.vocab ** (depth + 1)
        prefix = index // space.vocab ** (space.length - depth - 1)
        mass = torch.zeros(runs, states, children, dtype=dtype).index_add_(2, prefix, weight)
        start = space.offset(depth)
        logits[:, :, start : start + space.vocab**depth] = mass.log().view(
            runs, states, space.vocab**depth, space.vocab
        )
    shape = (states, space.num_contexts, space.vocab)
    return logits + noise * rng.normal(seeds, _BASE_STREAM, 0, shape, dtype)


class TabularPolicy:
    """Free logits per (state, prefix, token) on top of the base."""

    def __init__(self, base: Tensor):
        self.base = base
        self.params = torch.zeros_like(base)

    def logits(self) -> Tensor:
        return self.base + self.params

    def parameter_gradient(self, logit_gradient: Tensor) -> Tensor:
        return logit_gradient

    def natural_direction(self, gradient: LogitGradient, tables: PolicyTables) -> Tensor:
        """F^+ g with F block-diagonal: ``weight[r, s, c] (diag p - p p^T)`` per context.

        The minimum-norm solution per context, ``(g / p - mean(g / p)) / weight``
        (:func:`aem.algorithms.theory.logit_natural_gradient` per block); contexts of weight 0
        have g = 0 and do not move.
        """
        scaled = gradient.over_probs
        direction = scaled - scaled.mean(-1, keepdim=True)
        weight = gradient.context_weight[..., None]
        return torch.where(weight > 0, direction / torch.where(weight > 0, weight, 1.0), 0.0)


class LogLinearPolicy:
    """Logits ``base + W[prefix, token] . psi(state)`` with shared features ``psi``."""

    def __init__(self, base: Tensor, features: Tensor):
        runs, _, contexts, vocab = base.shape
        self.base = base
        self.features = features  # [R, S, D]
        self.params = base.new_zeros(runs, contexts, vocab, features.shape[-1])

    def logits(self) -> Tensor:
        return self.base + torch.einsum("rpvd,rsd->rspv", self.params, self.features)

    def parameter_gradient(self, logit_gradient: Tensor) -> Tensor:
        return torch.einsum("rspv,rsd->rpvd", logit_gradient, self.features)

    def natural_direction(self, gradient: LogitGradient, tables: PolicyTables) -> Tensor:
        """F^+ grad_W J, F the batch Fisher in W (block-diagonal over prefixes), pseudo-inverse
        by eigendecomposition (eigenvalues below 1e-10 of the largest are dropped)."""
        probs = tables.log_probs.exp()  # [R, S, P, V]
        covariance = torch.diag_embed(probs) - probs[..., :, None] * probs[..., None, :]
        weighted = covariance * gradient.context_weight[..., None, None]  # [R, S, P, V, V]
        fisher = torch.einsum("rspvu,rsd,rse->rpvdue", weighted, self.features, self.features)
        runs, contexts, vocab, dim = self.params.shape
        fisher = fisher.reshape(runs, contexts, vocab * dim, vocab * dim)
        flat = self.parameter_gradient(gradient.value).reshape(runs, contexts, vocab * dim)
        values, vectors = torch.linalg.eigh(fisher)
        cutoff = 1e-10 * values.amax(-1, keepdim=True).clamp(min=1e-300)
        inverse = torch.where(values > cutoff, 1.0 / values.clamp(min=1e-300), 0.0)
        coords = torch.einsum("rpki,rpk->rpi", vectors, flat) * inverse
        return torch.einsum("rpki,rpi->rpk", vectors, coords).reshape(self.params.shape)


def state_features(
    seeds: Tensor, instances: int, states_per_instance: int, embed_dim: int, dtype
) -> Tensor:
    """``[R, M * S, S + embed_dim]``: one-hot of the state's role in its instance, then a random
    N(0, 1/embed_dim) embedding of the instance state (fixed per seed)."""
    role = torch.eye(states_per_instance, dtype=dtype).repeat(instances, 1)
    runs = seeds.shape[0]
    embedding = (
        rng.normal(seeds, _FEATURE_STREAM, 0, (instances * states_per_instance, embed_dim), dtype)
        / embed_dim**0.5
    )
    return torch.cat([role.expand(runs, -1, -1), embedding], dim=-1)
