"""DecodingSession: several turns on one KV cache = sampling from the concatenated sequences."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, PreTrainedTokenizerFast, Qwen2ForCausalLM

from aem.policy.rows import left_pad
from aem.policy.sampling import SamplingConfig, decode, generate, growing_cache
from aem.policy.scoring import score
from aem.policy.session import DecodingSession

GREEDY = SamplingConfig(max_new_tokens=6, temperature=0.0)
SAMPLED = SamplingConfig(max_new_tokens=6, temperature=1.0)


def observations(tokenizer: PreTrainedTokenizerFast) -> list[list[list[int]]]:
    """Per turn, the new tokens of each of 3 rows (different lengths, so blocks are padded)."""
    texts = [
        ["You are in a room.", "take", "You see a mug 3 and a knife 2. Go"],
        [" You open the fridge.", " Nothing happens and the lamp is off.", " ok"],
        [" done", " You see a drawer 4.", " The cabinet 2 is closed now."],
    ]
    return [[tokenizer.encode(text) for text in turn] for turn in texts]


def run_session(model, tokenizer, config, turns, rows_per_turn, seed=0):
    session = DecodingSession(model, tokenizer, config, torch.Generator().manual_seed(seed))
    outputs = []
    for rows, new in zip(rows_per_turn, turns, strict=True):
        outputs.append((rows, session.step(rows, [new[r] for r in rows])))
    return outputs


def sequences_of(outputs, turns) -> dict[int, list[int]]:
    """Each row's full sequence: what it was fed, then what it sampled, turn after turn."""
    sequences: dict[int, list[int]] = {}
    for (rows, out), new in zip(outputs, turns, strict=True):
        for k, row in enumerate(rows):
            response = out.response_ids[k][out.response_mask[k].bool()].tolist()
            sequences[row] = sequences.get(row, []) + list(new[row]) + response
    return sequences


def test_greedy_turns_equal_greedy_generation_from_the_concatenated_context(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast
) -> None:
    turns = observations(tokenizer)
    rows_per_turn = [[0, 1, 2], [0, 1, 2], [0, 2]]  # row 1 closes before the last turn
    outputs = run_session(model, tokenizer, GREEDY, turns, rows_per_turn)
    context: dict[int, list[int]] = {r: [] for r in range(3)}
    for (rows, out), new in zip(outputs, turns, strict=True):
        for k, row in enumerate(rows):
            context[row] = context[row] + new[row]
            alone = generate(model, tokenizer, [context[row]], GREEDY, torch.Generator())
            got = out.response_ids[k][out.response_mask[k].bool()].tolist()
            want = alone.response_ids[0][alone.response_mask[0].bool()].tolist()
            assert got == want, (row, got, want)
            context[row] = context[row] + got


def test_sampled_log_probs_equal_a_scoring_pass_over_the_whole_sequence(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast
) -> None:
    turns = observations(tokenizer)
    rows_per_turn = [[0, 1, 2], [0, 1, 2], [1, 2]]
    outputs = run_session(model, tokenizer, SAMPLED, turns, rows_per_turn, seed=3)
    full = sequences_of(outputs, turns)
    ids, mask = left_pad([full[r] for r in range(3)], tokenizer.pad_token_id)
    response_mask = torch.zeros_like(mask)
    sampled = torch.zeros(mask.shape)
    cursor = {r: ids.shape[1] - len(full[r]) for r in range(3)}
    for (rows, out), new in zip(outputs, turns, strict=True):
        for k, row in enumerate(rows):
            cursor[row] += len(new[row])
            count = int(out.response_mask[k].sum())
            response_mask[row, cursor[row] : cursor[row] + count] = 1
            sampled[row, cursor[row] : cursor[row] + count] = out.log_probs[k, :count]
            cursor[row] += count
    scored = score(model, ids, mask, response_mask, temperature=1.0)
    assert int(response_mask.sum()) > 20
    torch.testing.assert_close(scored.log_probs, sampled, atol=2e-4, rtol=1e-4)


def test_same_seed_same_tokens(model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast) -> None:
    turns = observations(tokenizer)
    rows = [[0, 1, 2]] * 3
    first = run_session(model, tokenizer, SAMPLED, turns, rows, seed=7)
    second = run_session(model, tokenizer, SAMPLED, turns, rows, seed=7)
    for (_, a), (_, b) in zip(first, second, strict=True):
        assert torch.equal(a.response_ids, b.response_ids)


def test_lengths_count_fed_and_sampled_tokens(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast
) -> None:
    turns = observations(tokenizer)
    session = DecodingSession(model, tokenizer, GREEDY, torch.Generator())
    out = session.step([0, 1, 2], turns[0])
    for k in range(3):
        assert session.length(k) == len(turns[0][k]) + int(out.response_mask[k].sum())


def test_bad_calls_name_the_rows(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast
) -> None:
    turns = observations(tokenizer)
    session = DecodingSession(model, tokenizer, GREEDY, torch.Generator())
    with pytest.raises(ValueError, match="new_tokens of row 1 must not be empty"):
        session.step([0, 1], [turns[0][0], []])
    session.step([0, 1, 2], turns[0])
    with pytest.raises(ValueError, match=r"rows \[5\] are not open"):
        session.step([0, 5], turns[1][:2])
    with pytest.raises(ValueError, match="keep the session's order"):
        session.step([2, 0], turns[1][:2])
    with pytest.raises(ValueError, match="rows must be distinct"):
        session.step([0, 0], turns[1][:2])
    with pytest.raises(ValueError, match="max_position_embeddings"):
        session.step([0], [[5] * model.config.max_position_embeddings])
    with pytest.raises(ValueError, match="is not open"):
        session.length(9)


def test_growing_cache_samples_what_the_concatenating_cache_samples(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast
) -> None:
    """GrowingLayer only changes how keys are stored: same draws, same log-probs as
    transformers' own DynamicCache, across a buffer regrowth (> 64 cached tokens) and a row
    selection."""
    ids, mask = left_pad([tokenizer.encode("You see a mug 3 and a knife 2. " * 4), [5, 6]], 0)
    config = SamplingConfig(max_new_tokens=40, temperature=1.0, stop_at_eos=False)
    outputs = []
    for cache in (growing_cache(model), DynamicCache(config=model.config)):
        out = decode(model, tokenizer, cache, ids, mask, config, torch.Generator().manual_seed(2))
        cache.batch_select_indices(torch.tensor([1]))
        assert cache.get_seq_length() == ids.shape[1] + 39
        outputs.append(out)
    assert ids.shape[1] + 40 > 64
    assert torch.equal(outputs[0].response_ids, outputs[1].response_ids)
    torch.testing.assert_close(outputs[0].log_probs, outputs[1].log_probs)
