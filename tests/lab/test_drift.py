"""Same-batch entropy drift: a case with a known sign, and Theorem 3.2.2 checked on learning runs
(sign agreement >= 95% under the exact natural gradient with a small step)."""

from __future__ import annotations

import math

import pytest
import torch

from aem.lab.drift import drift_after, drift_before
from aem.lab.experiment import run_experiment
from aem.lab.policies import ResponseSpace, TabularPolicy, policy_tables
from aem.lab.settings import Setting
from aem.lab.stats import sign_agreement
from aem.lab.tasks import TaskFamily
from aem.lab.updates import BatchTurns, Optimizer, logit_gradient


def one_step(response: int, advantage: float, lr: float = 1e-4) -> dict:
    """pi = (0.8, 0.2) at one state; one natural step on a single sampled turn."""
    space = ResponseSpace(2, 1)
    policy = TabularPolicy(torch.tensor([[[[math.log(4.0), 0.0]]]], dtype=torch.float64))
    tables = policy_tables(policy.logits(), space)
    shape = (1, 1, 1, 1)
    turns = BatchTurns(
        torch.zeros(shape, dtype=torch.long),
        torch.full(shape, response),
        torch.ones(shape, dtype=torch.bool),
        torch.full(shape, advantage, dtype=torch.float64),
        space,
    )
    before = drift_before(turns, tables)
    Optimizer("natural", lr, policy.params).step(
        policy, logit_gradient(turns, tables, tables), tables
    )
    return drift_after(turns, before, policy_tables(policy.logits(), space))


@pytest.mark.parametrize(
    ("response", "advantage", "sign"),
    [
        (1, 1.0, 1),  # positive, surprisal above H: entropy rises
        (0, 1.0, -1),  # positive, surprisal below H: entropy falls
        (1, -1.0, -1),  # negative, surprisal above H: entropy falls
        (0, -1.0, 1),  # negative, surprisal below H: entropy rises
    ],
)
def test_known_sign_of_the_same_batch_drift(response, advantage, sign):
    drift = one_step(response, advantage)
    h = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2))
    expected = advantage * (-math.log([0.8, 0.2][response]) - h)  # Theorem 3.2.2
    assert math.copysign(1, expected) == sign
    for name in ("measured_response", "measured_token", "predicted_response", "predicted_token"):
        assert math.copysign(1, float(drift[name][0])) == sign, name
    assert abs(float(drift["predicted_response"][0]) - expected) < 1e-12
    assert abs(float(drift["measured_response"][0]) / 1e-4 - expected) < 1e-3  # first order


def drift_run(update: str) -> dict:
    setting = Setting(
        family=TaskFamily("lock", depth=3, decoys=2),
        update=update,
        lr=1e-3,
        steps=12,
        instances=8,
        groups=4,
        group_size=8,
        arms=("grpo", "aem@1"),
        drift=True,
        double=True,
    )
    return run_experiment(setting, torch.arange(40)).drift


def test_theorem_3_2_2_response_drift_under_the_natural_gradient():
    drift = drift_run("natural")
    agreement, number = sign_agreement(drift["predicted_response"], drift["measured_response"])
    assert number > 300 and agreement >= 0.95
    ratio = drift["measured_response"] / (1e-3 * drift["predicted_response"])
    counted = drift["predicted_response"].abs() > 1e-3
    assert float((ratio[counted] - 1).abs().median()) < 0.05  # the first-order value itself


def test_token_level_prediction_under_the_token_natural_gradient():
    drift = drift_run("natural_token")
    agreement, number = sign_agreement(drift["predicted_token"], drift["measured_token"])
    assert number > 300 and agreement >= 0.95
