"""The update step: micro-batches with accumulated gradients take the same optimiser step as
the whole mini-batch, for every loss aggregation, in both layouts; a loss the model makes
non-finite is refused."""

from __future__ import annotations

import copy

import pytest
import torch

from aem.batch import SpanBatch
from aem.policy.runner import CriticRunner, PolicyRunner
from aem.policy.tiny import build_tiny_model
from aem.policy.tokenizer import build_tokenizer
from aem.policy.value import CriticModel
from aem.trainer.config import AlgorithmConfig, OptimConfig
from aem.trainer.phases import (
    score,
    score_for_update,
    update_critic,
    update_policy,
    update_policy_fused,
)

AGG_MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]


@pytest.fixture(scope="module")
def model():
    tokenizer = build_tokenizer(["take apple 1 from fridge 2", "go to cabinet 3"] * 20, 300)
    return build_tiny_model(
        tokenizer, hidden_size=32, layers=1, heads=2, kv_heads=1, intermediate=64, seed=0
    )


def random_batch(layout: str, seed: int = 0) -> SpanBatch:
    rng = torch.Generator().manual_seed(seed)
    turns = 10
    prompts = [torch.randint(3, 250, (int(n),), generator=rng).tolist()
               for n in torch.randint(2, 30, (turns,), generator=rng)]  # fmt: skip
    responses = [torch.randint(3, 250, (int(n),), generator=rng).tolist()
                 for n in torch.randint(1, 8, (turns,), generator=rng)]  # fmt: skip
    traj = [0, 0, 0, 1, 2, 2, 3, 3, 3, 3]
    batch = SpanBatch.from_turns(prompts, responses, traj, layout, pad_id=0)
    mask = batch.span_mask()
    shape = mask.shape
    batch["loss_mask"] = mask & (torch.rand(shape, generator=rng) > 0.1)
    batch["old_log_probs"] = torch.where(mask, -torch.rand(shape, generator=rng) * 5, 0.0)
    batch["advantages"] = torch.where(mask, torch.randn(turns, generator=rng)[:, None], 0.0)
    batch["ref_log_probs"] = torch.where(mask, -torch.rand(shape, generator=rng) * 5, 0.0)
    batch["returns"] = torch.where(mask, torch.randn(shape, generator=rng), 0.0)
    batch["values"] = torch.where(mask, torch.randn(shape, generator=rng) * 0.1, 0.0)
    return batch


def step(model, batch, algo, micro_batch_tokens, critic=False):
    model = copy.deepcopy(model)
    optim = OptimConfig(lr=1e-2, mini_batch_rows=3, micro_batch_tokens=micro_batch_tokens)
    generator = torch.Generator().manual_seed(1)
    if critic:
        model = CriticModel.from_causal_lm(model, seed=0)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
        ppo = AlgorithmConfig(name="ppo").resolved()
        metrics = update_critic(batch, CriticRunner(model), optimizer, ppo, optim, generator)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)  # the step is lr * gradient
        metrics = update_policy(batch, PolicyRunner(model), optimizer, algo, optim, generator)
    return model, metrics


@pytest.mark.parametrize("layout", ["turn", "trajectory"])
@pytest.mark.parametrize(("loss", "agg_mode"), [("ppo", m) for m in AGG_MODES] + [("gspo", None)])
def test_micro_batches_take_the_mini_batch_step(model, layout, loss, agg_mode) -> None:
    preset = "gspo" if loss == "gspo" else "grpo"
    algo = AlgorithmConfig(name=preset, agg_mode=agg_mode, entropy_coef=0.01).resolved()
    batch = random_batch(layout)
    whole, whole_metrics = step(model, batch, algo, micro_batch_tokens=10**6)
    split, split_metrics = step(model, batch, algo, micro_batch_tokens=1)  # one row each
    for (name, a), (_, b) in zip(whole.named_parameters(), split.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)
    assert not torch.equal(whole.lm_head.weight, model.lm_head.weight)  # it did train
    for key in ("actor/pg_loss", "actor/kl", "actor/grad_norm"):
        assert split_metrics[key] == pytest.approx(whole_metrics[key], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("layout", ["turn", "trajectory"])
def test_critic_micro_batches_take_the_mini_batch_step(model, layout) -> None:
    batch = random_batch(layout, seed=3)
    whole, whole_metrics = step(model, batch, None, 10**6, critic=True)
    split, split_metrics = step(model, batch, None, 1, critic=True)
    for a, b in zip(whole.parameters(), split.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert split_metrics["critic/value_loss"] == pytest.approx(
        whole_metrics["critic/value_loss"], rel=1e-4
    )


def test_a_non_finite_policy_loss_is_refused(model) -> None:
    """The micro-batches run without value checks (trusted inputs); a policy whose outputs turn
    NaN still stops the update with an error naming the loss."""
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.lm_head.weight[0, 0] = float("nan")
    batch = random_batch("turn")
    algo = AlgorithmConfig(name="grpo").resolved()
    optimizer = torch.optim.SGD(broken.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    with pytest.raises(ValueError, match="the policy loss must be finite, got nan"):
        update_policy(batch, PolicyRunner(broken), optimizer, algo, OptimConfig(), generator)
    batch["advantages"][0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"advantages must be finite, got inf at index \(0, 0\)"):
        update_policy(batch, PolicyRunner(model), optimizer, algo, OptimConfig(), generator)


@pytest.mark.parametrize("layout", ["turn", "trajectory"])
@pytest.mark.parametrize(("loss", "agg_mode"), [("ppo", m) for m in AGG_MODES] + [("gspo", None)])
def test_fused_scoring_takes_the_step_of_scoring_then_updating(model, layout, loss, agg_mode):
    """optim.fused_scoring: the old log-probs and entropy from the update's own forward equal
    the scoring pass's, and the one step on them equals the step of one whole mini-batch."""
    preset = "gspo" if loss == "gspo" else "grpo"
    algo = AlgorithmConfig(name=preset, agg_mode=agg_mode, entropy_coef=0.01).resolved()
    optim = OptimConfig(lr=1e-2, mini_batch_rows=10**6, micro_batch_tokens=40)
    models = {}
    batches = {}
    for fused in (False, True):
        trained = copy.deepcopy(model)
        batch, runner = random_batch(layout), PolicyRunner(trained)
        optimizer = torch.optim.SGD(trained.parameters(), lr=1e-2)
        if fused:
            held = score_for_update(batch, runner, entropy_graph=True, rows_per_chunk=3)
            metrics = update_policy_fused(batch, held, runner, optimizer, algo, optim)
        else:
            score(batch, runner)
            generator = torch.Generator().manual_seed(1)
            metrics = update_policy(batch, runner, optimizer, algo, optim, generator)
        models[fused], batches[fused] = (trained, metrics), batch
        assert not trained.training
    for name in ("old_log_probs", "entropy"):
        torch.testing.assert_close(batches[True][name], batches[False][name], atol=1e-5, rtol=0)
    (fused, fused_metrics), (plain, plain_metrics) = models[True], models[False]
    for (name, a), (_, b) in zip(fused.named_parameters(), plain.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)
    assert not torch.equal(fused.lm_head.weight, model.lm_head.weight)  # it did train
    assert fused_metrics["actor/clipfrac"] == 0.0  # the ratio is exactly 1
    assert fused_metrics["actor/approx_kl"] == 0.0
    for key in ("actor/pg_loss", "actor/kl", "actor/grad_norm"):
        assert fused_metrics[key] == pytest.approx(plain_metrics[key], rel=1e-4, abs=1e-6), key


def test_fused_scoring_needs_one_epoch():
    with pytest.raises(ValueError, match=r"optim\.fused_scoring needs optim\.epochs=1"):
        OptimConfig(fused_scoring=True, epochs=2)
