"""The trainer's phases, each on a span batch built by hand, against direct recomputations."""

from __future__ import annotations

import pytest
import torch

from aem.algorithms.advantages import AdvantageConfig, AdvantageInputs, compute_advantages
from aem.algorithms.empg import empg_modulate
from aem.algorithms.modulation import ModulationConfig, aem_coefficients, response_entropy
from aem.batch import SpanBatch
from aem.policy.runner import PolicyRunner
from aem.policy.tiny import build_tiny_model
from aem.policy.tokenizer import build_tokenizer
from aem.trainer import phases
from aem.trainer.config import AlgorithmConfig, OptimConfig

# two tasks x two trajectories; trajectory 0 has two turns
TRAJ = [0, 0, 1, 2, 3]
GROUP = [0, 0, 0, 1, 1]
PROMPTS = [[5, 6, 7], [8, 9], [5, 6, 7, 10], [11, 12], [11, 13, 14]]
RESPONSES = [[20, 21, 22], [23], [24, 25], [26, 27, 28, 29], [30]]


def hand_batch(layout: str = "turn") -> SpanBatch:
    return SpanBatch.from_turns(
        PROMPTS,
        RESPONSES,
        TRAJ,
        layout,
        pad_id=0,
        spans={
            "group": torch.tensor(GROUP),
            "traj": torch.tensor(TRAJ),
            "turn": torch.tensor([0, 1, 0, 0, 0]),
            "anchor": torch.tensor([0, 1, 0, 2, 2]),
            "reward": torch.tensor([0.0, 1.0, -0.5, 0.0, 0.0]),
            "env_reward": torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]),
            "episode_return": torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64),
        },
    )


@pytest.fixture(scope="module")
def policy() -> PolicyRunner:
    tokenizer = build_tokenizer(["take apple 1 from fridge 2", "go to cabinet 3"] * 20, 300)
    model = build_tiny_model(
        tokenizer, hidden_size=32, layers=1, heads=2, kv_heads=1, intermediate=64, seed=0
    )
    return PolicyRunner(model, temperature=0.7)


def reference_scores(policy: PolicyRunner, batch: SpanBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Each span scored alone from full fp64 logits: log p and entropy of its tokens."""
    log_probs, entropy = torch.zeros(len(batch), batch.span_width), torch.zeros(len(batch), 5)
    for s, (_, response) in enumerate(batch.turn_tokens()):
        row = int(batch.span_row[s])
        start = int(batch.span_start[s])
        ids = batch.input_ids[row, : start + len(response)][None]
        with torch.no_grad():
            logits = policy.model(input_ids=ids).logits.double()[0, start - 1 : -1]
        log_p = torch.log_softmax(logits / 0.7, dim=-1)
        log_probs[s, : len(response)] = log_p.gather(-1, torch.tensor(response)[:, None])[:, 0]
        entropy[s, : len(response)] = -(log_p.exp() * log_p).sum(-1)
    return log_probs, entropy[:, : batch.span_width]


@pytest.mark.parametrize("layout", ["turn", "trajectory"])
@pytest.mark.parametrize("rows_per_chunk", [1, 2, 100])
def test_score_matches_each_span_scored_alone(policy, layout, rows_per_chunk) -> None:
    batch = hand_batch(layout)
    phases.score(batch, policy, rows_per_chunk)
    expected_log_p, expected_entropy = reference_scores(policy, batch)
    torch.testing.assert_close(batch["old_log_probs"], expected_log_p.float(), atol=2e-5, rtol=0)
    torch.testing.assert_close(batch["entropy"], expected_entropy.float(), atol=2e-5, rtol=0)


def test_scores_are_the_return_plus_the_turn_penalty_and_the_overlong_penalty() -> None:
    batch = hand_batch()
    grpo = AlgorithmConfig(name="grpo").resolved()
    assert phases.scores(batch, grpo, 4).tolist() == [1.0, 1.0, -0.5, 0.0, 0.0]
    dapo = AlgorithmConfig(name="dapo", overlong_buffer=0.5, overlong_factor=1.0).resolved()
    # budget 4, buffer 2 tokens: 3 tokens -> -0.5, 4 tokens -> -1
    assert phases.scores(batch, dapo, 4).tolist() == [0.5, 1.0, -0.5, -1.0, 0.0]


def test_advantages_modulation_analysis_and_metrics_on_a_hand_batch() -> None:
    batch = hand_batch()
    mask = batch.span_mask()
    batch["entropy"] = torch.where(mask, torch.arange(5.0)[:, None] + 0.5, 0.0)
    algo = AlgorithmConfig(name="grpo").resolved()
    phases.advantages(batch, algo, 4)
    inputs = AdvantageInputs(
        mask, torch.tensor(GROUP), torch.tensor(TRAJ), torch.tensor([0, 1, 0, 0, 0]),
        torch.tensor([1.0, 1.0, -0.5, 0.0, 0.0]),
    )  # fmt: skip
    expected, _ = compute_advantages("grpo", inputs, AdvantageConfig(grpo_stats="turn"))
    assert torch.equal(batch["advantages"], expected)
    assert torch.equal(batch["span_advantage"], expected[:, 0])
    base = batch["advantages"].clone()

    stats = phases.modulate(batch, "aem", ModulationConfig(temperature=1.0))
    span_entropy = response_entropy(batch["entropy"], mask)
    weights = aem_coefficients(span_entropy, torch.tensor(GROUP))
    assert torch.equal(batch["weight"], weights) and torch.equal(
        batch["span_entropy"], span_entropy
    )
    torch.testing.assert_close(batch["advantages"], base * weights[:, None])
    assert stats["aem/weight_max"] == pytest.approx(float(weights.max()))

    record = phases.analysis(batch, "decreasing")
    relative = span_entropy - torch.tensor([1.5, 1.5, 1.5, 4.0, 4.0])
    contribution = weights * batch["span_advantage"] * relative
    assert record["drift/total"] == pytest.approx(float(contribution.mean()))
    # entropy-decreasing quadrants: positive advantage below the group mean, negative above it
    span_advantage = batch["span_advantage"]
    decreasing = ((span_advantage > 0) & (relative < 0)) | ((span_advantage < 0) & (relative >= 0))
    assert torch.equal(batch["loss_mask"], mask & ~decreasing[:, None])
    assert record["analysis/masked_span_frac"] == pytest.approx(float(decreasing.float().mean()))

    metrics = phases.metrics(batch)
    assert metrics["entropy/response_mean"] == pytest.approx(float(span_entropy.mean()))
    assert metrics["rollout/rows"] == 5 and metrics["throughput/tokens"] == 25
    assert metrics["advantage/positive_span_frac"] == pytest.approx(0.4)

    unmodulated = hand_batch()
    unmodulated["entropy"] = batch["entropy"]
    phases.advantages(unmodulated, algo, 4)
    assert phases.modulate(unmodulated, "none", ModulationConfig()) == {}
    assert torch.equal(unmodulated["advantages"], base)
    assert torch.equal(unmodulated["weight"], torch.ones(5))


def test_the_algorithm_knobs_reach_the_estimators() -> None:
    grpo, gigpo = hand_batch(), hand_batch()
    phases.advantages(grpo, AlgorithmConfig(name="grpo").resolved(), 4)
    phases.advantages(gigpo, AlgorithmConfig(name="gigpo", gigpo_step_weight=0.0).resolved(), 4)
    assert torch.equal(grpo["advantages"], gigpo["advantages"])
    stepped = hand_batch()
    phases.advantages(stepped, AlgorithmConfig(name="gigpo").resolved(), 4)
    assert not torch.equal(grpo["advantages"], stepped["advantages"])
    config = phases.advantage_config(
        AlgorithmConfig(name="ppo", gae_whiten=False, advantage_eps=0.1).resolved()
    )
    assert config.gae_whiten is False and config.epsilon == 0.1
    loss = phases.policy_loss_config(AlgorithmConfig(name="grpo", norm_length=16.0).resolved())
    assert loss.norm_length == 16.0


def test_empg_modulation_is_empg_modulate_over_the_batch() -> None:
    batch = hand_batch()
    mask = batch.span_mask()
    batch["entropy"] = torch.where(mask, torch.arange(5.0)[:, None] + 0.5, 0.0)
    phases.advantages(batch, AlgorithmConfig(name="grpo").resolved(), 4)
    base = batch["advantages"].clone()
    config = ModulationConfig(empg_k=2.0, empg_k_future=0.5, empg_zeta=0.3)
    stats = phases.modulate(batch, "empg", config)
    expected = empg_modulate(
        base, batch["entropy"], mask, torch.tensor(GROUP),
        trajectory_index=torch.tensor(TRAJ), turn_index=torch.tensor([0, 1, 0, 0, 0]),
        k=2.0, k_future=0.5, zeta=0.3,
    )  # fmt: skip
    assert torch.equal(batch["advantages"], expected.advantages)
    assert torch.equal(batch["weight"], expected.weights)
    assert stats["empg/next_step_frac"] == pytest.approx(0.2)  # only trajectory 0 has turn 1
    assert not torch.equal(batch["advantages"], base)


def greedy_batch(policy: PolicyRunner, length: int = 3) -> SpanBatch:
    """Each prompt continued by the policy's own most likely tokens (surprisal < entropy)."""
    responses = []
    for prompt in PROMPTS:
        ids = list(prompt)
        with torch.no_grad():
            for _ in range(length):
                ids.append(int(policy.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
        responses.append(ids[len(prompt) :])
    batch = hand_batch()
    return SpanBatch.from_turns(PROMPTS, responses, TRAJ, "turn", pad_id=0, spans=dict(batch.spans))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_same_batch_drift_has_the_sign_of_the_theorem(sign: float) -> None:
    """Raising (lowering) the probability of each context's most likely token lowers (raises)
    the entropy there: the token-level prediction and the measured change share that sign."""
    tokenizer = build_tokenizer(["take apple 1 from fridge 2", "go to cabinet 3"] * 20, 300)
    model = build_tiny_model(
        tokenizer, hidden_size=32, layers=1, heads=2, kv_heads=1, intermediate=64, seed=1
    )
    policy = PolicyRunner(model, temperature=1.0)
    batch = greedy_batch(policy)
    phases.score(batch, policy)
    mask = batch.span_mask()
    batch["advantages"] = sign * mask.float()
    batch["loss_mask"] = mask
    optimizer = torch.optim.SGD(policy.model.parameters(), lr=0.05)
    algo = AlgorithmConfig(name="grpo", kl_coef=0.0).resolved()
    phases.update_policy(batch, policy, optimizer, algo, OptimConfig(), torch.Generator())
    record = phases.same_batch_drift(batch, policy)
    assert sign * record["drift/same_batch_token_prediction"] < 0
    assert sign * record["drift/same_batch_measured"] < 0
