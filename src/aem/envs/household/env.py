"""``HouseholdEnv``: the ALFWorld-faithful household as a :class:`~aem.envs.base.TextEnv`."""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Any

from aem.checks import require_int_at_least
from aem.envs.base import (
    StepResult,
    TextEnv,
    check_episode_limits,
    check_task_index,
    choose_task_index,
)
from aem.envs.household.engine import NOTHING_HAPPENS, Engine
from aem.envs.household.goals import TASK_TYPES
from aem.envs.household.scene import SceneConfig
from aem.envs.household.tasks import SPLIT_SIZES, SPLITS, Task, build_task, task_type_of

_ENGINE_CACHE_SIZE = 128


class HouseholdEnv(TextEnv):
    """ALFWorld's six household task types, generated procedurally (pure Python, no data files).

    ``reset(seed)`` picks task ``rng.randrange(num_tasks)`` of the split with ``rng`` seeded by
    ``seed`` (or continues the env's own generator when ``seed`` is None);
    ``options={"task_type": "heat"}`` restricts the draw to one type and
    ``options={"task_index": k}`` picks task ``k``. Reward is ``success_reward`` on the step the
    goal becomes true (``terminated``), else 0; after ``max_steps`` steps ``truncated`` is True.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        max_steps: int = 50,
        success_reward: float = 10.0,
        num_tasks: int | None = None,
        scene_config: SceneConfig | dict | None = None,
        seed: int | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        check_episode_limits(max_steps, success_reward)
        if num_tasks is None:
            num_tasks = SPLIT_SIZES[split]
        require_int_at_least("num_tasks", num_tasks, 1)
        if isinstance(scene_config, dict):  # from a YAML config: lists become tuples
            scene_config = SceneConfig(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in scene_config.items()}
            )
        if scene_config is not None and not isinstance(scene_config, SceneConfig):
            raise ValueError(
                f"scene_config must be a SceneConfig or a dict of its fields, "
                f"got {type(scene_config).__name__}"
            )
        self.split = split
        self.max_steps = max_steps
        self.success_reward = float(success_reward)
        self.num_tasks = num_tasks
        self.scene_config = scene_config or SceneConfig()
        self._rng = random.Random(seed)
        self._engines: OrderedDict[int, Engine] = OrderedDict()
        self._engine: Engine | None = None
        self._task_index = -1
        self._steps = 0
        self._done = True

    @property
    def engine(self) -> Engine:
        """The running episode's engine (hidden state; for experts and tests)."""
        if self._engine is None:
            raise RuntimeError("call reset() before using the environment")
        return self._engine

    @property
    def task(self) -> Task:
        """The running episode's task."""
        return self.engine.task

    def task_at(self, index: int) -> Task:
        """Task ``index`` of this env's split (without starting it)."""
        self._check_index(index)
        return build_task(self.split, index, self.scene_config)

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        if seed is not None:
            self._rng = random.Random(seed)
        index = self._choose_index(options or {})
        engine = self._engines.pop(index, None)
        if engine is None:
            engine = Engine(build_task(self.split, index, self.scene_config))
            if len(self._engines) >= _ENGINE_CACHE_SIZE:
                self._engines.popitem(last=False)
        else:
            engine.reset()
        self._engines[index] = engine
        self._engine = engine
        self._task_index = index
        self._steps = 0
        self._done = False
        return engine.intro, self._info(valid=True, won=False)

    def step(self, action: str) -> StepResult:
        if not isinstance(action, str):
            raise ValueError(f"action must be a str, got {type(action).__name__}")
        if self._done:
            raise RuntimeError("episode is over (or not started): call reset()")
        engine = self._engine
        assert engine is not None
        feedback = engine.execute(" ".join(action.lower().split()))
        valid = feedback is not None
        won = valid and engine.won()
        self._steps += 1
        truncated = not won and self._steps >= self.max_steps
        self._done = won or truncated
        reward = self.success_reward if won else 0.0
        observation = feedback if feedback is not None else NOTHING_HAPPENS
        return observation, reward, won, truncated, self._info(valid=valid, won=won)

    def _info(self, *, valid: bool, won: bool) -> dict[str, Any]:
        engine = self.engine
        return {
            "admissible_commands": engine.admissible(),
            "won": won,
            "task_type": engine.task_type,
            "task": engine.task_text,
            "valid": valid,
            "task_index": self._task_index,
            "split": self.split,
        }

    def _check_index(self, index: object) -> None:
        check_task_index(index, self.num_tasks)

    def _choose_index(self, options: dict[str, Any]) -> int:
        return choose_task_index(options, self.num_tasks, TASK_TYPES, task_type_of, self._rng)
