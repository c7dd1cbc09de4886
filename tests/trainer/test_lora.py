"""LoRA adapters: injection, merge, the adapter-free KL reference, and LoRA training in the
Trainer (only adapters change, reference unaffected, adapter-only checkpoints, resume)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("peft", reason="LoRA needs peft (pip install 'aem[smollm2]')")

from aem.policy.lora import LoraSpec, adapter_free_view, apply_lora, has_lora, merged_copy
from aem.policy.model import frozen_reference, load_policy, save_policy
from aem.policy.tiny import build_tiny_model
from aem.policy.tokenizer import build_tokenizer
from aem.trainer.checkpoint import latest_checkpoint
from aem.trainer.config import load_config
from aem.trainer.loop import Trainer
from aem.trainer.metrics import read_metrics
from tiny_config import TINY as TINY_BASE

TINY = [
    *TINY_BASE,
    "eval.tasks=2",
    "trainer.threads=1",
    "model.lora.enabled=true",
    "model.lora.rank=4",
    "model.lora.target_modules=[q_proj,v_proj,down_proj]",
    "optim.lr=0.01",
    "algorithm.entropy_coef=0.01",  # a non-zero gradient even when every advantage is 0
]
TIMING = ("time/", "throughput/", "warm_start/seconds")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(["go to the mug 1 <action>take mug 1</action>"] * 20, vocab_size=300)


def fresh_model(tokenizer, seed: int = 0):
    model = build_tiny_model(
        tokenizer, hidden_size=32, layers=2, heads=2, kv_heads=1, intermediate=64, seed=seed
    )
    return load_policy(model, tokenizer)[0]


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


IDS = torch.tensor([[3, 50, 70, 90, 110, 7], [9, 8, 7, 60, 61, 62]])


def randomize_adapters(model, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


def test_only_adapters_train_and_the_start_equals_the_base(tokenizer):
    model = fresh_model(tokenizer)
    base = logits(model, IDS)
    rng = torch.get_rng_state()
    apply_lora(model, LoraSpec(rank=2, target_modules=("q_proj", "o_proj"), seed=3))
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left alone
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    expected = sorted(
        f"model.layers.{layer}.self_attn.{proj}.lora_{ab}.default.weight"
        for layer in range(2)
        for proj in ("q_proj", "o_proj")
        for ab in "AB"
    )
    assert trainable == expected
    assert torch.equal(logits(model, IDS), base)  # B = 0


def test_same_seed_same_adapters_other_seed_other_adapters(tokenizer):
    def adapters(seed):
        model = apply_lora(fresh_model(tokenizer), LoraSpec(rank=2, seed=seed))
        return {n: p for n, p in model.named_parameters() if "lora_A" in n}

    first, again, other = adapters(4), adapters(4), adapters(5)
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not all(torch.equal(first[n], other[n]) for n in first)


def test_merged_weights_are_base_plus_scaled_product(tokenizer):
    model = apply_lora(
        fresh_model(tokenizer), LoraSpec(rank=3, alpha=6.0, target_modules=("up_proj",))
    )
    randomize_adapters(model)
    layer = model.model.layers[1].mlp.up_proj
    w = layer.base_layer.weight.double()
    a = layer.lora_A["default"].weight.double()
    b = layer.lora_B["default"].weight.double()
    expected = w + (6.0 / 3) * b @ a
    merged = merged_copy(model)
    assert not has_lora(merged) and has_lora(model)
    assert torch.allclose(merged.model.layers[1].mlp.up_proj.weight.double(), expected, atol=1e-6)
    assert torch.allclose(logits(merged, IDS), logits(model, IDS), atol=1e-5)


def test_saved_lora_policy_is_a_plain_model_with_the_same_outputs(tokenizer, tmp_path):
    model = apply_lora(fresh_model(tokenizer), LoraSpec(rank=2))
    randomize_adapters(model)
    save_policy(model, tokenizer, tmp_path / "saved")
    assert has_lora(model)  # saving merged a copy, not the model
    stored = load_file(str(tmp_path / "saved" / "model.safetensors"))
    assert not any("lora" in key or "base_layer" in key for key in stored)
    reloaded, _ = load_policy(tmp_path / "saved")
    assert torch.allclose(logits(reloaded, IDS), logits(model, IDS), atol=1e-5)


def test_reference_is_the_base_and_shares_its_weights(tokenizer):
    model = apply_lora(fresh_model(tokenizer), LoraSpec(rank=2))
    base = logits(model, IDS)
    reference = frozen_reference(model)
    randomize_adapters(model)  # "training" after the reference was made
    assert not torch.allclose(logits(model, IDS), base)
    assert torch.equal(logits(reference, IDS), base)
    assert not any(p.requires_grad for p in reference.parameters())
    shared = {p.data_ptr() for p in model.parameters() if not p.requires_grad}
    frozen_base = [p for n, p in reference.named_parameters() if "lora_" not in n]
    assert all(p.data_ptr() in shared for p in frozen_base)
    assert any(p.requires_grad for p in model.parameters())  # the policy is still trainable


def test_reference_of_a_plain_model_is_an_independent_frozen_copy(tokenizer):
    model = fresh_model(tokenizer)
    base = logits(model, IDS)
    reference = frozen_reference(model)
    with torch.no_grad():
        model.lm_head.weight.mul_(2.0)
    assert torch.equal(logits(reference, IDS), base)
    with pytest.raises(ValueError, match="no LoRA adapters"):
        adapter_free_view(model)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rank": 0}, "rank"),
        ({"alpha": 0.0}, "alpha"),
        ({"dropout": 1.0}, "dropout"),
        ({"target_modules": "every-linear"}, "target_modules"),
        ({"target_modules": ()}, "target_modules"),
    ],
)
def test_bad_specs_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoraSpec(**kwargs)


def test_targets_that_match_nothing_and_double_injection_are_refused(tokenizer):
    with pytest.raises(ValueError, match="no_such_proj"):
        apply_lora(fresh_model(tokenizer), LoraSpec(target_modules=("no_such_proj",)))
    model = apply_lora(fresh_model(tokenizer), LoraSpec())
    with pytest.raises(ValueError, match="already has LoRA"):
        apply_lora(model, LoraSpec())


# --------------------------------------------------------------------------- in the Trainer


def train(tmp_path, name, *overrides):
    config = load_config(overrides=[*TINY, f"output_dir={tmp_path / name}", *overrides])
    trainer = Trainer(config, tmp_path / name)
    return trainer, trainer.train()


def test_lora_training_changes_only_adapters_and_keeps_the_reference(tmp_path):
    trainer, records = train(tmp_path, "run")
    run = tmp_path / "run"
    assert [r["iteration"] for r in records] == [-1, 0, 1]
    init, _ = load_policy(run / "init")
    base_state = init.state_dict()
    changed_adapters = 0
    for name, param in trainer.model.named_parameters():
        if "lora_" in name:
            assert param.requires_grad
            changed_adapters += "lora_B" in name and bool(param.abs().sum() > 0)
        else:
            assert not param.requires_grad
            assert torch.equal(param, base_state[name.replace(".base_layer", "")]), name
    assert changed_adapters > 0
    # The KL reference still computes the starting policy; the trained policy does not.
    ids = torch.tensor([[5, 60, 61, 62, 63, 64, 65]])
    assert torch.equal(logits(trainer.reference.model, ids), logits(init, ids))
    assert not torch.allclose(logits(trainer.model, ids), logits(init, ids))
    # Checkpoints hold only the adapters; `final` is the merged plain model.
    stored = load_file(str(latest_checkpoint(run) / "policy.safetensors"))
    assert stored and all("lora_" in key for key in stored)
    optimizer = torch.load(latest_checkpoint(run) / "state.pt", weights_only=True)["optimizers"]
    (group,) = optimizer["policy"]["param_groups"]
    assert group["param_names"] == sorted(stored, key=list(trainer.model.state_dict()).index)
    final, _ = load_policy(run / "final")
    assert not has_lora(final)
    assert torch.allclose(logits(final, ids), logits(trainer.model, ids), atol=1e-5)


def test_interrupted_lora_run_resumes_like_an_uninterrupted_one(tmp_path):
    _, full = train(tmp_path, "full", "trainer.iterations=3")
    config = load_config(overrides=[*TINY, "trainer.iterations=3"])
    first = Trainer(config, tmp_path / "cut")
    first.train(progress=lambda it, _: setattr(first, "stop_requested", it == 1))
    resumed = Trainer(config, tmp_path / "cut", resume=True)
    resumed.train()

    def comparable(records):
        return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in records]

    assert comparable(read_metrics(tmp_path / "cut")) == comparable(read_metrics(tmp_path / "full"))
    a, _ = load_policy(tmp_path / "full" / "final")
    b, _ = load_policy(tmp_path / "cut" / "final")
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert len(full) == 4


def test_ppo_critic_of_a_lora_policy_trains_adapters_and_head(tmp_path):
    trainer, records = train(tmp_path, "ppo", "algorithm=ppo", "trainer.iterations=1")
    assert "critic/value_loss" in records[-1]
    trainable = [n for n, p in trainer.critic.critic.named_parameters() if p.requires_grad]
    assert all("lora_" in n or n.startswith("head.") for n in trainable)
    assert any(n.startswith("head.") for n in trainable)
    stored = load_file(str(latest_checkpoint(tmp_path / "ppo") / "critic.safetensors"))
    assert sorted(stored) == sorted(trainable)
