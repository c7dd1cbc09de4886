"""The trajectory layout: one growing sequence per trajectory, KV cache kept across turns.

Checked against independent recomputations: the rows against the turns' own tokens, greedy
generation from each span's prefix, and the prompts against ``build_prompt`` /
``build_followup`` (the span batch itself: ``test_batch.py``).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from aem.agent import PromptConfig, build_followup
from aem.batch import SpanBatch
from aem.envs.pool import EnvPool
from aem.policy.sampling import SamplingConfig, generate
from aem.policy.tokenizer import AgentTokenIds, build_tokenizer
from aem.rollout import (
    FunctionResponder,
    ModelResponder,
    TurnContext,
    encode_continuation,
    rollout,
)
from aem.trainer.warmstart import NoisyExpert, corpus_texts
from tiny_config import household_policy

COMPACT = PromptConfig(style="compact", history_length=0)


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
    assert batch.num_rows == 4
    tokens = batch.turn_tokens()
    for s in range(len(batch)):
        row, turn = int(batch.span_row[s]), int(batch["turn"][s])
        assert row == int(batch["traj"][s])
        if turn > 0:
            assert tokens[s][0] == encode_continuation(tokenizer, batch["prompt_text"][s], None)
        turns = [k for k in range(len(batch)) if int(batch["traj"][k]) == row and k <= s]
        expected = [t for k in turns for t in tokens[k][0] + tokens[k][1]]
        assert batch.input_ids[row, : len(expected)].tolist() == expected
    kept = batch.select_groups([1])
    assert kept.layout == "trajectory" and set(kept["group"].tolist()) == {1}
    joined = SpanBatch.concat([kept, batch])
    assert joined.layout == "trajectory" and len(joined) == len(kept) + len(batch)


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
    assert batch.num_rows == 4
    greedy = SamplingConfig(
        max_new_tokens=10,
        temperature=0.0,
        stop_token_ids=(AgentTokenIds.of(tokenizer).action_close,),
    )
    tokens = batch.turn_tokens()
    for s in range(len(batch)):
        row, start = int(batch.span_row[s]), int(batch.span_start[s])
        prefix = batch.input_ids[row, :start].tolist()
        alone = generate(model, tokenizer, [prefix], greedy, torch.Generator())
        expected = alone.response_ids[0][alone.response_mask[0].bool()].tolist()
        assert tokens[s][1] == expected, s
    turn_batch = model_rollout(tiny, "turn", temperature=0.0)
    assert int(batch.attention_mask.sum()) < int(turn_batch.attention_mask.sum())


def test_context_full_ends_the_trajectory(tiny: tuple[Any, Any]) -> None:
    batch = model_rollout(tiny, "trajectory", max_sequence_tokens=340)
    records = batch.trajectories()
    assert any(record.context_full for record in records)
    assert int(batch.attention_mask.sum(dim=1).max()) <= 340
    for record in records:
        if record.context_full:
            assert not record.won and record.length < 4
    with pytest.raises(ValueError, match="max_sequence_tokens must be an int >= 310"):
        model_rollout(tiny, "trajectory", max_sequence_tokens=309)
