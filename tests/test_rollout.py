"""Multi-turn rollout: ids, rewards and outcomes of the span batch it returns, checked against
naive recomputations; expert and random agents; a crashing environment; a tiny model end to
end."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from aem.agent import PromptConfig, parse_response
from aem.batch import SpanBatch
from aem.envs import TextEnv
from aem.envs.pool import EnvPool
from aem.policy.sampling import SamplingConfig
from aem.policy.tokenizer import AgentTokenIds
from aem.rollout import FunctionResponder, ModelResponder, TurnContext, rollout
from aem.trainer.warmstart import NoisyExpert, format_response
from tiny_config import household_policy

COMPACT = PromptConfig(style="compact", history_length=2)
PENALTY = 0.25


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class RecordingRandomActor:
    """Random admissible actions; every fifth response is malformed. Records what it saw."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seen: dict[tuple[int, int], TurnContext] = {}
        self.calls = 0

    def __call__(self, prompts: list[str], contexts: list[TurnContext]) -> list[str]:
        texts = []
        for context in contexts:
            self.seen[context.env_index, context.turn] = context
            self.calls += 1
            commands = context.info.get("admissible_commands") or ["look"]
            action = self.rng.choice(commands)
            texts.append(action if self.calls % 5 == 0 else format_response(action))
        return texts


def play(env: str, actor: Any, seeds: list[int], group: int, turns: int, **kw: Any) -> SpanBatch:
    with EnvPool(env, len(seeds) * group) as pool:
        return rollout(FunctionResponder(actor), pool, env, seeds, group, turns, COMPACT, **kw)


@pytest.mark.parametrize(("env", "seeds"), [("household", [3, 14, 15]), ("webshop", [2, 7])])
def test_expert_wins_every_trajectory(env: str, seeds: list[int]) -> None:
    batch = play(env, NoisyExpert(env, noise=0.0, seed=0), seeds, 2, 30)
    records = batch.trajectories()
    assert len(records) == 2 * len(seeds)
    assert all(record.won and record.error is None for record in records)
    assert all(record.episode_return == 10.0 for record in records)
    assert bool(batch["valid"].all()) and bool(batch["won"].all())
    assert torch.equal(batch["reward"], batch["env_reward"])


def test_random_agent_mostly_fails() -> None:
    batch = play("household", RecordingRandomActor(seed=0), [1, 2, 3, 4], 2, 15)
    wins = sum(record.won for record in batch.trajectories())
    assert wins <= 2
    assert all(record.length == 15 for record in batch.trajectories() if not record.won)


@pytest.mark.parametrize("env", ["household", "webshop"])
def test_ids_rewards_and_outcomes_match_a_naive_recount(env: str) -> None:
    group_size, seeds = 3, [5, 6]
    actor = RecordingRandomActor(seed=1)
    batch = play(env, actor, seeds, group_size, 6, invalid_penalty=PENALTY)
    n = len(batch)
    records = batch.trajectories()
    assert n == len(actor.seen) == sum(record.length for record in records)
    for name in ("group", "traj", "turn", "reward", "valid", "won", "anchor"):
        assert batch[name].shape == (n,), name
    spans_of: dict[int, list[int]] = {}
    for span in range(n):
        spans_of.setdefault(int(batch["traj"][span]), []).append(span)
    for record in records:
        spans = spans_of[record.traj_id]
        assert spans == list(range(spans[0], spans[0] + record.length))  # contiguous
        assert [int(batch["turn"][s]) for s in spans] == list(range(record.length))
        assert record.group_id == record.traj_id // group_size
        assert record.seed == seeds[record.group_id]
        assert all(int(batch["group"][s]) == record.group_id for s in spans)
        total = sum(float(batch["env_reward"][s]) for s in spans)
        assert record.episode_return == pytest.approx(total)
        assert all(float(batch["episode_return"][s]) == pytest.approx(total) for s in spans)
        assert all(bool(batch["won"][s]) == record.won for s in spans)
        assert record.invalid_turns == sum(not bool(batch["valid"][s]) for s in spans)
        assert record.length == 6 or record.won or record.error is not None
    for span in range(n):
        parsed = parse_response(batch["response_text"][span])
        valid = bool(batch["valid"][span])
        if not parsed.well_formed:
            assert not valid
        expected = float(batch["env_reward"][span]) - (0.0 if valid else PENALTY)
        assert float(batch["reward"][span]) == pytest.approx(expected)
    assert not bool(batch["valid"].all())  # the malformed fifths
    # same seed => same task: every first prompt of a group is the same text
    for g in range(len(seeds)):
        members = range(g * group_size, (g + 1) * group_size)
        assert len({batch["prompt_text"][spans_of[t][0]] for t in members}) == 1
    # anchors: equal ids exactly for equal (group, observation the turn acted from)
    keys = [
        (
            int(batch["group"][s]),
            actor.seen[int(batch["traj"][s]), int(batch["turn"][s])].observation,
        )
        for s in range(n)
    ]
    anchor = batch["anchor"]
    for a in range(n):
        for b in range(n):
            assert (anchor[a] == anchor[b]) == (keys[a] == keys[b])


class ExplodingEnv(TextEnv):
    """Reaches its goal on the third ``tick``; the action ``explode`` raises."""

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None):
        self.count = 0
        return "count 0", self._info(False)

    def step(self, action: str):
        if action == "explode":
            raise RuntimeError("engine crashed")
        self.count += 1
        won = self.count == 3
        return f"count {self.count}", float(won), won, False, self._info(won)

    def _info(self, won: bool) -> dict[str, Any]:
        return {"admissible_commands": ["tick"], "won": won, "task": "tick thrice", "valid": True}


def test_crashing_environment_ends_only_its_trajectory() -> None:
    def actor(prompts: list[str], contexts: list[TurnContext]) -> list[str]:
        crash = [c.env_index == 1 and c.turn == 1 for c in contexts]
        return [format_response("explode" if boom else "tick") for boom in crash]

    with EnvPool(ExplodingEnv, 4) as pool:
        batch = rollout(FunctionResponder(actor), pool, "counter", [0, 1], 2, 10, COMPACT)
        assert len(pool.errors) == 1
    records = batch.trajectories()
    crashed = records[1]
    assert crashed.error is not None and "engine crashed" in crashed.error
    assert crashed.length == 2 and not crashed.won and crashed.invalid_turns == 0
    for record in (records[0], *records[2:]):
        assert record.error is None and record.won and record.length == 3
        assert record.episode_return == 1.0


def test_argument_checks() -> None:
    with EnvPool(ExplodingEnv, 3) as pool:
        responder = FunctionResponder(lambda p, c: ["x"] * len(p))
        with pytest.raises(ValueError, match="num_envs=3"):
            rollout(responder, pool, "counter", [0, 1], 2, 5, COMPACT)
        with pytest.raises(ValueError, match="max_turns"):
            rollout(responder, pool, "counter", [0, 1, 2], 1, 0, COMPACT)
        with pytest.raises(ValueError, match="invalid_penalty"):
            rollout(responder, pool, "counter", [0, 1, 2], 1, 2, COMPACT, invalid_penalty=-1.0)


# --------------------------------------------------------------------------- tiny model


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    return household_policy(COMPACT)


def model_rollout(tiny: tuple[Any, Any], seed: int, max_prompt_tokens: int = 96) -> SpanBatch:
    model, tokenizer = tiny
    stop = AgentTokenIds.of(tokenizer).action_close
    sampling = SamplingConfig(max_new_tokens=12, temperature=1.0, stop_token_ids=(stop,))
    generator = torch.Generator().manual_seed(seed)
    responder = ModelResponder(model, tokenizer, sampling, generator, max_prompt_tokens)
    with EnvPool("household", 4) as pool:
        return rollout(responder, pool, "household", [11, 12], 2, 3, COMPACT)


def test_tiny_model_rollout_end_to_end(tiny: tuple[Any, Any]) -> None:
    _, tokenizer = tiny
    batch = model_rollout(tiny, seed=0)
    assert len(batch) == 4 * 3  # an untrained model never finishes in 3 turns
    stops = {AgentTokenIds.of(tokenizer).action_close, tokenizer.eos_token_id}
    tokens = batch.turn_tokens()
    for span, (prompt, response) in enumerate(tokens):
        full = tokenizer(batch["prompt_text"][span])["input_ids"]
        assert len(full) > 96  # left truncation happened and kept the end
        assert prompt == full[-96:]
        assert 1 <= len(response) <= 12
        assert response[-1] in stops or len(response) == 12
        assert tokenizer.decode(response, skip_special_tokens=True) == batch["response_text"][span]
    # the turn layout: one right-padded row per turn, its prompt then its response
    width = max(len(p) + len(r) for p, r in tokens)
    assert batch.input_ids.shape == batch.attention_mask.shape == (len(batch), width)
    assert batch.span_row.tolist() == list(range(len(batch)))
    for row, (prompt, response) in enumerate(tokens):
        used, pad = len(prompt) + len(response), width - len(prompt) - len(response)
        assert batch.input_ids[row].tolist() == prompt + response + [tokenizer.pad_token_id] * pad
        assert batch.attention_mask[row].tolist() == [1] * used + [0] * pad
        assert (
            batch.response_mask[row].tolist()
            == [False] * len(prompt) + [True] * len(response) + [False] * pad
        )


def test_same_seed_same_batch(tiny: tuple[Any, Any]) -> None:
    first, second, other = (model_rollout(tiny, seed) for seed in (3, 3, 4))
    assert torch.equal(first.input_ids, second.input_ids)
    for name in ("reward", "valid", "anchor", "traj", "turn", "won"):
        assert torch.equal(first[name], second[name]), name
    assert first.turn_tokens() != other.turn_tokens()
