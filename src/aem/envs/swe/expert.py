"""Scripted policies: an expert that reads the hidden fix, and a random baseline."""

from __future__ import annotations

import random
from typing import Any

from aem.envs.swe.repos import Task, build_task
from aem.envs.swe.tools import edit_action

_TOKEN_SWAPS = ("<", "<=", ">", ">=", "+", "-", "0", "1", "and", "or", "[0]", "[-1]")


def expert_plan(task: Task, run_tests: bool = True) -> list[str]:
    """The expert's actions: locate the function, read its module, apply the reference fix,
    run the visible tests (if ``run_tests``), submit."""
    fix = task.fix
    plan = [
        f"search def {task.function}(",
        f"view {fix.path}",
        edit_action(fix.path, fix.old, fix.new),
    ]
    return [*plan, "run_tests", "submit"] if run_tests else [*plan, "submit"]


class SweExpert:
    """Expert policy for a :class:`~aem.envs.swe.env.SweEnv`: ``act(obs, info)``."""

    def __init__(self, env: Any, run_tests: bool = True) -> None:
        self.env = env
        self.run_tests = run_tests

    def act(self, observation: str | None = None, info: dict[str, Any] | None = None) -> str:
        """The next step of :func:`expert_plan` for the env's current episode."""
        plan = expert_plan(self.env.task, self.run_tests)
        return plan[min(self.env.steps_taken, len(plan) - 1)]


class RandomAgent:
    """Uniform over the tools with random arguments drawn from the checkout: views, searches,
    single-token edits of random lines, test runs; submits with probability ``submit_rate``."""

    def __init__(self, env: Any, seed: int = 0, submit_rate: float = 0.05) -> None:
        self.env = env
        self.rng = random.Random(seed)
        self.submit_rate = submit_rate

    def act(self, observation: str | None = None, info: dict[str, Any] | None = None) -> str:
        rng = self.rng
        if rng.random() < self.submit_rate:
            return "submit"
        sources = {
            path.relative_to(self.env.sandbox.repo).as_posix(): path.read_text(encoding="utf-8")
            for path in sorted(self.env.sandbox.repo.rglob("*.py"))
            if path.is_file() and not path.is_symlink()
        }
        name = rng.choice([name for name, text in sources.items() if text.strip()])
        line = rng.choice([line for line in sources[name].split("\n") if line.strip()])
        tool = rng.choice(("view", "search", "edit", "run_tests"))
        if tool == "view":
            return f"view {name}"
        if tool == "search":
            return f"search {rng.choice(line.split())}"
        if tool == "run_tests":
            return "run_tests"
        old_token, new_token = rng.sample(_TOKEN_SWAPS, 2)
        return edit_action(name, line, line.replace(old_token, new_token, 1))


def plan_step(view: Any, history_length: int) -> str:
    """The repair plan of the episode's task (from its split and index in ``view.info``), one
    step per turn: the SWE warm-start expert (it acts on what the agent sees)."""
    plan = expert_plan(build_task(view.info["split"], view.info["task_index"]))
    return plan[min(view.turn, len(plan) - 1)]
