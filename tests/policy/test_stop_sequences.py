"""Stop strings in the sampler: multi-token stops (``</action>`` in a pretrained vocabulary),
checked against a naive decode of every response prefix, on the tiny model."""

from __future__ import annotations

import pytest
import torch

from aem.policy.sampling import SamplingConfig, generate, stop_string_hits
from aem.policy.tokenizer import ACTION_CLOSE, AgentTokenIds


def first_stop(tokenizer, tokens: list[int], stop_strings, stop_ids) -> int | None:
    """Reference: the first index k at which token k is a stop id or the decoded prefix
    ``tokens[: k + 1]`` contains a stop string (decoding the whole prefix every time)."""
    for k in range(len(tokens)):
        if tokens[k] in stop_ids:
            return k
        text = tokenizer.decode(tokens[: k + 1], skip_special_tokens=False)
        if any(stop in text for stop in stop_strings):
            return k
    return None


def check_against_reference(tokenizer, out, stop_strings, stop_ids, max_new_tokens):
    for row in range(out.response_ids.shape[0]):
        mask = out.response_mask[row].bool()
        kept = out.response_ids[row][mask].tolist()
        assert bool(mask[: len(kept)].all()), "the response mask must be a prefix"
        assert bool((out.response_ids[row][~mask] == tokenizer.pad_token_id).all())
        k = first_stop(tokenizer, kept, stop_strings, stop_ids)
        if k is None:
            assert not bool(out.stopped[row])
            assert len(kept) == max_new_tokens
        else:
            assert bool(out.stopped[row])
            assert k == len(kept) - 1, f"row {row} ran past its stop at token {k}"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rows_end_at_the_first_token_completing_a_stop_string(model, tokenizer, prompts, seed):
    # Frequent multi-character strings, so rows stop at varied points, often mid-token.
    stop_strings = ("th", "e ", "1")
    config = SamplingConfig(max_new_tokens=24, temperature=1.0, stop_strings=stop_strings)
    out = generate(model, tokenizer, prompts, config, torch.Generator().manual_seed(seed))
    eos = {tokenizer.eos_token_id}
    check_against_reference(tokenizer, out, stop_strings, eos, 24)
    assert bool(out.stopped.any())


def test_stop_strings_and_stop_ids_combine(model, tokenizer, prompts):
    ids = AgentTokenIds.of(tokenizer)
    config = SamplingConfig(
        max_new_tokens=20,
        temperature=1.5,
        stop_token_ids=(ids.think_open,),
        stop_strings=("an",),
    )
    out = generate(model, tokenizer, prompts * 2, config, torch.Generator().manual_seed(5))
    check_against_reference(tokenizer, out, ("an",), {ids.think_open, ids.eos}, 20)


def test_single_token_tag_as_stop_string_matches_stop_token_id(model, tokenizer, prompts):
    """On the tiny tokenizer ``</action>`` is one token: stopping on the string or on its id
    gives the same rows unless the string was spelled with several tokens (checked too)."""
    close = AgentTokenIds.of(tokenizer).action_close
    by_string = SamplingConfig(max_new_tokens=16, stop_strings=(ACTION_CLOSE,))
    out = generate(model, tokenizer, prompts, by_string, torch.Generator().manual_seed(3))
    check_against_reference(tokenizer, out, (ACTION_CLOSE,), {close, tokenizer.eos_token_id}, 16)


def test_stop_string_hits_on_hand_built_rows(tokenizer):
    texts = ["go to<action>take mug 1</action> x", "</act", "</action>", "ion>", "a mug"]
    rows = [tokenizer.encode(text, add_special_tokens=False) for text in texts]
    # Split "</action>" across two tokens by hand: "</act" + "ion>" -> a multi-token stop.
    rows.append(
        tokenizer.encode("</act", add_special_tokens=False)
        + tokenizer.encode("ion>", add_special_tokens=False)
    )
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    # Right-align so every row's newest token is in the last column (as in the sampler).
    responses = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    alive = torch.ones(len(rows), dtype=torch.bool)
    alive[3] = False
    hits = stop_string_hits(tokenizer, responses, alive, (ACTION_CLOSE,))
    # Row 0 holds the string in its last 9 tokens (the window = len("</action>") bytes), row 3
    # is not alive, rows 1 and 4 lack it, row 5 spells it with two tokens.
    assert hits.tolist() == [True, False, True, False, False, True]


def test_stop_string_window_is_the_longest_string_in_bytes(tokenizer):
    ids = tokenizer.encode("é", add_special_tokens=False)  # 2 bytes, 1+ tokens
    filler = tokenizer.encode("a", add_special_tokens=False) * 3
    responses = torch.tensor([ids + filler, filler + ids])
    hits = stop_string_hits(tokenizer, responses, torch.ones(2, dtype=torch.bool), ("é",))
    assert hits.tolist() == [False, True]


@pytest.mark.parametrize(
    "bad",
    [("",), ("ok", 3), "</action>"],
)
def test_bad_stop_strings_are_refused(bad):
    with pytest.raises(ValueError, match="stop_strings"):
        SamplingConfig(stop_strings=bad)


def test_no_live_rows_gives_no_hits(tokenizer):
    """Every row ended (e.g. on eos) at this step: tokenizers decode an empty batch as ``[""]``,
    which must not be taken for a row."""
    responses = torch.tensor([tokenizer.encode("</action>", add_special_tokens=False)] * 2)
    hits = stop_string_hits(tokenizer, responses, torch.zeros(2, dtype=torch.bool), ("</action>",))
    assert hits.tolist() == [False, False]
