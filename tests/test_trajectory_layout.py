"""The trajectory layout: one growing sequence per trajectory, KV cache kept across turns.

Checked against independent recomputations: packing by hand, gathering by a naive loop, the
sampler's own log-probs against a scoring pass over the packed rows, and the prompts against
``build_prompt`` / ``build_followup``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from aem.agent import PromptConfig, build_followup
from aem.envs.pool import EnvPool
from aem.policy.packing import pack_trajectories, pack_turns
from aem.policy.sampling import SamplingConfig, generate
from aem.policy.tokenizer import AgentTokenIds, build_tokenizer
from aem.rollout import (
    FunctionResponder,
    ModelResponder,
    TurnContext,
    encode_continuation,
    rollout,
)
from aem.trainer.batches import concat_batches, select_groups
from aem.trainer.warmstart import NoisyExpert, corpus_texts
from tiny_config import household_policy

COMPACT = PromptConfig(style="compact", history_length=0)


# --------------------------------------------------------------------------- packing


def test_pack_trajectories_hand_case() -> None:
    # trajectory 4: turns ([1, 2] -> [3]) and ([5] -> [6, 7]); trajectory 9: ([8] -> [9, 10, 11])
    packed = pack_trajectories([[1, 2], [5], [8]], [[3], [6, 7], [9, 10, 11]], [4, 4, 9], pad_id=0)
    assert packed.input_ids.tolist() == [[1, 2, 3, 5, 6, 7], [8, 9, 10, 11, 0, 0]]
    assert packed.attention_mask.tolist() == [[1] * 6, [1, 1, 1, 1, 0, 0]]
    assert packed.response_mask.long().tolist() == [[0, 0, 1, 0, 1, 1], [0, 1, 1, 1, 0, 0]]
    assert packed.span_row.tolist() == [0, 0, 1]
    assert packed.span_start.tolist() == [2, 4, 1]
    assert packed.span_mask().long().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    values = torch.arange(12.0).reshape(2, 6)
    assert packed.to_spans(values).tolist() == [[2, 0, 0], [4, 5, 0], [7, 8, 9]]


def test_pack_turns_hand_cases() -> None:
    left = pack_turns([[1, 2], [5]], [[3], [6, 7]], pad_id=0)
    assert left.input_ids.tolist() == [[1, 2, 3, 0], [0, 5, 6, 7]]
    assert left.span_start.tolist() == [2, 2] and left.span_width == 2
    right = pack_turns([[1, 2], [5]], [[3], [6, 7]], pad_id=0, right_padded=True)
    assert right.input_ids.tolist() == [[1, 2, 3], [5, 6, 7]]
    assert right.attention_mask.tolist() == [[1, 1, 1], [1, 1, 1]]
    assert right.response_mask.long().tolist() == [[0, 0, 1], [0, 1, 1]]
    assert right.span_start.tolist() == [2, 1]
    values = torch.arange(6.0).reshape(2, 3)
    assert right.to_spans(values).tolist() == [[2, 0], [4, 5]]


def test_pack_trajectories_rejects_split_trajectories() -> None:
    with pytest.raises(ValueError, match="trajectory 1 must be contiguous"):
        pack_trajectories([[1], [2], [3]], [[1], [2], [3]], [1, 2, 1], pad_id=0)
    with pytest.raises(ValueError, match="traj_id must have 2 entries"):
        pack_trajectories([[1], [2]], [[1], [2]], [1], pad_id=0)


def naive_spans(packed: Any, values: torch.Tensor) -> torch.Tensor:
    width = int(packed.span_length.max())
    out = torch.zeros(packed.num_spans, width)
    for s in range(packed.num_spans):
        row, start = int(packed.span_row[s]), int(packed.span_start[s])
        for k in range(int(packed.span_length[s])):
            out[s, k] = values[row, start + k]
    return out


@pytest.mark.parametrize("layout", ["turn", "trajectory"])
def test_to_spans_and_select_rows_match_naive_loops(layout: str) -> None:
    rng = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 6, (9, 2), generator=rng).tolist()
    prompts = [[7] * p for p, _ in lengths]
    responses = [[3] * r for _, r in lengths]
    traj = [0, 0, 0, 1, 2, 2, 3, 3, 3]
    if layout == "turn":
        packed = pack_turns(prompts, responses, pad_id=0)
    else:
        packed = pack_trajectories(prompts, responses, traj, pad_id=0)
    values = torch.randn(packed.input_ids.shape, generator=rng)
    assert torch.equal(packed.to_spans(values), naive_spans(packed, values))
    rows = torch.tensor([2, 0]) if layout == "trajectory" else torch.tensor([6, 1, 4])
    sub, spans = packed.select_rows(rows)
    expected = [s for r in rows.tolist() for s in range(9) if int(packed.span_row[s]) == r]
    assert spans.tolist() == expected
    assert torch.equal(sub.to_spans(values[rows]), packed.to_spans(values)[spans])


# --------------------------------------------------------------------------- rollout


class SeeingActor(NoisyExpert):
    """The noisy expert, recording each (prompt, context) it answered."""

    def __init__(self) -> None:
        super().__init__("household", noise=0.3, seed=0)
        self.seen: list[tuple[str, TurnContext]] = []

    def __call__(self, prompts: list[str], contexts: list[TurnContext]) -> list[str]:
        self.seen.extend(zip(prompts, contexts, strict=True))
        return super().__call__(prompts, contexts)


def test_function_rollout_builds_one_sequence_per_trajectory() -> None:
    tokenizer = build_tokenizer(corpus_texts("household", 8, seed=0, prompt=COMPACT), 512)
    actor = SeeingActor()
    with EnvPool("household", 4) as pool:
        responder = FunctionResponder(actor, tokenizer, max_prompt_tokens=400)
        batch = rollout(responder, pool, "household", [5, 6], 2, 6, COMPACT, layout="trajectory")
    assert batch.layout == "trajectory"
    for prompt, context in actor.seen:
        assert context.continues == (context.turn > 0)
        if context.continues:
            admissible = context.info["admissible_commands"]
            assert prompt == build_followup(
                "household", context.observation, context.turn, admissible, COMPACT
            )
            assert "Task:" not in prompt
        else:
            assert prompt.startswith("Task: ")
    packed = batch.packed(tokenizer.pad_token_id)
    assert packed.input_ids.shape[0] == 4
    for s in range(len(batch)):
        row, turn = int(packed.span_row[s]), int(batch.turn[s])
        assert row == int(batch.traj_id[s])
        if turn > 0:
            assert batch.prompt_ids[s] == encode_continuation(
                tokenizer, batch.prompt_texts[s], None
            )
        turns = [k for k in range(len(batch)) if int(batch.traj_id[k]) == row and k <= s]
        expected = [t for k in turns for t in batch.prompt_ids[k] + batch.response_ids[k]]
        assert packed.input_ids[row, : len(expected)].tolist() == expected
    kept = select_groups(batch, [1])
    assert kept.layout == "trajectory" and set(kept.group_id.tolist()) == {1}
    joined = concat_batches([kept, batch])
    assert joined.layout == "trajectory" and len(joined) == len(kept) + len(batch)
    turn_batch = select_groups(batch, [0])
    turn_batch.layout = "turn"
    with pytest.raises(ValueError, match="one layout"):
        concat_batches([turn_batch, batch])
    with pytest.raises(ValueError, match="use packed"):
        batch.to_padded(0)


def test_unknown_layout_is_refused() -> None:
    with EnvPool("household", 1) as pool:
        responder = FunctionResponder(lambda p, c: ["x"] * len(p))
        with pytest.raises(ValueError, match="layout must be one of"):
            rollout(responder, pool, "household", [0], 1, 2, COMPACT, layout="rows")


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    return household_policy(COMPACT)


def model_rollout(tiny: tuple[Any, Any], layout: str, temperature: float = 1.0, **kw: Any):
    model, tokenizer = tiny
    stop = AgentTokenIds.of(tokenizer).action_close
    sampling = SamplingConfig(max_new_tokens=10, temperature=temperature, stop_token_ids=(stop,))
    responder = ModelResponder(
        model, tokenizer, sampling, torch.Generator().manual_seed(1), 300, **kw
    )
    with EnvPool("household", 4) as pool:
        return rollout(responder, pool, "household", [11, 12], 2, 4, COMPACT, layout=layout)


def test_each_response_is_what_the_model_says_after_its_packed_prefix(
    tiny: tuple[Any, Any],
) -> None:
    """Greedy: span s must equal greedy generation from the packed row's tokens before it, so
    the cached multi-turn sampler conditioned on exactly the sequence the trainer scores."""
    model, tokenizer = tiny
    batch = model_rollout(tiny, "trajectory", temperature=0.0)
    assert len(batch) == 4 * 4  # an untrained model never finishes in 4 turns
    packed = batch.packed(tokenizer.pad_token_id)
    assert packed.input_ids.shape[0] == 4
    greedy = SamplingConfig(
        max_new_tokens=10,
        temperature=0.0,
        stop_token_ids=(AgentTokenIds.of(tokenizer).action_close,),
    )
    for s in range(len(batch)):
        row, start = int(packed.span_row[s]), int(packed.span_start[s])
        prefix = packed.input_ids[row, :start].tolist()
        alone = generate(model, tokenizer, [prefix], greedy, torch.Generator())
        expected = alone.response_ids[0][alone.response_mask[0].bool()].tolist()
        assert batch.response_ids[s] == expected, s
    turn_packed = model_rollout(tiny, "turn", temperature=0.0).packed(tokenizer.pad_token_id)
    assert int(packed.attention_mask.sum()) < int(turn_packed.attention_mask.sum())


def test_context_full_ends_the_trajectory(tiny: tuple[Any, Any]) -> None:
    batch = model_rollout(tiny, "trajectory", max_sequence_tokens=340)
    records = batch.trajectories
    assert any(record.context_full for record in records)
    packed = batch.packed(tiny[1].pad_token_id)
    assert int(packed.attention_mask.sum(dim=1).max()) <= 340
    for record in records:
        if record.context_full:
            assert not record.won and record.length < 4
    with pytest.raises(ValueError, match="max_sequence_tokens must be an int >= 310"):
        model_rollout(tiny, "trajectory", max_sequence_tokens=309)
