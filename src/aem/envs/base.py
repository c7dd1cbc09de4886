"""The text-environment protocol: Gymnasium's shape with strings for observations and actions."""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aem.checks import require_finite_number, require_int_at_least

StepResult = tuple[str, float, bool, bool, dict[str, Any]]
"""``(observation, reward, terminated, truncated, info)`` as returned by :meth:`TextEnv.step`."""


class TextEnv(ABC):
    """A multi-turn text environment.

    ``reset`` returns ``(observation, info)``; ``step`` returns
    ``(observation, reward, terminated, truncated, info)``. Every ``info`` carries:

    - ``"admissible_commands"``: list of str the engine accepts now (empty if it cannot list them),
    - ``"won"``: bool, the episode's goal is reached,
    - ``"task_type"``: str, the task family (e.g. ``"pick"``, ``"heat"``),
    - ``"task"``: str, the goal text shown to the agent.

    An action the engine cannot carry out gives the engine's own message, reward 0 and
    ``info["valid"] = False``; the agent layer adds the invalid-action penalty.
    """

    @abstractmethod
    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start an episode; ``seed`` selects the task reproducibly."""

    @abstractmethod
    def step(self, action: str) -> StepResult:
        """Carry out one text action."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (processes, temporary folders)."""


_SURROGATES = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes of file names, ``surrogateescape``)
    replaced by U+FFFD, so that it encodes as UTF-8 (tokenizers refuse it otherwise)."""
    return _SURROGATES.sub("\ufffd", text)


class AgentView(Protocol):
    """What an agent knows on one turn of an episode (:class:`aem.rollout.TurnContext` is one):
    the task, the current observation and info, the earlier ``(observation, action)`` pairs, and
    the turn number from 0."""

    @property
    def task(self) -> str: ...
    @property
    def observation(self) -> str: ...
    @property
    def info(self) -> dict[str, Any]: ...
    @property
    def history(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def turn(self) -> int: ...


TASK_OPTION_KEYS = frozenset({"task_index", "task_type"})
"""The ``reset`` options every task-list environment accepts."""


def check_episode_limits(max_steps: object, success_reward: object) -> None:
    """The constructor arguments every environment shares: ``max_steps`` an int >= 1 and
    ``success_reward`` a finite number."""
    require_int_at_least("max_steps", max_steps, 1)
    require_finite_number("success_reward", success_reward)


def check_task_index(index: object, num_tasks: int) -> None:
    """Require an int in ``[0, num_tasks)``; the error names ``task_index`` and the value."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < num_tasks:
        raise ValueError(f"task_index must be an int in [0, {num_tasks}), got {index!r}")


def choose_task_index(
    options: dict[str, Any],
    num_tasks: int,
    task_types: Sequence[str],
    type_of: Callable[[int], str],
    rng: random.Random,
    candidates_of: Callable[[str], Sequence[int]] | None = None,
) -> int:
    """The task a ``reset`` plays: ``options["task_index"]`` if given (checked against
    ``options["task_type"]``), else a uniform draw from ``rng`` over all tasks or over those of
    ``task_type``. Tasks cycle through ``task_types`` (task k has type ``task_types[k % n]``)
    unless ``candidates_of(task_type)`` lists them."""
    unknown = set(options) - TASK_OPTION_KEYS
    if unknown:
        raise ValueError(
            f"options keys must be among {sorted(TASK_OPTION_KEYS)}, got {sorted(unknown)}"
        )
    task_type = options.get("task_type")
    if task_type is not None and task_type not in task_types:
        raise ValueError(f"task_type must be one of {tuple(task_types)}, got {task_type!r}")
    if "task_index" in options:
        index = options["task_index"]
        check_task_index(index, num_tasks)
        if task_type is not None and type_of(index) != task_type:
            raise ValueError(
                f"task_index {index} has type {type_of(index)!r}, not task_type {task_type!r}"
            )
        return index
    if task_type is None:
        return rng.randrange(num_tasks)
    if candidates_of is None:
        candidates: Sequence[int] = range(task_types.index(task_type), num_tasks, len(task_types))
    else:
        candidates = candidates_of(task_type)
    if len(candidates) == 0:
        raise ValueError(f"no {task_type!r} task among num_tasks={num_tasks}")
    return candidates[rng.randrange(len(candidates))]
