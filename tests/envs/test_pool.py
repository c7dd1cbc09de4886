"""EnvPool: batched reset/step in-process and in workers; errors end the episode, not the run."""

from __future__ import annotations

import os
from typing import Any

import pytest

from aem.envs import TextEnv
from aem.envs.pool import EnvPool


class CounterEnv(TextEnv):
    """Counts steps; raises on the step number ``fail_at``; kills its process on ``die``."""

    def __init__(self, fail_at: int = -1) -> None:
        self.fail_at = fail_at
        self.count = 0
        self.seed: int | None = None

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None):
        if options and options.get("raise"):
            raise RuntimeError("cannot reset")
        self.count, self.seed = 0, seed
        return f"start {seed}", {"admissible_commands": ["tick"], "won": False}

    def step(self, action: str):
        if action == "die":
            os._exit(3)
        self.count += 1
        if self.count == self.fail_at:
            raise ValueError(f"engine broke at step {self.count}")
        done = self.count >= 3
        info = {"admissible_commands": ["tick"], "won": done, "valid": action == "tick"}
        return f"{action} {self.seed} {self.count}", float(done), done, False, info


def flaky(**kwargs: Any) -> CounterEnv:
    return CounterEnv(fail_at=2)


@pytest.mark.parametrize("workers", [0, 2])
def test_batch_reset_and_step(workers):
    with EnvPool(CounterEnv, 3, workers=workers) as pool:
        starts = pool.reset([10, 11, 12])
        assert [obs for obs, _ in starts] == ["start 10", "start 11", "start 12"]
        results = pool.step(["tick", None, "tick"])
        assert results[1] is None
        assert results[0][0] == "tick 10 1" and results[2][0] == "tick 12 1"
        for _ in range(2):
            results = pool.step(["tick", "tick", "tick"])
        assert results[0][2] and results[0][4]["won"] and not results[1][2]


@pytest.mark.parametrize("workers", [0, 2])
def test_raising_env_fails_its_episode_and_is_rebuilt(workers):
    with EnvPool(flaky, 2, workers=workers) as pool:
        pool.reset([0, 1])
        pool.step(["tick", "tick"])
        obs, reward, terminated, truncated, info = pool.step(["tick", None])[0]
        assert (obs, reward, terminated, truncated, info["won"]) == ("", 0.0, False, True, False)
        assert "engine broke at step 2" in info["error"]
        assert len(pool.errors) == 1
        # the rebuilt environment plays a fresh episode
        assert pool.reset([5, 6])[0][0] == "start 5"
        assert pool.step(["tick", None])[0][0] == "tick 5 1"


def test_dead_worker_is_restarted():
    with EnvPool(CounterEnv, 4, workers=2) as pool:
        pool.reset([0, 1, 2, 3])
        results = pool.step(["die", "tick", "tick", "tick"])
        # env 0 and env 2 share worker 0: both episodes end as failed
        for i in (0, 2):
            assert results[i][3] and results[i][4]["error"] == "worker process died"
        assert results[1][0] == "tick 1 1" and results[3][0] == "tick 3 1"
        assert any("worker 0 died" in error for error in pool.errors)
        assert [obs for obs, _ in pool.reset([7, 8, 9, 10])] == [f"start {s}" for s in range(7, 11)]


def test_reset_failure_retries_once_then_raises():
    with (
        EnvPool(CounterEnv, 2) as pool,
        pytest.raises(RuntimeError, match="failed to reset twice"),
    ):
        pool.reset([0, 1], options=[None, {"raise": True}])


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_envs"):
        EnvPool(CounterEnv, 0)
    with pytest.raises(ValueError, match="workers"):
        EnvPool(CounterEnv, 1, workers=-1)
    pool = EnvPool(CounterEnv, 2)
    with pytest.raises(ValueError, match="seeds"):
        pool.reset([1])
    with pytest.raises(ValueError, match="actions"):
        pool.step(["tick"])


class UndecodableEnv(CounterEnv):
    """Observations, task and commands with lone surrogates (file names read with
    ``surrogateescape``); on ``action == "bad"`` a malformed result of kind ``self.bad``."""

    bad = "none-observation"

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None):
        self.count = 0
        return "files: made_\udcff.py", self._info()

    def step(self, action: str):
        self.count += 1
        if action == "bad":
            return {
                "none-observation": (None, 0.0, False, False, self._info()),
                "nan-reward": ("x", float("nan"), False, False, self._info()),
                "four-items": ("x", 0.0, False, {}),
            }[self.bad]
        return f"view made_\udcff.py {self.count}", 0.0, self.count >= 3, False, self._info()

    def _info(self) -> dict[str, Any]:
        return {"admissible_commands": ["tick \ud800"], "won": False, "task": "fix \udcfe"}


def no_surrogates(*texts: str) -> bool:
    """True, or ``UnicodeEncodeError`` on a lone surrogate in ``texts``."""
    "".join(texts).encode("utf-8")
    return True


@pytest.mark.parametrize("workers", [0, 1])
def test_observations_task_and_commands_are_valid_text(workers):
    with EnvPool(UndecodableEnv, 2, workers=workers) as pool:
        (obs, info), _ = pool.reset([0, 1])
        assert obs == "files: made_\ufffd.py" and info["task"] == "fix \ufffd"
        assert info["admissible_commands"] == ["tick \ufffd"]
        obs, *_ = pool.step(["tick", "tick"])[0]
        assert no_surrogates(obs) and "\ufffd" in obs and not pool.errors


@pytest.mark.parametrize("kind", ["none-observation", "nan-reward", "four-items"])
def test_a_malformed_step_result_fails_only_its_episode(kind, monkeypatch):
    monkeypatch.setattr(UndecodableEnv, "bad", kind)
    with EnvPool(UndecodableEnv, 2) as pool:
        pool.reset([0, 1])
        failed, fine = pool.step(["bad", "tick"])
        assert failed[3] and failed[4]["error"] and not failed[4]["won"]
        assert fine[0].startswith("view") and len(pool.errors) == 1


def test_a_rollout_with_a_tokenizer_survives_undecodable_observations():
    from aem.agent import PromptConfig
    from aem.policy import build_tokenizer
    from aem.rollout import FunctionResponder, rollout
    from aem.trainer.warmstart import corpus_texts, format_response

    prompt = PromptConfig(style="compact", history_length=2)
    tokenizer = build_tokenizer(corpus_texts("household", 4, seed=0, prompt=prompt), 400)
    with pytest.raises(TypeError):  # what killed a training run before the pool cleaned texts
        tokenizer("made_\udcff.py")
    responder = FunctionResponder(
        lambda prompts, contexts: [format_response("tick")] * len(prompts), tokenizer, 200
    )
    with EnvPool(UndecodableEnv, 2) as pool:
        batch = rollout(responder, pool, "counter", [0], 2, 4, prompt)
    assert len(batch) == 6 and all(record.error is None for record in batch.trajectories())
    texts = batch["prompt_text"]
    assert no_surrogates(*texts) and "\ufffd" in texts[1]
