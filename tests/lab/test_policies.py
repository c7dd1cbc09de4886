"""Exact token and response entropies of the lab's policies, against hand-computed small cases
and against :mod:`aem.algorithms.theory`."""

from __future__ import annotations

import math

import torch

from aem.algorithms import theory
from aem.lab.policies import ResponseSpace, policy_tables, prior_logits


def test_hand_computed_two_token_responses():
    """V = 2, L = 2: first token p = (0.5, 0.5); after 0: (0.9, 0.1); after 1: (0.5, 0.5)."""
    space = ResponseSpace(2, 2)
    logits = torch.tensor(
        [[[[0.0, 0.0], [math.log(9.0), 0.0], [0.0, 0.0]]]], dtype=torch.float64
    )  # [R=1, S=1, P=3, V=2]: contexts root, "0", "1"
    tables = policy_tables(logits, space)
    h_09 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    expected_context = torch.tensor([[[math.log(2), h_09, math.log(2)]]], dtype=torch.float64)
    torch.testing.assert_close(tables.context_entropy, expected_context)
    probs = [0.45, 0.05, 0.25, 0.25]  # responses 00, 01, 10, 11
    torch.testing.assert_close(
        tables.response_log_probs.exp(), torch.tensor([[probs]], dtype=torch.float64)
    )
    h_response = -sum(p * math.log(p) for p in probs)
    torch.testing.assert_close(tables.response_entropy, torch.tensor([[h_response]]).double())
    # Eq. 7: response entropy = first-token entropy + expected second-token entropy
    assert abs(h_response - (math.log(2) + 0.5 * h_09 + 0.5 * math.log(2))) < 1e-12
    torch.testing.assert_close(
        tables.prefix_probs, torch.tensor([[[1.0, 0.5, 0.5]]], dtype=torch.float64)
    )


def test_tables_match_theory_on_random_policies():
    space = ResponseSpace(3, 3)
    policy = theory.random_autoregressive_policy(num_states=4, vocab_size=3, length=3, seed=7)
    logits = torch.cat(list(policy.step_logits), dim=1)[None]  # [1, S, P, V]
    tables = policy_tables(logits, space)
    torch.testing.assert_close(tables.response_log_probs[0], theory.response_log_probs(policy))
    torch.testing.assert_close(tables.response_entropy[0], theory.response_level_entropy(policy))
    along = tables.context_entropy[0][:, space.contexts]  # [S, N, L]
    torch.testing.assert_close(along, theory.token_entropies(policy))
    torch.testing.assert_close(
        tables.response_entropy[0], theory.expected_token_entropy_sum(policy)
    )


def test_prior_without_noise_is_the_plausibility_prior():
    space = ResponseSpace(3, 2)
    plausible = torch.zeros(2, 5, 9, dtype=torch.bool)
    plausible[:, :, [1, 4, 8]] = True
    logits = prior_logits(plausible, space, 2.0, 0.0, torch.tensor([0, 1]), torch.float64)
    probs = policy_tables(logits, space).response_log_probs.exp()
    expected = torch.where(plausible, math.exp(2.0), 1.0)
    expected = expected / expected.sum(-1, keepdim=True)
    torch.testing.assert_close(probs, expected.double())


def test_prior_noise_is_seeded():
    space = ResponseSpace(3, 2)
    plausible = torch.zeros(3, 2, 9, dtype=torch.bool)
    seeds = torch.tensor([4, 4, 5])
    logits = prior_logits(plausible, space, 1.0, 1.0, seeds, torch.float64)
    torch.testing.assert_close(logits[0], logits[1])
    assert not torch.allclose(logits[0], logits[2])
