"""The lab's update rules: natural-gradient steps against hand-computed cases and theory.py,
logit gradients against autograd, PPO clipping, Adam against torch.optim.Adam."""

from __future__ import annotations

import math

import pytest
import torch

from aem.algorithms import theory
from aem.lab.policies import (
    LogLinearPolicy,
    ResponseSpace,
    TabularPolicy,
    policy_tables,
)
from aem.lab.updates import BatchTurns, Optimizer, logit_gradient


def one_turn(response: int, advantage: float, space: ResponseSpace) -> BatchTurns:
    shape = (1, 1, 1, 1)
    return BatchTurns(
        state=torch.zeros(shape, dtype=torch.long),
        response=torch.full(shape, response),
        alive=torch.ones(shape, dtype=torch.bool),
        advantage=torch.full(shape, advantage, dtype=torch.float64),
        space=space,
    )


def test_natural_step_hand_computed():
    """p = (0.8, 0.2), sample y = 1 with A = 1: g = (-0.8, 0.8), g / p = (-1, 4), centred
    (-2.5, 2.5); it solves F dz = g, and pairs with dH to A (-log p_y - H) (Theorem 3.2.2)."""
    space = ResponseSpace(2, 1)
    logits = torch.tensor([[[[math.log(4.0), 0.0]]]], dtype=torch.float64)
    tables = policy_tables(logits, space)
    gradient = logit_gradient(one_turn(1, 1.0, space), tables, tables)
    torch.testing.assert_close(gradient.value[0, 0, 0], torch.tensor([-0.8, 0.8]).double())
    direction = TabularPolicy(logits).natural_direction(gradient, tables)[0, 0, 0]
    torch.testing.assert_close(direction, torch.tensor([-2.5, 2.5]).double())
    torch.testing.assert_close(
        direction, theory.logit_natural_gradient(logits[0, 0, 0], gradient.value[0, 0, 0])
    )
    pi = torch.tensor([0.8, 0.2], dtype=torch.float64)
    push_forward = (torch.diag(pi) - torch.outer(pi, pi)) @ direction
    drift = theory.entropy_directional_derivative(pi, push_forward)
    expected = -math.log(0.2) - float(theory.entropy(pi))
    assert abs(float(drift) - expected) < 1e-12 and drift > 0


def random_turns(seed: int, runs: int, states: int, space: ResponseSpace) -> BatchTurns:
    g = torch.Generator().manual_seed(seed)
    shape = (runs, 2, 3, 2)
    return BatchTurns(
        state=torch.randint(0, states, shape, generator=g),
        response=torch.randint(0, space.num_responses, shape, generator=g),
        alive=torch.rand(shape, generator=g) > 0.25,
        advantage=torch.randn(shape, generator=g, dtype=torch.float64),
        space=space,
    )


def objective(logits: torch.Tensor, turns: BatchTurns, space: ResponseSpace) -> torch.Tensor:
    """sum over runs of J = (1 / n) sum_j A_j log pi(y_j | s_j), written with autograd."""
    log_probs = policy_tables(logits, space).response_log_probs
    runs = logits.shape[0]
    chosen = log_probs.reshape(runs, -1).gather(
        1, (turns.state * space.num_responses + turns.response).view(runs, -1)
    )
    weight = torch.where(turns.alive, turns.advantage, 0.0).view(runs, -1)
    return ((weight * chosen).sum(-1) / turns.alive.view(runs, -1).sum(-1).clamp(min=1)).sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logit_gradient_equals_autograd(seed):
    space = ResponseSpace(3, 2)
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, space.num_contexts, 3, generator=g, dtype=torch.float64)
    turns = random_turns(seed, 2, 4, space)
    tables = policy_tables(logits, space)
    value = logit_gradient(turns, tables, tables).value
    leaf = logits.clone().requires_grad_(True)
    objective(leaf, turns, space).backward()
    torch.testing.assert_close(value, leaf.grad)
    # PPO's first epoch (ratio 1, nothing clipped) has the same gradient
    torch.testing.assert_close(logit_gradient(turns, tables, tables, clip=0.2).value, value)


def test_ppo_clips_tokens_outside_the_trust_band():
    space = ResponseSpace(2, 1)
    old = policy_tables(torch.zeros(1, 1, 1, 2, dtype=torch.float64), space)
    current = policy_tables(torch.tensor([[[[2.0, 0.0]]]], dtype=torch.float64), space)
    # ratio of y = 0 is 0.88 / 0.5 > 1.2 with A > 0: clipped, no gradient
    clipped = logit_gradient(one_turn(0, 1.0, space), old, current, clip=0.2)
    assert bool((clipped.value == 0).all())
    # the same ratio with A < 0 is not clipped: gradient -ratio * (e_0 - p)
    kept = logit_gradient(one_turn(0, -1.0, space), old, current, clip=0.2)
    p = current.log_probs.exp()[0, 0, 0]
    expected = -(p[0] / 0.5) * (torch.tensor([1.0, 0.0]).double() - p)
    torch.testing.assert_close(kept.value[0, 0, 0], expected)


def test_loglinear_natural_direction_solves_the_enumerated_fisher():
    space = ResponseSpace(3, 1)
    g = torch.Generator().manual_seed(3)
    base = torch.randn(1, 3, 1, 3, generator=g, dtype=torch.float64)
    features = torch.randn(1, 3, 2, generator=g, dtype=torch.float64)
    policy = LogLinearPolicy(base, features)
    policy.params = torch.randn(1, 1, 3, 2, generator=g, dtype=torch.float64)
    tables = policy_tables(policy.logits(), space)
    turns = random_turns(5, 1, 3, space)
    gradient = logit_gradient(turns, tables, tables)
    direction = policy.natural_direction(gradient, tables).flatten()
    # Fisher by enumeration: sum_s weight_s sum_y pi(y|s) score score^T, score = (e_y - p) x psi
    probs = tables.log_probs.exp()[0, :, 0]  # [S, V]
    fisher = torch.zeros(6, 6, dtype=torch.float64)
    for s in range(3):
        for y in range(3):
            score = torch.outer(torch.eye(3, dtype=torch.float64)[y] - probs[s], features[0, s])
            fisher += (
                gradient.context_weight[0, s, 0]
                * probs[s, y]
                * torch.outer(score.flatten(), score.flatten())
            )
    target = policy.parameter_gradient(gradient.value).flatten()
    torch.testing.assert_close(fisher @ direction, target)


def test_adam_matches_torch_adam():
    g = torch.Generator().manual_seed(0)
    params = torch.zeros(2, 5, dtype=torch.float64)
    reference = torch.zeros(2, 5, dtype=torch.float64, requires_grad=True)
    torch_adam = torch.optim.Adam([reference], lr=0.1, maximize=True)
    policy = TabularPolicy(params.clone())
    optimizer = Optimizer("adam", 0.1, policy.params)
    for _ in range(4):
        gradient = torch.randn(2, 5, generator=g, dtype=torch.float64)
        optimizer.step(policy, _Gradient(gradient), None)
        reference.grad = gradient.clone()
        torch_adam.step()
    torch.testing.assert_close(policy.params, reference.detach())


class _Gradient:
    """The part of LogitGradient a first-order rule reads."""

    def __init__(self, value: torch.Tensor):
        self.value = value
