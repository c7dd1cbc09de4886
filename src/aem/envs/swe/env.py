"""``SweEnv``: repository repair with R2E/DeepSWE-style tools as a ``TextEnv``."""

from __future__ import annotations

import random
from typing import Any

from aem.checks import require_int_at_least
from aem.envs.base import (
    StepResult,
    TextEnv,
    check_episode_limits,
    check_task_index,
    choose_task_index,
    valid_text,
)
from aem.envs.swe import bwrap, tools
from aem.envs.swe.bugs import BUG_KINDS
from aem.envs.swe.repos import SPLIT_SIZES, SPLITS, Task, bug_kind_of, build_task
from aem.envs.swe.sandbox import ISOLATIONS, Limits, Sandbox, TestReport


class SweEnv(TextEnv):
    """Fix the injected bug of a generated Python package, judged by hidden tests.

    Actions follow the grammar of :mod:`aem.envs.swe.tools` (``view``, ``search``, ``edit``,
    ``run_tests``, ``submit``); observations are the tool outputs, cut to
    ``max_observation_chars`` with a note. ``submit`` (or reaching ``max_steps``, which
    submits the repository as it is) runs the hidden tests: the reward is ``success_reward`` if
    all of them pass, else 0 (the paper's binary SWE reward). That final step's ``info`` adds
    ``tests_passed`` and ``tests_failed`` (hidden tests that did not pass, including those a
    crashed or timed-out run never finished). ``reset(seed)`` draws a task like
    :class:`~aem.envs.household.env.HouseholdEnv`; ``options`` may hold ``task_index`` or
    ``task_type`` (a bug kind). Each episode lives in its own :class:`Sandbox`: test runs are
    isolated by bubblewrap (``isolation="bwrap"``, the default; construction raises
    :class:`~aem.envs.swe.bwrap.SandboxUnavailableError` where it cannot work) or, only if
    asked for, by the weaker ``isolation="unsafe"`` (docs/security.md). Observations are always
    valid text; a tool that fails answers with an error message (``info["valid"] = False``).
    """

    def __init__(
        self,
        split: str = "train",
        *,
        max_steps: int = 30,
        success_reward: float = 1.0,
        num_tasks: int | None = None,
        max_observation_chars: int = 4000,
        limits: Limits | dict | None = None,
        isolation: str = "bwrap",
        landlock: bool = True,
        guard: bool = True,
        seed: int | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        check_episode_limits(max_steps, success_reward)
        require_int_at_least("max_observation_chars", max_observation_chars, 200)
        num_tasks = SPLIT_SIZES[split] if num_tasks is None else num_tasks
        require_int_at_least("num_tasks", num_tasks, 1)
        if isinstance(limits, dict):  # from a YAML config
            limits = Limits(**limits)
        if limits is not None and not isinstance(limits, Limits):
            raise ValueError(f"limits must be a Limits or a dict, got {type(limits).__name__}")
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
        if isolation == "bwrap":
            bwrap.jail()  # refuse to start where the sandbox cannot work
        self.split = split
        self.max_steps = max_steps
        self.success_reward = float(success_reward)
        self.num_tasks = num_tasks
        self.max_observation_chars = max_observation_chars
        self.limits = limits or Limits()
        self.isolation, self.landlock, self.guard = isolation, landlock, guard
        self._rng = random.Random(seed)
        self._task: Task | None = None
        self._sandbox: Sandbox | None = None
        self._steps = 0
        self._done = True
        self.last_verdict: TestReport | None = None

    @property
    def task(self) -> Task:
        """The running episode's task (holds the hidden tests and fix: for experts and tests)."""
        if self._task is None:
            raise RuntimeError("call reset() before using the environment")
        return self._task

    @property
    def sandbox(self) -> Sandbox:
        """The running episode's sandbox."""
        if self._sandbox is None:
            raise RuntimeError("call reset() before using the environment")
        return self._sandbox

    @property
    def steps_taken(self) -> int:
        """Steps taken in the current episode."""
        return self._steps

    def task_at(self, index: int) -> Task:
        """Task ``index`` of this env's split (without starting it)."""
        self._check_index(index)
        return build_task(self.split, index)

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        if seed is not None:
            self._rng = random.Random(seed)
        index = self._choose_index(options or {})
        self.close()
        self._task = build_task(self.split, index)
        self._sandbox = Sandbox(
            self._task.files,
            limits=self.limits,
            isolation=self.isolation,
            landlock=self.landlock,
            guard=self.guard,
        )
        self._steps = 0
        self._done = False
        self.last_verdict = None
        return self._intro(), self._info(valid=True, won=False)

    def step(self, action: str) -> StepResult:
        if not isinstance(action, str):
            raise ValueError(f"action must be a str, got {type(action).__name__}")
        if self._done:
            raise RuntimeError("episode is over (or not started): call reset()")
        self._steps += 1
        submitted, valid = False, True
        try:
            call = tools.parse_action(action)
            submitted = call.name == "submit"
            observation = "" if submitted else self._execute(call)
        except tools.ToolError as error:
            observation, valid = str(error), False
        truncated = not submitted and self._steps >= self.max_steps
        if not (submitted or truncated):
            return self._cut(observation), 0.0, False, False, self._info(valid=valid, won=False)
        self._done = True
        verdict = self.sandbox.run_hidden(self.task.hidden_cases)
        self.last_verdict = verdict
        total = self.task.hidden_test_count
        won = verdict.all_passed and verdict.ran == total and verdict.passed == total
        outcome = "all hidden tests passed" if won else "the hidden tests did not all pass"
        if submitted:
            observation = f"Submitted: {outcome}."
        else:
            observation = (
                self._cut(observation) + f"\n\nStep limit reached: repository submitted; {outcome}."
            )
        info = self._info(valid=valid, won=won)
        info["tests_passed"] = verdict.passed
        info["tests_failed"] = total - verdict.passed
        return observation, self.success_reward if won else 0.0, submitted, truncated, info

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    def _execute(self, call: tools.ToolCall) -> str:
        try:
            return self._use_tool(call)
        except (OSError, RecursionError, UnicodeError) as error:  # never raised out of step
            raise tools.ToolError(tools.failure_message(call, error)) from None

    def _use_tool(self, call: tools.ToolCall) -> str:
        root = self.sandbox.repo
        if call.name == "view":
            return tools.view(root, call.path, call.start, call.end)
        if call.name == "search":
            return tools.search(root, call.text)
        if call.name == "edit":
            return tools.edit(root, call.path, call.old, call.new)
        target = tools.resolve(root, call.path)
        if not target.exists():
            raise tools.ToolError(f"Error: {call.path} does not exist.")
        report = self.sandbox.run_tests(target)
        return report.summary() + "\n" + report.output

    def _cut(self, text: str) -> str:
        """``text`` as valid text (undecodable file names show as U+FFFD), cut to the limit."""
        text = valid_text(text)
        limit = self.max_observation_chars
        if len(text) <= limit:
            return text
        hidden = len(text) - limit
        return (
            text[:limit] + f"\n[... output truncated: {hidden} more characters not shown; "
            "view a line range or narrow the search ...]"
        )

    def _intro(self) -> str:
        files = "\n".join(f"  {name}" for name in self.task.files)
        return (
            f"Issue:\n{self.task.issue}\nRepository files:\n{files}\n"
            "Edit the repository so that the issue is fixed, then submit. The visible tests "
            "are in tests/ (run_tests); hidden tests decide success."
        )

    def _info(self, *, valid: bool, won: bool) -> dict[str, Any]:
        return {
            "admissible_commands": list(tools.TOOL_TEMPLATES),
            "won": won,
            "task_type": self.task.bug_kind,
            "task": self.task.issue,
            "valid": valid,
            "task_index": self.task.index,
            "split": self.split,
        }

    def _check_index(self, index: object) -> None:
        check_task_index(index, self.num_tasks)

    def _choose_index(self, options: dict[str, Any]) -> int:
        return choose_task_index(options, self.num_tasks, BUG_KINDS, bug_kind_of, self._rng)
