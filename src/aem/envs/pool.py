"""Step N text environments as one batch, in this process or in worker processes.

An environment that raises or returns a malformed result (or a worker process that dies) never
stops the run: the error is logged, the environment is rebuilt from its registry name, and that
episode ends as failed (``truncated=True``, ``info["won"] = False``, ``info["error"]`` holds the
message). Every observation, task text and admissible command handed on is valid text
(:func:`aem.envs.base.valid_text`), so no environment's output can break a tokenizer.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing as mp
import traceback
from collections.abc import Callable, Sequence
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from aem.envs.base import StepResult, TextEnv, valid_text
from aem.envs.registry import make

logger = logging.getLogger(__name__)

ResetResult = tuple[str, dict[str, Any]]
EnvFactory = Callable[..., TextEnv]


def failed_step(error: str) -> StepResult:
    """The result that ends an episode whose environment raised."""
    info = {"won": False, "valid": False, "admissible_commands": [], "error": error}
    return "", 0.0, False, True, info


def checked_step(result: Any) -> StepResult:
    """``result`` as a well-formed step result with valid text; ``ValueError`` if it is not one
    (not 5 items, observation not a str, info not a dict, reward not a finite number)."""
    if not isinstance(result, tuple) or len(result) != 5:
        raise ValueError(f"step must return 5 items, got {type(result).__name__}")
    observation, reward, terminated, truncated, info = result
    _check_text_and_info(observation, info)
    if (
        isinstance(reward, bool)
        or not isinstance(reward, (int, float))
        or not math.isfinite(reward)
    ):
        raise ValueError(f"step reward must be a finite number, got {reward!r}")
    return valid_text(observation), float(reward), bool(terminated), bool(truncated), _valid(info)


def checked_reset(result: Any) -> ResetResult:
    """``result`` as a well-formed ``(observation, info)`` with valid text; ``ValueError`` else."""
    if not isinstance(result, tuple) or len(result) != 2:
        raise ValueError(f"reset must return (observation, info), got {type(result).__name__}")
    observation, info = result
    _check_text_and_info(observation, info)
    return valid_text(observation), _valid(info)


def _check_text_and_info(observation: Any, info: Any) -> None:
    if not isinstance(observation, str):
        raise ValueError(f"observation must be a str, got {type(observation).__name__}")
    if not isinstance(info, dict):
        raise ValueError(f"info must be a dict, got {type(info).__name__}")


def _valid(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with its prompt texts (task, admissible commands) made valid text."""
    info = dict(info)
    if isinstance(info.get("task"), str):
        info["task"] = valid_text(info["task"])
    commands = info.get("admissible_commands")
    if isinstance(commands, (list, tuple)):
        info["admissible_commands"] = [valid_text(str(command)) for command in commands]
    return info


class _Slot:
    """One environment with its recipe, rebuilt after an error."""

    def __init__(self, factory: EnvFactory, kwargs: dict[str, Any]) -> None:
        self.factory, self.kwargs = factory, kwargs
        self.env: TextEnv = factory(**kwargs)

    def rebuild(self) -> None:
        with contextlib.suppress(Exception):  # a broken env may fail to close too
            self.env.close()
        self.env = self.factory(**self.kwargs)

    def reset(self, seed: int | None, options: dict[str, Any] | None) -> ResetResult | str:
        try:
            return checked_reset(self.env.reset(seed=seed, options=options))
        except Exception:  # any engine error is contained
            error = traceback.format_exc()
            self.rebuild()
            return error

    def step(self, action: str) -> StepResult:
        try:
            return checked_step(self.env.step(action))
        except Exception:  # any engine error is contained
            error = traceback.format_exc()
            self.rebuild()
            return failed_step(error)


def _worker(conn: Connection, factory: EnvFactory, kwargs_list: list[dict[str, Any]]) -> None:
    """Worker loop: host some slots and answer ``(command, payload)`` messages."""
    slots = [_Slot(factory, kwargs) for kwargs in kwargs_list]
    while True:
        command, payload = conn.recv()
        if command == "reset":
            conn.send([slots[i].reset(seed, opts) for i, seed, opts in payload])
        elif command == "step":
            conn.send([slots[i].step(action) for i, action in payload])
        elif command == "close":
            for slot in slots:
                slot.env.close()
            conn.send(None)
            return


class EnvPool:
    """``num_envs`` environments of one kind, reset and stepped as a batch.

    Args:
        env: registry name (``aem.envs.names()``) or a picklable factory returning a TextEnv.
        num_envs: batch size N.
        env_kwargs: keyword arguments for every environment (e.g. ``split="train"``).
        workers: 0 runs the environments in this process; k > 0 spreads them over k processes.

    ``reset(seeds, options)`` returns N ``(obs, info)``; ``step(actions)`` takes N actions, with
    ``None`` for an environment whose episode is over (it is not stepped and gets ``None`` back).
    """

    def __init__(
        self,
        env: str | EnvFactory,
        num_envs: int,
        env_kwargs: dict[str, Any] | None = None,
        workers: int = 0,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs!r}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers!r}")
        self.name = env if isinstance(env, str) else getattr(env, "__name__", repr(env))
        self.factory: EnvFactory = partial(make, env) if isinstance(env, str) else env
        self.num_envs = num_envs
        self.env_kwargs = dict(env_kwargs or {})
        self.workers = min(workers, num_envs)
        self.errors: list[str] = []
        if self.workers == 0:
            self._slots = [_Slot(self.factory, self.env_kwargs) for _ in range(num_envs)]
            return
        self._owner = [i % self.workers for i in range(num_envs)]
        self._local = [i // self.workers for i in range(num_envs)]
        self._context = mp.get_context("spawn")
        self._procs: list[Any] = [None] * self.workers
        self._conns: list[Connection | None] = [None] * self.workers
        for w in range(self.workers):
            self._start_worker(w)

    # ------------------------------------------------------------------ workers

    def _start_worker(self, w: int) -> None:
        parent, child = self._context.Pipe()
        count = sum(1 for owner in self._owner if owner == w)
        proc = self._context.Process(
            target=_worker, args=(child, self.factory, [self.env_kwargs] * count), daemon=True
        )
        proc.start()
        child.close()
        self._procs[w], self._conns[w] = proc, parent

    def _ask(self, command: str, items: dict[int, Any]) -> dict[int, Any]:
        """Send each worker its share of ``items`` (env index -> payload); gather the answers.

        A worker that died is restarted and its environments' answers are ``None``.
        """
        by_worker: dict[int, list[int]] = {}
        for i in items:
            by_worker.setdefault(self._owner[i], []).append(i)
        for w, envs in by_worker.items():
            message = [(self._local[i], *_as_tuple(items[i])) for i in envs]
            with contextlib.suppress(BrokenPipeError, OSError):  # a dead worker shows on recv
                self._conns[w].send((command, message))
        answers: dict[int, Any] = {}
        for w, envs in by_worker.items():
            try:
                replies = self._conns[w].recv()
            except (EOFError, OSError, BrokenPipeError):
                self._record(f"worker {w} died (exit code {self._procs[w].exitcode}); restarted")
                self._procs[w].join(timeout=1)
                self._start_worker(w)
                replies = [None] * len(envs)
            answers.update(zip(envs, replies, strict=True))
        return answers

    def _record(self, error: str) -> None:
        logger.error("environment %s: %s", self.name, error)
        self.errors.append(error)

    # ------------------------------------------------------------------ batch API

    def reset(
        self,
        seeds: Sequence[int | None],
        options: Sequence[dict[str, Any] | None] | None = None,
    ) -> list[ResetResult]:
        """Reset every environment. One that raises is rebuilt and reset once more; a second
        failure raises ``RuntimeError`` (a task that cannot even start is a bug, not noise)."""
        if len(seeds) != self.num_envs:
            raise ValueError(f"seeds must have {self.num_envs} entries, got {len(seeds)}")
        options = list(options) if options is not None else [None] * self.num_envs
        if len(options) != self.num_envs:
            raise ValueError(f"options must have {self.num_envs} entries, got {len(options)}")
        results = self._reset_some({i: (seeds[i], options[i]) for i in range(self.num_envs)})
        retry = {i: (seeds[i], options[i]) for i, r in results.items() if not isinstance(r, tuple)}
        for i in retry:
            self._record(f"env {i} raised on reset: {results[i]}")
        if retry:
            again = self._reset_some(retry)
            for i, result in again.items():
                if not isinstance(result, tuple):
                    raise RuntimeError(f"env {i} failed to reset twice (seed {seeds[i]}): {result}")
                results[i] = result
        return [results[i] for i in range(self.num_envs)]

    def _reset_some(self, items: dict[int, tuple[Any, Any]]) -> dict[int, Any]:
        if self.workers == 0:
            return {i: self._slots[i].reset(*items[i]) for i in items}
        answers = self._ask("reset", items)
        return {i: "worker died" if a is None else a for i, a in answers.items()}

    def step(self, actions: Sequence[str | None]) -> list[StepResult | None]:
        """Step every environment whose action is not ``None``."""
        if len(actions) != self.num_envs:
            raise ValueError(f"actions must have {self.num_envs} entries, got {len(actions)}")
        items = {i: action for i, action in enumerate(actions) if action is not None}
        if self.workers == 0:
            answers = {i: self._slots[i].step(action) for i, action in items.items()}
        else:
            answers = {
                i: failed_step("worker process died") if a is None else a
                for i, a in self._ask("step", items).items()
            }
        for i, result in answers.items():
            if "error" in result[4]:
                self._record(f"env {i} raised on step: {result[4]['error']}")
        return [answers.get(i) for i in range(self.num_envs)]

    def close(self) -> None:
        """Close every environment and stop the workers."""
        if self.workers == 0:
            for slot in self._slots:
                slot.env.close()
            return
        for w in range(self.workers):
            try:
                self._conns[w].send(("close", None))
                self._conns[w].recv()
            except (EOFError, OSError, BrokenPipeError):
                pass
            self._procs[w].join(timeout=5)
            if self._procs[w].is_alive():
                self._procs[w].kill()

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_tuple(payload: Any) -> tuple[Any, ...]:
    return payload if isinstance(payload, tuple) else (payload,)
