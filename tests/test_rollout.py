"""Multi-turn rollout: ids, rewards and outcomes of the flat turn batch, checked against naive
recomputations; expert and random agents; a crashing environment; a tiny model end to end."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from aem.agent import PromptConfig, parse_response
from aem.envs import TextEnv
from aem.envs.pool import EnvPool
from aem.policy.sampling import SamplingConfig
from aem.policy.tokenizer import AgentTokenIds
from aem.rollout import (
    FunctionResponder,
    ModelResponder,
    TurnBatch,
    TurnContext,
    pad_turns,
    rollout,
)
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


def play(env: str, actor: Any, seeds: list[int], group: int, turns: int, **kw: Any) -> TurnBatch:
    with EnvPool(env, len(seeds) * group) as pool:
        return rollout(FunctionResponder(actor), pool, env, seeds, group, turns, COMPACT, **kw)


@pytest.mark.parametrize(("env", "seeds"), [("household", [3, 14, 15]), ("webshop", [2, 7])])
def test_expert_wins_every_trajectory(env: str, seeds: list[int]) -> None:
    batch = play(env, NoisyExpert(env, noise=0.0, seed=0), seeds, 2, 30)
    assert len(batch.trajectories) == 2 * len(seeds)
    assert all(record.won and record.error is None for record in batch.trajectories)
    assert all(record.episode_return == 10.0 for record in batch.trajectories)
    assert bool(batch.valid.all()) and bool(batch.won.all())
    assert torch.equal(batch.reward, batch.env_reward)


def test_random_agent_mostly_fails() -> None:
    batch = play("household", RecordingRandomActor(seed=0), [1, 2, 3, 4], 2, 15)
    wins = sum(record.won for record in batch.trajectories)
    assert wins <= 2
    assert all(record.length == 15 for record in batch.trajectories if not record.won)


@pytest.mark.parametrize("env", ["household", "webshop"])
def test_ids_rewards_and_outcomes_match_a_naive_recount(env: str) -> None:
    group_size, seeds = 3, [5, 6]
    actor = RecordingRandomActor(seed=1)
    batch = play(env, actor, seeds, group_size, 6, invalid_penalty=PENALTY)
    n = len(batch)
    assert n == len(actor.seen) == sum(record.length for record in batch.trajectories)
    for name in ("group_id", "traj_id", "turn", "reward", "valid", "won", "anchor_id"):
        assert getattr(batch, name).shape == (n,), name
    rows_of: dict[int, list[int]] = {}
    for row in range(n):
        rows_of.setdefault(int(batch.traj_id[row]), []).append(row)
    for record in batch.trajectories:
        rows = rows_of[record.traj_id]
        assert rows == list(range(rows[0], rows[0] + record.length))  # contiguous
        assert [int(batch.turn[r]) for r in rows] == list(range(record.length))
        assert record.group_id == record.traj_id // group_size
        assert record.seed == seeds[record.group_id]
        assert all(int(batch.group_id[r]) == record.group_id for r in rows)
        total = sum(float(batch.env_reward[r]) for r in rows)
        assert record.episode_return == pytest.approx(total)
        assert all(float(batch.episode_return[r]) == pytest.approx(total) for r in rows)
        assert all(bool(batch.won[r]) == record.won for r in rows)
        assert record.invalid_turns == sum(not bool(batch.valid[r]) for r in rows)
        assert record.length == 6 or record.won or record.error is not None
    for row in range(n):
        parsed = parse_response(batch.response_texts[row])
        if not parsed.well_formed:
            assert not bool(batch.valid[row])
        expected = float(batch.env_reward[row]) - (0.0 if bool(batch.valid[row]) else PENALTY)
        assert float(batch.reward[row]) == pytest.approx(expected)
        expected_score = float(batch.episode_return[row]) - (0 if batch.valid[row] else PENALTY)
        assert float(batch.scores()[row]) == pytest.approx(expected_score)
    assert not bool(batch.valid.all())  # the malformed fifths
    # same seed => same task: every first prompt of a group is the same text
    for g in range(len(seeds)):
        members = range(g * group_size, (g + 1) * group_size)
        assert len({batch.prompt_texts[rows_of[t][0]] for t in members}) == 1
    # anchors: equal ids exactly for equal (group, observation the turn acted from)
    keys = [
        (int(batch.group_id[r]), actor.seen[int(batch.traj_id[r]), int(batch.turn[r])].observation)
        for r in range(n)
    ]
    for a in range(n):
        for b in range(n):
            assert (batch.anchor_id[a] == batch.anchor_id[b]) == (keys[a] == keys[b])


def test_pad_turns_hand_case() -> None:
    ids, attention, response = pad_turns([[5, 6], [7]], [[8], [9, 10, 11]], pad_id=0)
    assert ids.tolist() == [[5, 6, 8, 0, 0], [0, 7, 9, 10, 11]]
    assert attention.tolist() == [[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]]
    assert response.tolist() == [[0, 0, 1, 0, 0], [0, 0, 1, 1, 1]]


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
    crashed = batch.trajectories[1]
    assert crashed.error is not None and "engine crashed" in crashed.error
    assert crashed.length == 2 and not crashed.won and crashed.invalid_turns == 0
    for record in (batch.trajectories[0], *batch.trajectories[2:]):
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


def model_rollout(tiny: tuple[Any, Any], seed: int, max_prompt_tokens: int = 96) -> TurnBatch:
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
    for row in range(len(batch)):
        full = tokenizer(batch.prompt_texts[row])["input_ids"]
        assert len(full) > 96  # left truncation happened and kept the end
        assert batch.prompt_ids[row] == full[-96:]
        response = batch.response_ids[row]
        assert 1 <= len(response) <= 12
        assert response[-1] in stops or len(response) == 12
        assert tokenizer.decode(response, skip_special_tokens=True) == batch.response_texts[row]
    input_ids, attention, response_mask = batch.to_padded(tokenizer.pad_token_id)
    P = max(len(p) for p in batch.prompt_ids)
    R = max(len(r) for r in batch.response_ids)
    assert input_ids.shape == attention.shape == response_mask.shape == (len(batch), P + R)
    for row in range(len(batch)):
        prompt, response = batch.prompt_ids[row], batch.response_ids[row]
        assert input_ids[row, P - len(prompt) : P].tolist() == prompt
        assert input_ids[row, P : P + len(response)].tolist() == response
        assert attention[row].tolist() == [0] * (P - len(prompt)) + [1] * (
            len(prompt) + len(response)
        ) + [0] * (R - len(response))
        assert response_mask[row].tolist() == [0] * P + [1] * len(response) + [0] * (
            R - len(response)
        )


def test_same_seed_same_batch(tiny: tuple[Any, Any]) -> None:
    first, second, other = (model_rollout(tiny, seed) for seed in (3, 3, 4))
    assert first.response_ids == second.response_ids and first.prompt_ids == second.prompt_ids
    for name in ("reward", "valid", "anchor_id", "traj_id", "turn", "won"):
        assert torch.equal(getattr(first, name), getattr(second, name)), name
    assert first.response_ids != other.response_ids
