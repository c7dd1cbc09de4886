"""Optimisers hold only the trainable parameters (under LoRA: the adapters), by name; the gradient
norm ignores stale gradients of frozen parameters; checkpoints map optimiser state by name and
still load a checkpoint saved when the optimiser held every parameter."""

from __future__ import annotations

import copy
import random

import pytest
import torch

from aem.batch import SpanBatch
from aem.policy.model import trainable_parameters
from aem.policy.runner import PolicyRunner
from aem.policy.tiny import build_tiny_model
from aem.policy.tokenizer import build_tokenizer
from aem.trainer.checkpoint import load_checkpoint, save_checkpoint
from aem.trainer.config import AlgorithmConfig, OptimConfig, load_config
from aem.trainer.loop import Trainer
from aem.trainer.phases import update_policy
from tiny_config import TINY

LORA = [
    "model.lora.enabled=true",
    "model.lora.rank=2",
    "model.lora.target_modules=[q_proj,v_proj,down_proj]",
]


def optimizer_names(optimizer: torch.optim.Optimizer) -> list[str]:
    return [name for group in optimizer.param_groups for name in group["param_names"]]


def optimizer_ids(optimizer: torch.optim.Optimizer) -> list[int]:
    return [id(p) for group in optimizer.param_groups for p in group["params"]]


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_trainer_optimizers_hold_exactly_the_trainable_parameters(tmp_path, lora):
    if lora:
        pytest.importorskip("peft", reason="LoRA needs peft (pip install 'aem[smollm2]')")
    config = load_config(
        overrides=[*TINY, "trainer.threads=1", "algorithm=ppo", *(LORA if lora else [])]
    )
    trainer = Trainer(config, tmp_path / "run")
    trainer.setup()
    try:
        for module, optimizer in (
            (trainer.model, trainer.optimizer),
            (trainer.critic.critic, trainer.critic_optimizer),
        ):
            everything = list(module.named_parameters())
            if lora:  # independent expectation: the adapter matrices (and the critic's head)
                expected = [n for n, _ in everything if "lora_" in n or n.startswith("head.")]
                assert len([n for n in expected if "lora_" in n]) == 1 * 3 * 2  # layers, A/B
            else:
                expected = [n for n, _ in everything]
            assert optimizer_names(optimizer) == expected
            params = dict(everything)
            assert optimizer_ids(optimizer) == [id(params[n]) for n in expected]
            assert all(params[n].requires_grad == (n in expected) for n in params)
        # The warm start leaves no gradient behind (it would outlive the adapters' optimiser).
        assert all(p.grad is None for p in trainer.model.parameters())
    finally:
        trainer.close()


def tiny_policy(seed: int = 0):
    tokenizer = build_tokenizer(["go to the mug 1 <action>take mug 1</action>"] * 20, 300)
    return build_tiny_model(
        tokenizer, hidden_size=32, layers=1, heads=2, kv_heads=1, intermediate=64, seed=seed
    )


def update_batch(vocab: int, rows: int = 4, length: int = 10) -> SpanBatch:
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(0, vocab, (rows, length), generator=generator).tolist()
    prompts, responses = [row[:6] for row in ids], [row[6:] for row in ids]
    batch = SpanBatch.from_turns(prompts, responses, range(rows), "turn", pad_id=0)
    spans = batch.span_mask()
    batch["loss_mask"] = spans
    batch["old_log_probs"] = -torch.rand(spans.shape, generator=generator) * spans
    batch["advantages"] = torch.randn(rows, 1, generator=generator).expand(spans.shape) * spans
    return batch


def test_grad_norm_and_clipping_ignore_stale_gradients_of_frozen_parameters():
    """A frozen parameter with a leftover ``.grad`` (e.g. from a warm start) must change neither
    the reported gradient norm nor the clipped step of the trained parameters."""
    algo = AlgorithmConfig(name="grpo").resolved()
    optim = OptimConfig(grad_clip=1e-4, lr=0.1)  # small clip: the stale grad would rescale
    results = []
    for stale in (False, True):
        model = tiny_policy()
        model.model.embed_tokens.requires_grad_(False)
        if stale:
            model.model.embed_tokens.weight.grad = torch.full_like(
                model.model.embed_tokens.weight, 10.0
            )
        optimizer = torch.optim.AdamW(trainable_parameters(model), lr=optim.lr)
        batch = update_batch(model.config.vocab_size)
        shuffle = torch.Generator().manual_seed(0)
        metrics = update_policy(batch, PolicyRunner(model), optimizer, algo, optim, shuffle)
        results.append((metrics, {n: p.detach().clone() for n, p in model.named_parameters()}))
    (clean, clean_params), (dirty, dirty_params) = results
    assert clean["actor/grad_norm"] > optim.grad_clip  # clipping is active in both runs
    assert dirty["actor/grad_norm"] == clean["actor/grad_norm"]
    assert all(torch.equal(clean_params[n], dirty_params[n]) for n in clean_params)


def two_layers() -> torch.nn.Module:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    module[0].requires_grad_(False)
    return module


def adam_steps(module: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    generator = torch.Generator().manual_seed(7)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        module(torch.randn(5, 3, generator=generator)).square().sum().backward()
        optimizer.step()


def save_and_load(tmp_path, module, optimizer, into_module, into_optimizer) -> None:
    save_checkpoint(tmp_path, 0, {"policy": module}, {"policy": optimizer}, {}, random.Random(0))
    load_checkpoint(
        tmp_path / "checkpoints" / "iter_000000",
        {"policy": into_module},
        {"policy": into_optimizer},
        {},
        random.Random(0),
    )


def test_checkpoint_refuses_optimizer_state_of_other_parameters(tmp_path):
    module = two_layers()
    optimizer = torch.optim.AdamW(trainable_parameters(module), lr=0.1)
    adam_steps(module, optimizer, 1)
    other = two_layers()
    other[0].requires_grad_(True)
    other[1].requires_grad_(False)  # the same count of parameters, other names
    with pytest.raises(ValueError, match=r"optimizer 'policy'.*saved \['1\.weight'\]"):
        save_and_load(
            tmp_path, module, optimizer, other, torch.optim.AdamW(trainable_parameters(other))
        )


def test_checkpoint_of_an_all_parameter_optimizer_loads_onto_the_trainable_ones(tmp_path):
    """A run checkpointed when the optimiser held every parameter resumes exactly: its next step
    equals the step of the old optimiser continuing in memory."""
    module = two_layers()
    legacy = torch.optim.AdamW(module.parameters(), lr=0.1)  # the former construction
    adam_steps(module, legacy, 2)
    resumed = copy.deepcopy(module)
    optimizer = torch.optim.AdamW(trainable_parameters(resumed), lr=0.1)
    save_and_load(tmp_path, module, legacy, resumed, optimizer)
    assert optimizer.state_dict()["param_groups"][0]["param_names"] == ["1.weight", "1.bias"]
    assert all(
        torch.equal(optimizer.state[new]["exp_avg_sq"], legacy.state[old]["exp_avg_sq"])
        for new, old in ((resumed[1].weight, module[1].weight), (resumed[1].bias, module[1].bias))
    )
    adam_steps(module, legacy, 1)
    adam_steps(resumed, optimizer, 1)
    assert all(
        torch.equal(a, b) for a, b in zip(module.parameters(), resumed.parameters(), strict=True)
    )
