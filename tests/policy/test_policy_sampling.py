"""Sampler: left padding, batch = one-at-a-time, seeding, stop tokens, nucleus, bf16, checks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import PreTrainedTokenizerFast, Qwen2ForCausalLM

from aem.policy.rows import left_pad, position_ids_from_mask
from aem.policy.sampling import SamplingConfig, cache_keyword, generate, nucleus_filter
from aem.policy.tokenizer import AgentTokenIds

GREEDY = SamplingConfig(max_new_tokens=10, temperature=0.0)


def run(model, tokenizer, prompts, config, seed=0):
    return generate(model, tokenizer, prompts, config, torch.Generator().manual_seed(seed))


def test_left_padded_prompt_gives_the_unpadded_next_token_logits(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str]
) -> None:
    token_lists = [tokenizer.encode(prompt) for prompt in prompts]
    ids, mask = left_pad(token_lists, tokenizer.pad_token_id)
    assert len({len(tokens) for tokens in token_lists}) > 1  # really padded
    with torch.no_grad():
        padded = model(
            input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)
        ).logits
        for row, tokens in enumerate(token_lists):
            alone = model(input_ids=torch.tensor([tokens])).logits[0]
            torch.testing.assert_close(padded[row, -len(tokens) :], alone, atol=1e-5, rtol=1e-5)


def test_position_ids_count_attended_tokens() -> None:
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]])
    expected = torch.tensor([[0, 0, 0, 1, 2, 2], [0, 1, 2, 3, 3, 3]])
    assert torch.equal(position_ids_from_mask(mask), expected)


def test_greedy_batch_equals_one_prompt_at_a_time(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str]
) -> None:
    batch = run(model, tokenizer, prompts, GREEDY)
    assert batch.response_ids.shape == (len(prompts), GREEDY.max_new_tokens)
    for row, prompt in enumerate(prompts):
        alone = run(model, tokenizer, [prompt], GREEDY)
        assert torch.equal(batch.response_ids[row], alone.response_ids[0])
        torch.testing.assert_close(batch.log_probs[row], alone.log_probs[0], atol=1e-5, rtol=0)
        assert batch.texts[row] == alone.texts[0]
    # The responses are not trivially constant (otherwise the check above would be weak).
    assert len({tuple(row.tolist()) for row in batch.response_ids}) == len(prompts)


def test_greedy_equals_a_naive_loop_without_cache(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str]
) -> None:
    out = run(model, tokenizer, prompts[:2], GREEDY)
    for row, prompt in enumerate(prompts[:2]):
        tokens = tokenizer.encode(prompt)
        for step in range(GREEDY.max_new_tokens):
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([tokens])).logits[0, -1].double()
            token = int(logits.argmax())
            assert int(out.response_ids[row, step]) == token
            expected = torch.log_softmax(logits, -1)[token].item()
            assert out.log_probs[row, step].item() == pytest.approx(expected, abs=1e-4)
            tokens.append(token)


def test_same_seed_same_samples_other_seed_other_samples(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str]
) -> None:
    config = SamplingConfig(max_new_tokens=12, temperature=1.0, top_p=0.95)
    first = run(model, tokenizer, prompts, config, seed=3)
    second = run(model, tokenizer, prompts, config, seed=3)
    other = run(model, tokenizer, prompts, config, seed=4)
    assert torch.equal(first.response_ids, second.response_ids)
    assert torch.equal(first.log_probs, second.log_probs)
    assert not torch.equal(first.response_ids, other.response_ids)


def test_token_id_prompts_equal_string_prompts(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str]
) -> None:
    from_text = run(model, tokenizer, prompts, GREEDY)
    from_ids = run(model, tokenizer, [tokenizer.encode(p) for p in prompts], GREEDY)
    assert torch.equal(from_text.prompt_ids, from_ids.prompt_ids)
    assert torch.equal(from_text.response_ids, from_ids.response_ids)


@pytest.fixture
def stop_prone_model(model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast):
    """The shared model with a +4 logit bias on ``</action>``, so rows stop at various steps."""
    stop_id = AgentTokenIds.of(tokenizer).action_close
    bias = torch.zeros(model.config.vocab_size)
    bias[stop_id] = 4.0
    handle = model.lm_head.register_forward_hook(lambda module, args, output: output + bias)
    yield model
    handle.remove()


def test_rows_stop_at_action_close_and_stop_growing(
    stop_prone_model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str]
) -> None:
    stop_id = AgentTokenIds.of(tokenizer).action_close
    config = SamplingConfig(
        max_new_tokens=20, temperature=1.0, stop_token_ids=(stop_id,), stop_at_eos=False
    )
    out = run(stop_prone_model, tokenizer, prompts * 4, config, seed=1)
    lengths = []
    for row in range(len(prompts) * 4):
        ids, mask = out.response_ids[row].tolist(), out.response_mask[row].tolist()
        if stop_id in ids:
            end = ids.index(stop_id) + 1
            assert out.stopped[row]
            assert out.texts[row].endswith("</action>")
        else:
            end = len(ids)
            assert not out.stopped[row]
        assert mask == [1] * end + [0] * (len(ids) - end)
        assert ids[end:] == [tokenizer.pad_token_id] * (len(ids) - end)
        assert out.log_probs[row, end:].eq(0).all()
        assert out.log_probs[row, :end].lt(0).all()
        lengths.append(end)
    assert len(set(lengths)) > 2  # rows really stopped at different steps


def test_a_stopped_row_does_not_change_the_others(
    stop_prone_model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str]
) -> None:
    stop_id = AgentTokenIds.of(tokenizer).action_close
    config = SamplingConfig(max_new_tokens=12, temperature=0.0, stop_token_ids=(stop_id,))
    batch = run(stop_prone_model, tokenizer, prompts, config)
    for row, prompt in enumerate(prompts):
        alone = run(stop_prone_model, tokenizer, [prompt], config)
        length = int(alone.response_mask.sum())
        assert torch.equal(batch.response_ids[row, :length], alone.response_ids[0, :length])
        assert int(batch.response_mask[row].sum()) == length


def test_eos_stops_unless_disabled(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str]
) -> None:
    eos = tokenizer.eos_token_id
    bias = torch.zeros(model.config.vocab_size)
    bias[eos] = 100.0  # eos is always the argmax
    handle = model.lm_head.register_forward_hook(lambda module, args, output: output + bias)
    try:
        stopped = run(model, tokenizer, prompts, GREEDY)
        unstopped = run(model, tokenizer, prompts, SamplingConfig(10, 0.0, stop_at_eos=False))
    finally:
        handle.remove()
    assert stopped.response_ids.shape == (len(prompts), 1)  # every row done after one step
    assert stopped.response_ids.eq(eos).all() and stopped.stopped.all()
    assert stopped.texts == [""] * len(prompts)  # eos is special: not in the text
    assert unstopped.response_mask.eq(1).all() and not unstopped.stopped.any()


def naive_nucleus_keep(probs: list[float], top_p: float) -> set[int]:
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    kept, mass = set(), 0.0
    for index in order:
        if mass >= top_p:
            break
        kept.add(index)
        mass += probs[index]
    return kept


@settings(max_examples=100, deadline=None)
@given(
    logits=st.lists(
        st.floats(-5, 5, allow_nan=False).map(lambda x: round(x, 2)), min_size=2, max_size=12
    ),
    top_p=st.floats(0.05, 0.99),
)
def test_nucleus_filter_matches_naive_sort(logits: list[float], top_p: float) -> None:
    values = torch.tensor(logits, dtype=torch.float64)
    probs = torch.softmax(values, -1).tolist()
    kept = naive_nucleus_keep(probs, top_p)
    # Skip cases where a float64 rounding tie on the cumulative mass decides the boundary.
    order = sorted(probs, reverse=True)
    boundaries = [abs(sum(order[: k + 1]) - top_p) for k in range(len(order))]
    if min(boundaries) < 1e-9 or len(set(logits)) < len(logits):
        return
    filtered = nucleus_filter(values, top_p)
    assert {i for i in range(len(logits)) if filtered[i] > float("-inf")} == kept


def test_tiny_top_p_is_greedy(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str]
) -> None:
    greedy = run(model, tokenizer, prompts, GREEDY)
    nucleus = run(model, tokenizer, prompts, SamplingConfig(10, temperature=1.0, top_p=1e-6))
    assert torch.equal(greedy.response_ids, nucleus.response_ids)


def test_sampling_frequencies_follow_the_tempered_distribution(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast
) -> None:
    prompt = "You see a mug 3"
    config = SamplingConfig(max_new_tokens=1, temperature=0.7)
    draws = run(model, tokenizer, [prompt] * 4000, config, seed=11).response_ids[:, 0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tokenizer.encode(prompt)])).logits[0, -1]
    expected = torch.softmax(logits.double() / 0.7, -1)
    observed = torch.bincount(draws, minlength=expected.numel()).double() / draws.numel()
    top = expected.argsort(descending=True)[:5]
    # 4000 draws: standard error <= 0.008, so 0.04 is a 5-sigma band.
    torch.testing.assert_close(observed[top], expected[top], atol=0.04, rtol=0)


def test_bf16_autocast_is_numerically_sane(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str]
) -> None:
    config = SamplingConfig(max_new_tokens=8, temperature=0.0, bf16=True)
    bf16 = run(model, tokenizer, prompts, config)
    fp32 = run(model, tokenizer, prompts, GREEDY)
    assert torch.isfinite(bf16.log_probs).all()
    # The first token comes from the same prefix in both runs: its log-prob differs only by
    # bf16 rounding (8 mantissa bits over a few layers).
    torch.testing.assert_close(bf16.log_probs[:, 0], fp32.log_probs[:, 0], atol=0.1, rtol=0.05)
    agreement = (bf16.response_ids[:, 0] == fp32.response_ids[:, 0]).float().mean()
    assert agreement >= 0.75


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": -1.0}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"stop_token_ids": (-1,)}, "stop_token_ids"),
    ],
)
def test_bad_config_raises(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        SamplingConfig(**kwargs)


def test_bad_prompts_raise(model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast) -> None:
    with pytest.raises(ValueError, match="prompts must not be empty"):
        run(model, tokenizer, [], GREEDY)
    with pytest.raises(ValueError, match="mix"):
        run(model, tokenizer, ["a", [3, 4]], GREEDY)
    with pytest.raises(ValueError, match=r"sequences\[1\]"):
        run(model, tokenizer, [[3], []], GREEDY)
    with pytest.raises(ValueError, match="token ids"):
        run(model, tokenizer, [[3, 10**6]], GREEDY)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        run(model, tokenizer, [[3] * 2040], SamplingConfig(max_new_tokens=20))
    with pytest.raises(ValueError, match="generator"):
        generate(model, tokenizer, ["a"], GREEDY, generator=0)  # type: ignore[arg-type]


def test_cache_keyword_is_an_argument_of_the_installed_forward(model: Qwen2ForCausalLM) -> None:
    """``cache`` (newer transformers) or ``past_key_values`` (older): whichever the model takes,
    so sampling never passes a deprecated name."""
    import inspect

    keyword = cache_keyword(model)
    names = inspect.signature(type(model).forward).parameters
    assert keyword in names
    assert keyword == ("cache" if "cache" in names else "past_key_values")
