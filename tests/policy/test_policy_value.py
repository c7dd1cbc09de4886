"""Critic: value alignment against a hand-computed head on the body, padding, grads, save/load."""

from __future__ import annotations

import pytest
import torch
from transformers import PreTrainedTokenizerFast, Qwen2ForCausalLM

from aem.policy.rows import left_pad
from aem.policy.value import CriticModel


@pytest.fixture
def critic(model: Qwen2ForCausalLM) -> CriticModel:
    return CriticModel.from_causal_lm(model, seed=3)


def reference_values(critic: CriticModel, tokens: list[int]) -> torch.Tensor:
    """Unpadded row: column t holds w . h[t-1] + b in float64, column 0 holds 0."""
    with torch.no_grad():
        hidden = critic.body(input_ids=torch.tensor([tokens])).last_hidden_state[0].double()
    weight = critic.head.linear.weight.double()[0]
    bias = critic.head.linear.bias.double()[0]
    return torch.cat([torch.zeros(1, dtype=torch.float64), hidden[:-1] @ weight + bias])


def test_values_align_with_the_previous_hidden_state_and_ignore_padding(
    critic: CriticModel, tokenizer: PreTrainedTokenizerFast, prompts: list[str]
) -> None:
    token_lists = [tokenizer.encode(prompt) for prompt in prompts]
    ids, mask = left_pad(token_lists, tokenizer.pad_token_id)
    with torch.no_grad():
        values = critic.values(ids, mask)
    assert values.dtype == torch.float32 and values.shape == ids.shape
    for row, tokens in enumerate(token_lists):
        start = ids.shape[1] - len(tokens)
        expected = reference_values(critic, tokens)
        expected[0] = 0.0  # the first real token has no state before it
        torch.testing.assert_close(values[row, start:].double(), expected, atol=1e-5, rtol=1e-5)
        assert values[row, :start].eq(0).all()


def test_critic_is_a_copy_and_gets_gradients(
    critic: CriticModel, model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast
) -> None:
    assert critic.body.embed_tokens.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    policy_weight = model.model.layers[0].self_attn.q_proj.weight
    policy_grad = None if policy_weight.grad is None else policy_weight.grad.clone()
    ids, mask = left_pad([tokenizer.encode("take mug 1"), tokenizer.encode("a")], 0)
    critic.values(ids, mask).pow(2).sum().backward()
    assert critic.head.linear.weight.grad.abs().sum() > 0
    assert critic.body.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    if policy_grad is None:
        assert policy_weight.grad is None
    else:
        assert torch.equal(policy_weight.grad, policy_grad)


def test_seeded_head(model: Qwen2ForCausalLM) -> None:
    first = CriticModel.from_causal_lm(model, seed=5).head.linear.weight
    second = CriticModel.from_causal_lm(model, seed=5).head.linear.weight
    other = CriticModel.from_causal_lm(model, seed=6).head.linear.weight
    assert torch.equal(first, second) and not torch.equal(first, other)


def test_save_load_round_trip(
    critic: CriticModel, tokenizer: PreTrainedTokenizerFast, tmp_path
) -> None:
    ids, mask = left_pad([tokenizer.encode("You see a mug 3."), tokenizer.encode("go")], 0)
    critic.save_pretrained(tmp_path)
    loaded = CriticModel.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded.values(ids, mask), critic.values(ids, mask))


def test_critic_from_a_causal_lm_checkpoint(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast, tmp_path
) -> None:
    model.save_pretrained(tmp_path)
    critic = CriticModel.from_pretrained(tmp_path, seed=2)
    for name, parameter in critic.body.named_parameters():
        assert torch.equal(parameter, model.model.get_parameter(name))
    assert torch.equal(
        critic.head.linear.weight, CriticModel.from_causal_lm(model, seed=2).head.linear.weight
    )


def test_bad_batch_raises(critic: CriticModel) -> None:
    ids = torch.ones(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="attention_mask"):
        critic.values(ids, torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids"):
        critic.values(ids.float(), torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="0 and 1"):
        critic.values(ids, torch.full((2, 4), 2))
