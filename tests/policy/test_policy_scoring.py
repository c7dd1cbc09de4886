"""Scoring pass: float64 reference from full logits, sampler agreement, padding, gradients."""

from __future__ import annotations

import pytest
import torch
from policy_helpers import noisy_tiny_model
from transformers import PreTrainedTokenizerFast, Qwen2ForCausalLM

from aem.policy.rows import body_inputs, position_ids_from_mask
from aem.policy.sampling import SamplingConfig, generate
from aem.policy.scoring import score


def reference_scores(
    model: Qwen2ForCausalLM,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full ``model(...).logits`` in float64: log p(token t | < t) and the entropy, per column."""
    with torch.no_grad():
        logits = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
        ).logits.double()
    log_p = torch.log_softmax(logits[:, :-1] / temperature, dim=-1)
    token_log_p = log_p.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    keep = response_mask[:, 1:].double()
    zero = torch.zeros(input_ids.shape[0], 1, dtype=torch.float64)
    return torch.cat([zero, token_log_p * keep], 1), torch.cat([zero, entropy * keep], 1)


@pytest.fixture(scope="module")
def rollout(model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str]):
    """A sampled batch with left-padded prompts and right-padded (early-stopped) responses."""
    stop_ids = tuple(tokenizer.encode(" the")) + tuple(tokenizer.encode("</action>"))
    config = SamplingConfig(max_new_tokens=12, temperature=1.0, stop_token_ids=stop_ids)
    out = generate(model, tokenizer, prompts * 2, config, torch.Generator().manual_seed(0))
    assert not out.response_mask.all()  # some rows stopped early: holes after the stop
    return out


@pytest.mark.parametrize(("temperature", "chunk_size"), [(1.0, 1024), (0.7, 3), (1.3, 1)])
def test_matches_float64_reference_from_full_logits(
    model: Qwen2ForCausalLM, rollout, temperature: float, chunk_size: int
) -> None:
    input_ids, attention_mask, response_mask = rollout.sequences()
    with torch.no_grad():
        out = score(model, input_ids, attention_mask, response_mask, temperature, chunk_size)
    expected_log_p, expected_entropy = reference_scores(
        model, input_ids, attention_mask, response_mask, temperature
    )
    assert out.log_probs.dtype == torch.float32 and out.entropy.dtype == torch.float32
    assert out.log_probs.shape == input_ids.shape == out.entropy.shape
    torch.testing.assert_close(out.log_probs.double(), expected_log_p, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(out.entropy.double(), expected_entropy, atol=2e-5, rtol=1e-5)
    outside = response_mask == 0
    assert out.log_probs[outside].eq(0).all() and out.entropy[outside].eq(0).all()


def test_sampler_log_probs_equal_scoring_log_probs_fp32(model: Qwen2ForCausalLM, rollout) -> None:
    input_ids, attention_mask, response_mask = rollout.sequences()
    with torch.no_grad():
        out = score(model, input_ids, attention_mask, response_mask, temperature=1.0)
    prompt_length = rollout.prompt_ids.shape[1]
    torch.testing.assert_close(
        out.log_probs[:, prompt_length:], rollout.log_probs, atol=1e-5, rtol=1e-5
    )


def test_sampler_log_probs_match_scoring_under_bf16(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str]
) -> None:
    config = SamplingConfig(max_new_tokens=12, temperature=0.8, bf16=True)
    sampled = generate(model, tokenizer, prompts, config, torch.Generator().manual_seed(2))
    input_ids, attention_mask, response_mask = sampled.sequences()
    with torch.no_grad():
        scored = score(model, input_ids, attention_mask, response_mask, 0.8, bf16=True)
        exact = score(model, input_ids, attention_mask, response_mask, 0.8)
    prompt_length = sampled.prompt_ids.shape[1]
    keep = sampled.response_mask.bool()
    bf16_scored = scored.log_probs[:, prompt_length:][keep]
    # Same bf16 math, different op order (cached decode vs one full pass): small differences.
    torch.testing.assert_close(bf16_scored, sampled.log_probs[keep], atol=0.1, rtol=0.05)
    # And bf16 stays close to fp32 on average.
    error = (bf16_scored - exact.log_probs[:, prompt_length:][keep]).abs().mean()
    assert error < 0.05


def test_left_padding_does_not_change_scores(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast
) -> None:
    tokens = tokenizer.encode("You see a mug 3.<action>take mug 3</action>")
    alone_ids = torch.tensor([tokens])
    response = torch.zeros_like(alone_ids)
    response[0, 5:] = 1
    padded_ids = torch.cat([torch.zeros(1, 7, dtype=torch.long), alone_ids], 1)
    padded_attention = torch.cat(
        [torch.zeros(1, 7, dtype=torch.long), torch.ones_like(alone_ids)], 1
    )
    padded_response = torch.cat([torch.zeros(1, 7, dtype=torch.long), response], 1)
    with torch.no_grad():
        alone = score(model, alone_ids, torch.ones_like(alone_ids), response)
        padded = score(model, padded_ids, padded_attention, padded_response)
    torch.testing.assert_close(padded.log_probs[:, 7:], alone.log_probs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.entropy[:, 7:], alone.entropy, atol=1e-5, rtol=1e-5)


def test_gradients_equal_the_full_logits_reference(
    tokenizer: PreTrainedTokenizerFast, rollout
) -> None:
    input_ids, attention_mask, response_mask = rollout.sequences()
    weights = torch.randn(input_ids.shape, generator=torch.Generator().manual_seed(0))

    fused = noisy_tiny_model(tokenizer)
    out = score(fused, input_ids, attention_mask, response_mask, temperature=0.9, chunk_size=5)
    assert out.log_probs.requires_grad and out.entropy.requires_grad
    ((out.log_probs * weights).sum() + (out.entropy * weights).sum()).backward()

    reference = noisy_tiny_model(tokenizer)
    logits = reference(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
    ).logits[:, :-1]
    log_p = torch.log_softmax(logits / 0.9, dim=-1)
    keep = response_mask[:, 1:].float()
    token_log_p = log_p.gather(-1, input_ids[:, 1:, None]).squeeze(-1) * keep
    entropy = -(log_p.exp() * log_p).sum(-1) * keep
    ((token_log_p * weights[:, 1:]).sum() + (entropy * weights[:, 1:]).sum()).backward()

    for (name, got), expected in zip(fused.named_parameters(), reference.parameters(), strict=True):
        assert got.grad is not None, name
        torch.testing.assert_close(got.grad, expected.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_bf16_gradients_are_finite_and_point_the_fp32_way(
    tokenizer: PreTrainedTokenizerFast, rollout
) -> None:
    input_ids, attention_mask, response_mask = rollout.sequences()
    grads = {}
    for bf16 in (False, True):
        model = noisy_tiny_model(tokenizer)
        out = score(model, input_ids, attention_mask, response_mask, bf16=bf16)
        (out.log_probs.sum() + 0.1 * out.entropy.sum()).backward()
        grads[bf16] = torch.cat([p.grad.flatten() for p in model.parameters()])
        assert all(p.grad.dtype == torch.float32 for p in model.parameters())
    assert torch.isfinite(grads[True]).all()
    cosine = torch.nn.functional.cosine_similarity(grads[True], grads[False], dim=0)
    assert cosine > 0.99


def test_no_entropy_when_not_requested(model: Qwen2ForCausalLM, rollout) -> None:
    input_ids, attention_mask, response_mask = rollout.sequences()
    with torch.no_grad():
        with_entropy = score(model, input_ids, attention_mask, response_mask)
        without = score(model, input_ids, attention_mask, response_mask, compute_entropy=False)
    assert without.entropy is None
    torch.testing.assert_close(without.log_probs, with_entropy.log_probs)


def test_bad_inputs_raise(model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast) -> None:
    ids = torch.tensor([[0, 5, 6, 7]])
    attention = torch.tensor([[0, 1, 1, 1]])
    with pytest.raises(ValueError, match="column 0"):
        score(model, ids, torch.ones_like(ids), torch.tensor([[1, 0, 0, 1]]))
    with pytest.raises(ValueError, match="wherever attention_mask is 0"):
        score(model, ids, torch.tensor([[1, 1, 0, 1]]), torch.tensor([[0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="response_mask must have shape"):
        score(model, ids, attention, torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        score(model, ids, attention, torch.tensor([[0, 0, 1, 1]]), temperature=0.0)
    capped = noisy_tiny_model(tokenizer)
    capped.config.final_logit_softcapping = 30.0
    with pytest.raises(ValueError, match="final_logit_softcapping"):
        score(capped, ids, attention, torch.tensor([[0, 0, 1, 1]]))


def test_right_padded_rows_take_the_mask_free_path_with_the_same_scores(
    model: Qwen2ForCausalLM, rollout
) -> None:
    """Rows moved to start at column 0 (right padding only) are scored without an attention
    mask; every real token must keep its score (checked against the left-padded batch's float64
    reference, row by row)."""
    input_ids, attention_mask, response_mask = rollout.sequences()
    shifted = [torch.zeros_like(t) for t in (input_ids, attention_mask, response_mask)]
    for row in range(input_ids.shape[0]):
        keep = attention_mask[row].bool()
        count = int(keep.sum())
        for target, source in zip(shifted, (input_ids, attention_mask, response_mask), strict=True):
            target[row, :count] = source[row][keep]
    assert body_inputs(shifted[1])["attention_mask"] is None
    assert body_inputs(attention_mask)["attention_mask"] is not None
    with torch.no_grad():
        out = score(model, *shifted, temperature=1.0)
    expected, _ = reference_scores(model, input_ids, attention_mask, response_mask, 1.0)
    for row in range(input_ids.shape[0]):
        got = out.log_probs[row][shifted[2][row].bool()].double()
        want = expected[row][response_mask[row].bool()]
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
