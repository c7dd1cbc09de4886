"""Tests of the offline repository-repair environment (``aem.envs.make("swe")``)."""

from __future__ import annotations

import gc
import os
import random
from pathlib import Path

import pytest

import aem.envs
from aem.envs.swe import (
    BUG_KINDS,
    SPLITS,
    TEMPLATES,
    TOOL_TEMPLATES,
    Limits,
    RandomAgent,
    Sandbox,
    SweEnv,
    SweExpert,
    Task,
    ToolError,
    build_task,
    edit_action,
    expert_plan,
    parse_action,
)
from aem.envs.swe.repos import load_function, outcome, same_outcome
from aem.envs.swe.runner import landlock_abi

FAST = Limits(wall_seconds=3.0, cpu_seconds=1, memory_bytes=256 << 20)

# ---- helpers --------------------------------------------------------------------------------


def unittest_source(body: str) -> str:
    """A unittest module whose single test runs ``body`` (indented by the helper)."""
    indented = "\n".join("        " + line for line in body.strip().split("\n"))
    return f"import unittest\n\n\nclass T(unittest.TestCase):\n    def test_x(self):\n{indented}\n"


def prepend_action(task: Task, code: str) -> str:
    """The edit putting ``code`` at the top of the package's ``__init__.py`` (it then runs when
    the hidden verdict imports the package)."""
    path = f"{task.package}/__init__.py"
    first = task.files[path].split("\n", 1)[0]
    return edit_action(path, first, code + "\n" + first)


def play(env: SweEnv, actions: list[str]) -> tuple[float, bool, bool, dict]:
    """Run ``actions`` until the episode ends; the last (reward, terminated, truncated, info)."""
    for action in actions:
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return reward, terminated, truncated, info
    raise AssertionError("the episode did not end")


def reference_hidden_failures(task: Task) -> int:
    """Hidden cases the buggy module fails, found by calling the buggy and the fixed function
    in-process (independent of the sandbox and of the verdict code); checks the fixed one passes
    them all."""
    buggy_source = task.files[task.fix.path]
    fixed_source = buggy_source.replace(task.fix.old, task.fix.new, 1)
    buggy = load_function(buggy_source, task.function)
    fixed = load_function(fixed_source, task.function)
    failures = 0
    for case in task.hidden_cases:
        if case.function == task.function:
            assert same_outcome(outcome(fixed, case.args), case.expected), case
            failures += not same_outcome(outcome(buggy, case.args), case.expected)
    return failures


# ---- the generator --------------------------------------------------------------------------


def test_every_template_site_is_exposed_by_some_case_and_hidden_by_another() -> None:
    for template in TEMPLATES:
        correct = load_function(template.render(), template.name)
        for site in range(len(template.sites)):
            buggy = load_function(template.render(site), template.name)
            for seed in range(3):
                cases = template.cases(random.Random(seed))
                same = [outcome(correct, c) == outcome(buggy, c) for c in cases]
                assert not all(same), (template.name, site, seed)
                assert any(same), (template.name, site, seed)


def test_tasks_are_reproducible_distinct_and_balanced() -> None:
    assert build_task("train", 17) is build_task("train", 17)  # cached
    build_task.cache_clear()
    first = build_task("train", 17).fingerprint
    build_task.cache_clear()
    assert build_task("train", 17).fingerprint == first
    fingerprints = {
        split: {build_task(split, k).fingerprint for k in range(200)} for split in SPLITS
    }
    assert all(len(v) == 200 for v in fingerprints.values())
    assert not fingerprints["train"] & fingerprints["test"]
    assert not fingerprints["train"] & fingerprints["valid"]
    for k in range(40):
        assert build_task("valid", k).bug_kind == BUG_KINDS[k % len(BUG_KINDS)]


def test_issue_texts_describe_the_symptom_not_the_fix() -> None:
    for k in range(200):
        task = build_task("test", k)
        assert task.function in task.issue
        assert task.fix.new.strip() not in task.issue
        assert task.files[task.fix.path].count(task.fix.old) == 1


# ---- expert, hidden verdict, random agent ---------------------------------------------------


def test_expert_wins_100_tasks_and_hidden_tests_fail_before_the_fix() -> None:
    env = SweEnv("train", max_steps=10)
    quick, thorough = SweExpert(env, run_tests=False), SweExpert(env)
    tasks = [("train", k) for k in range(60)] + [("valid", k) for k in range(20)]
    tasks += [("test", k) for k in range(20)]
    try:
        for split, index in tasks:
            env.split = split
            env.reset(options={"task_index": index})
            task = env.task
            before = env.sandbox.run_hidden(task.hidden_cases)
            assert before.status == "completed" and before.ran == task.hidden_test_count
            assert before.failed == reference_hidden_failures(task) >= 1, (split, index)
            expert = quick
            if index < 6:  # visible tests pass before and after the fix (PASS_TO_PASS)
                visible = env.sandbox.run_tests()
                assert visible.all_passed, (split, index, visible.output[-500:])
                expert = thorough
            done = False
            while not done:
                observation, reward, terminated, truncated, info = env.step(expert.act())
                if expert is thorough and env.steps_taken == 4:
                    assert observation.startswith("Ran ") and "(OK)" in observation
                done = terminated or truncated
            assert (reward, terminated, truncated, info["won"]) == (1.0, True, False, True)
            assert info["tests_passed"] == task.hidden_test_count
            assert info["tests_failed"] == 0
    finally:
        env.close()


def test_submitting_without_a_fix_fails_and_the_step_limit_submits() -> None:
    env = SweEnv("valid", max_steps=3, success_reward=5.0)
    env.reset(options={"task_index": 3})
    reward, terminated, _, info = play(env, ["submit"])
    assert (reward, terminated, info["won"]) == (0.0, True, False)
    assert info["tests_failed"] >= 1
    with pytest.raises(RuntimeError):
        env.step("submit")
    env.reset(options={"task_index": 3})
    plan = expert_plan(env.task)  # search, view, edit: the limit is hit right after the fix
    reward, terminated, truncated, info = play(env, plan[:3])
    assert (reward, terminated, truncated, info["won"]) == (5.0, False, True, True)
    env.reset(options={"task_index": 3})
    reward, _, truncated, info = play(env, ["view README.md"] * 3)
    assert (reward, truncated, info["won"]) == (0.0, True, False)
    env.close()


def test_random_agent_almost_never_wins() -> None:
    env = SweEnv("train", max_steps=12)
    agent = RandomAgent(env, seed=0, submit_rate=0.1)
    wins = 0
    for k in range(12):
        env.reset(options={"task_index": k})
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(agent.act())
            done = terminated or truncated
        wins += info["won"]
    env.close()
    assert wins <= 1


# ---- tools and the action grammar -----------------------------------------------------------


def test_parse_action_grammar() -> None:
    call = parse_action(edit_action("a/b.py", "x = 1\n  y", "x = 2"))
    assert (call.name, call.path, call.old, call.new) == ("edit", "a/b.py", "x = 1\n  y", "x = 2")
    assert parse_action("view pkg/m.py 3 -1").end == -1
    assert parse_action("search def f(").text == "def f("
    assert parse_action("  run_tests  ").path == "tests"
    assert parse_action("submit").name == "submit"
    creation = parse_action("edit new.py\n<<<<<<< OLD\n=======\nz = 3\n>>>>>>> NEW")
    assert (creation.old, creation.new) == ("", "z = 3")
    for bad in ("", "fly away", "view", "view a 1", "view a x y", "submit now", "search ",
                "edit a.py\nx\n=======\ny\n>>>>>>> NEW", "edit a.py\n<<<<<<< OLD\nx\n>>>>>>> NEW",
                "run_tests a b"):  # fmt: skip
        with pytest.raises(ToolError):
            parse_action(bad)


def test_tools_view_search_edit_and_invalid_actions() -> None:
    env = SweEnv("train", max_observation_chars=300)
    env.reset(options={"task_index": 5})
    fix = env.task.fix
    obs, reward, _, _, info = env.step(f"view {fix.path} 1 2")
    assert info["valid"] and reward == 0.0 and "     1\t" in obs and "     3\t" not in obs
    obs, *_ = env.step(f"view {fix.path}")
    assert len(obs) < 450 and "output truncated" in obs
    obs, _, _, _, info = env.step(f"search def {env.task.function}(")
    assert info["valid"] and fix.path in obs
    obs, _, _, _, info = env.step(edit_action(fix.path, "no such text", "x"))
    assert not info["valid"] and "not found" in obs
    obs, _, _, _, info = env.step("dance")
    assert not info["valid"] and "unknown tool" in obs
    assert info["admissible_commands"] == list(TOOL_TEMPLATES)
    assert info["task_type"] == env.task.bug_kind and info["task"] == env.task.issue
    obs, _, _, _, info = env.step(edit_action("tests/test_new.py", "", "x = 1"))
    assert info["valid"] and (env.sandbox.repo / "tests/test_new.py").read_text() == "x = 1"
    obs, _, _, _, info = env.step(edit_action("README.md", "", "y"))
    assert not info["valid"]
    env.close()


def test_path_escapes_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret = 1\n")
    env = SweEnv("train")
    env.reset(options={"task_index": 1})
    repo = env.sandbox.repo
    os.symlink(outside, repo / "link.py")
    os.symlink(tmp_path, repo / "linkdir")
    os.link(outside, repo / "hard.py")
    escapes = [
        "view ../tmp",
        "view ../../../../etc/passwd",
        f"view {outside}",
        "view link.py",
        "view linkdir/outside.txt",
        edit_action("link.py", "secret = 1", "secret = 2"),
        edit_action("hard.py", "secret = 1", "secret = 2"),
        edit_action("../escaped.py", "", "x = 1"),
        edit_action(f"{tmp_path}/created.py", "", "x = 1"),
        edit_action("linkdir/created.py", "", "x = 1"),
        "run_tests ../",
    ]
    for action in escapes:
        obs, reward, _, _, info = env.step(action)
        assert not info["valid"] and reward == 0.0, (action, obs)
    obs, *_ = env.step("search secret")
    assert "link.py" not in obs
    assert outside.read_text() == "secret = 1\n"
    assert not (tmp_path / "created.py").exists()
    assert not (env.sandbox.base / "escaped.py").exists()
    env.close()


# ---- sandbox limits -------------------------------------------------------------------------

ESCAPES = {
    "open": "open({target!r}, 'w').write('x')",
    "system": "import os\nos.system('touch {target}')",
    "subprocess": "import subprocess\nsubprocess.run(['touch', {target!r}])",
    "ctypes": "import ctypes\nctypes.CDLL(None).system(b'touch {target}')",
    "symlink": "import os\nos.symlink({target!r}, 'out.txt')\nopen('out.txt', 'w').write('x')",
    "rename": "open('made.txt', 'w').write('x')\nimport os\nos.rename('made.txt', {target!r})",
}


@pytest.mark.parametrize(
    ("isolation", "guard"), [("bwrap", True), ("bwrap", False), ("unsafe", True), ("unsafe", False)]
)
def test_test_runs_cannot_write_outside_the_episode(
    tmp_path: Path, isolation: str, guard: bool
) -> None:
    if isolation == "unsafe" and not guard and landlock_abi() == 0:
        pytest.skip("kernel without Landlock: the audit-hook guard is the only write barrier")
    for name, template in ESCAPES.items():
        target = tmp_path / f"escaped-{name}"
        body = template.format(target=str(target))
        files = {"tests/__init__.py": "", "tests/test_escape.py": unittest_source(body)}
        sandbox = Sandbox(files, limits=FAST, isolation=isolation, guard=guard)
        report = sandbox.run_tests()
        sandbox.close()
        assert report.status == "completed", (name, report.output[-300:])
        assert not target.exists(), (name, isolation, guard)


@pytest.mark.parametrize(
    ("body", "statuses"),
    [
        ("while True:\n    pass", ("crashed", "timeout")),
        ("import time\ntime.sleep(1000)", ("timeout",)),
        ("chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))", ("completed", "crashed")),
        ("import os\nos._exit(0)", ("crashed",)),
    ],
)
def test_runaway_package_code_fails_the_verdict_without_stalling(
    body: str, statuses: tuple[str, ...]
) -> None:
    env = SweEnv("train", limits=FAST)
    env.reset(options={"task_index": 0})
    total = env.task.hidden_test_count
    reward, terminated, _, info = play(env, [prepend_action(env.task, body), "submit"])
    assert (reward, terminated, info["won"]) == (0.0, True, False)
    assert (info["tests_passed"], info["tests_failed"]) == (0, total)
    assert env.last_verdict is not None and env.last_verdict.status in statuses
    env.close()


def test_visible_runaway_run_reports_and_the_episode_continues() -> None:
    env = SweEnv("train", limits=FAST)
    env.reset(options={"task_index": 2})
    env.step(edit_action("tests/test_loop.py", "", unittest_source("while True:\n    pass")))
    obs, _, terminated, truncated, info = env.step("run_tests tests/test_loop.py")
    assert info["valid"] and "Test run stopped" in obs and not (terminated or truncated)
    obs, *_ = env.step("run_tests")
    assert "Test run stopped" in obs  # the looping file is part of the visible suite now
    env.close()


def test_child_environment_is_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEM_FAKE_SECRET_TOKEN", "hunter2")
    allowed = {
        "PATH", "HOME", "TMPDIR", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED",
        "PYTHONIOENCODING", "LC_CTYPE", "PWD",  # LC_CTYPE: the interpreter's locale coercion,
                                                # PWD: bubblewrap's --chdir
    }  # fmt: skip
    body = f"import os\nself.assertLessEqual(set(os.environ), {allowed!r})"
    files = {"tests/__init__.py": "", "tests/test_env.py": unittest_source(body)}
    sandbox = Sandbox(files, limits=FAST)
    report = sandbox.run_tests()
    sandbox.close()
    assert report.all_passed, report.output[-500:]


# ---- lifecycle, seeds, registry -------------------------------------------------------------


def test_episode_folders_are_removed_on_reset_close_and_collection() -> None:
    env = SweEnv("train")
    env.reset(seed=1)
    first = env.sandbox.base
    env.reset(seed=2)
    second = env.sandbox.base
    assert not first.exists() and second.exists()
    env.close()
    assert not second.exists()
    env.reset(seed=3)
    third = env.sandbox.base
    del env
    gc.collect()
    assert not third.exists()


def test_seeds_reproduce_episodes_and_options_select_tasks() -> None:
    a, b = SweEnv("test"), SweEnv("test")
    obs_a, info_a = a.reset(seed=11)
    obs_b, info_b = b.reset(seed=11)
    assert obs_a == obs_b and info_a == info_b
    assert a.task.fingerprint == b.task.fingerprint
    _, info = a.reset(options={"task_type": "swapped_arguments"})
    assert info["task_type"] == "swapped_arguments"
    with pytest.raises(ValueError):
        a.reset(options={"task_index": 10**9})
    with pytest.raises(ValueError):
        a.reset(options={"task_type": "typo"})
    with pytest.raises(ValueError):
        SweEnv("dev")
    a.close()
    b.close()


def test_registry_make_builds_the_env() -> None:
    env = aem.envs.make("swe", split="valid", max_steps=5)
    assert isinstance(env, SweEnv) and env.split == "valid"
    obs, info = env.reset(seed=0)
    assert "Issue:" in obs and info["won"] is False
    env.close()
