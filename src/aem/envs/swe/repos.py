"""The seeded generator of repository-repair tasks.

Task ``k`` of a split is a pure function of ``(split, k)``: its random generator is seeded with
``SPLIT_SEED_OFFSETS[split] + k`` and its bug kind is ``BUG_KINDS[k % len(BUG_KINDS)]``. A task
is a small package of 3 to 5 functions (:mod:`aem.envs.swe.catalog`) grouped in modules by topic,
a visible ``unittest`` suite, hidden cases and an issue text describing one symptom of the
injected bug. Expected values come from running the correct code; a test *triggers* when the
buggy code gives another result (value or exception type). Visible tests use only non-triggering
cases (they pass before and after the fix, like SWE-bench's PASS_TO_PASS); the hidden cases add
triggering ones (FAIL_TO_PASS), so they fail before the fix and pass after it. Hidden cases are data
(a call and its expected outcome), never code in the agent's reach: the sandbox returns the
candidate's outcomes and the trusted parent compares them (:mod:`aem.envs.swe.verdict`).
"""

from __future__ import annotations

import copy
import hashlib
import math
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aem.checks import require_int_at_least
from aem.envs.swe.bugs import BUG_KINDS
from aem.envs.swe.catalog import TEMPLATES, TOPIC_MODULES, FunctionTemplate

SPLITS: tuple[str, ...] = ("train", "valid", "test")
SPLIT_SIZES: dict[str, int] = {"train": 4000, "valid": 200, "test": 500}
"""Default number of tasks per split."""
SPLIT_SEED_OFFSETS: dict[str, int] = {"train": 0, "valid": 1_000_000, "test": 2_000_000}
"""Task ``k`` of a split uses seed ``offset + k``: the seed ranges never overlap."""

PACKAGE_NAMES: tuple[str, ...] = (
    "abacus", "anvil", "beacon", "cobble", "compass", "fathom", "gauge", "harbor", "keel",
    "kitbag", "lattice", "ledgerly", "lumen", "meadow", "nimbus", "orbit", "pebble", "quarry",
    "quill", "ripple", "sieve", "sprout", "strand", "tally", "tinker", "toolbelt",
)  # fmt: skip

VISIBLE_PER_FUNCTION = 3
HIDDEN_PASS_PER_FUNCTION = 6
HIDDEN_FAIL_PER_FUNCTION = 3

Outcome = tuple[str, Any]
"""``("value", result)`` or ``("raises", exception type name)``."""


@dataclass(frozen=True)
class Fix:
    """The reference repair: replace ``old`` (unique in the file) by ``new`` in ``path``."""

    path: str
    old: str
    new: str


@dataclass(frozen=True)
class HiddenCase:
    """One hidden check: ``module.function(*args)`` must give ``expected``."""

    module: str
    function: str
    args: tuple
    expected: Outcome


@dataclass(frozen=True)
class Task:
    """One repository-repair task; ``files`` is the visible checkout (path -> text),
    ``hidden_cases`` the checks that decide the reward (kept out of the checkout)."""

    split: str
    index: int
    seed: int
    bug_kind: str
    package: str
    function: str
    files: dict[str, str]
    hidden_cases: tuple[HiddenCase, ...]
    issue: str
    fix: Fix

    @property
    def hidden_test_count(self) -> int:
        """Number of hidden checks."""
        return len(self.hidden_cases)

    @property
    def fingerprint(self) -> str:
        """Digest of the checkout, the hidden cases and the fix (equal digests: same task)."""
        digest = hashlib.sha256()
        for name in sorted(self.files):
            digest.update(f"{name}\0{self.files[name]}\0".encode())
        for case in self.hidden_cases:
            digest.update(f"{case!r}\0".encode())
        digest.update(f"{self.fix.path}\0{self.fix.old}\0{self.fix.new}".encode())
        return digest.hexdigest()


def bug_kind_of(index: int) -> str:
    """The bug kind of task ``index`` in any split."""
    return BUG_KINDS[index % len(BUG_KINDS)]


@lru_cache(maxsize=4096)
def build_task(split: str, index: int) -> Task:
    """Task ``index`` of ``split``: deterministic in its arguments."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    require_int_at_least("index", index, 0)
    seed = SPLIT_SEED_OFFSETS[split] + index
    rng = random.Random(seed)
    kind = bug_kind_of(index)
    sites = [(t, k) for t in TEMPLATES for k, s in enumerate(t.sites) if s.kind == kind]
    rng.shuffle(sites)
    for template, site in sites:
        cases = template.cases(rng)
        rng.shuffle(cases)
        triggering, quiet = _split_cases(template, site, cases)
        if triggering and quiet:
            return _assemble(rng, split, index, seed, template, site, triggering, quiet)
    raise RuntimeError(f"no template exposes a {kind} bug for {split}[{index}]")


def outcome(function: Any, args: tuple) -> Outcome:
    """Call ``function(*args)`` on a deep copy of ``args``; the value or the exception type."""
    try:
        return ("value", function(*copy.deepcopy(args)))
    except Exception as error:  # any failure of generated code is an outcome
        return ("raises", type(error).__name__)


def same_outcome(a: Outcome, b: Outcome) -> bool:
    """Equal outcomes (floats compared with a 1e-9 tolerance)."""
    if a[0] != b[0]:
        return False
    x, y = a[1], b[1]
    if isinstance(x, float) or isinstance(y, float):
        numbers = (int, float)
        if isinstance(x, bool) or isinstance(y, bool):
            return x == y and type(x) is type(y)
        return (
            isinstance(x, numbers)
            and isinstance(y, numbers)
            and math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)
        )
    return bool(x == y)


def load_function(source: str, name: str) -> Any:
    """Execute trusted template ``source`` and return its function ``name``."""
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<template {name}>", "exec"), namespace)
    return namespace[name]


def _split_cases(
    template: FunctionTemplate, site: int, cases: list[tuple]
) -> tuple[list[tuple[tuple, Outcome, Outcome]], list[tuple[tuple, Outcome]]]:
    """Cases where the bug shows ``(args, expected, actual)`` and where it does not."""
    correct = load_function(template.render(), template.name)
    buggy = load_function(template.render(site), template.name)
    triggering, quiet, seen = [], [], set()
    for args in cases:
        key = repr(args)
        if key in seen:
            continue
        seen.add(key)
        expected, actual = outcome(correct, args), outcome(buggy, args)
        if same_outcome(expected, actual):
            quiet.append((args, expected))
        else:
            triggering.append((args, expected, actual))
    return triggering, quiet


def _assemble(
    rng: random.Random,
    split: str,
    index: int,
    seed: int,
    bugged: FunctionTemplate,
    site: int,
    triggering: list[tuple[tuple, Outcome, Outcome]],
    quiet: list[tuple[tuple, Outcome]],
) -> Task:
    package = rng.choice(PACKAGE_NAMES)
    others = [t for t in TEMPLATES if t is not bugged]
    chosen = [bugged, *rng.sample(others, rng.randint(2, 4))]
    rng.shuffle(chosen)
    topics = sorted({t.topic for t in chosen})
    module_of = {topic: rng.choice(TOPIC_MODULES[topic]) for topic in topics}

    files: dict[str, str] = {"tests/__init__.py": ""}
    hidden: list[HiddenCase] = []
    fix_path, correct_text, buggy_text = "", "", ""
    exports: list[tuple[str, str]] = []
    for topic in topics:
        module = module_of[topic]
        members = [t for t in chosen if t.topic == topic]
        path = f"{package}/{module}.py"
        header = f'"""{topic.capitalize()} helpers of the ``{package}`` package."""\n\n\n'
        correct_module = header + "\n\n".join(t.render() for t in members)
        if bugged in members:
            buggy_module = header + "\n\n".join(
                t.render(site if t is bugged else None) for t in members
            )
            fix_path, correct_text, buggy_text = path, correct_module, buggy_module
        else:
            buggy_module = correct_module
        files[path] = buggy_module
        exports += [(module, t.name) for t in members]

        visible_tests, hidden_tests = [], []
        for template in members:
            if template is bugged:
                passing = quiet
                failing = [(args, expected) for args, expected, _ in triggering]
            else:
                cases = template.cases(rng)
                rng.shuffle(cases)
                function = load_function(template.render(), template.name)
                passing = _unique([(args, outcome(function, args)) for args in cases])
                failing = []
            visible_tests += [
                (template.name, args, result) for args, result in passing[:VISIBLE_PER_FUNCTION]
            ]
            hidden_tests += [
                (template.name, args, result)
                for args, result in passing[:HIDDEN_PASS_PER_FUNCTION]
                + failing[:HIDDEN_FAIL_PER_FUNCTION]
            ]
        names = [t.name for t in members]
        files[f"tests/test_{module}.py"] = _test_module(f"{package}.{module}", names, visible_tests)
        hidden += [HiddenCase(f"{package}.{module}", *test) for test in hidden_tests]

    files[f"{package}/__init__.py"] = _init_module(package, exports)
    files["README.md"] = _readme(package, chosen, module_of)
    args, expected, actual = triggering[0]
    issue = _issue(rng, package, module_of[bugged.topic], bugged, args, expected, actual)
    fix = _minimal_fix(fix_path, buggy_text, correct_text)
    return Task(
        split=split,
        index=index,
        seed=seed,
        bug_kind=bugged.sites[site].kind,
        package=package,
        function=bugged.name,
        files=dict(sorted(files.items())),
        hidden_cases=tuple(hidden),
        issue=issue,
        fix=fix,
    )


def _unique(cases: list[tuple[tuple, Outcome]]) -> list[tuple[tuple, Outcome]]:
    seen, kept = set(), []
    for args, result in cases:
        if repr(args) not in seen:
            seen.add(repr(args))
            kept.append((args, result))
    return kept


def _call(name: str, args: tuple) -> str:
    return f"{name}({', '.join(repr(a) for a in args)})"


def _assertion(name: str, args: tuple, expected: Outcome) -> str:
    call = _call(name, args)
    kind, value = expected
    if kind == "raises":
        return f"with self.assertRaises({value}):\n            {call}"
    if isinstance(value, float):
        return f"self.assertAlmostEqual({call}, {value!r}, places=6)"
    return f"self.assertEqual({call}, {value!r})"


def _test_module(module: str, names: list[str], tests: list[tuple[str, tuple, Outcome]]) -> str:
    lines = ['"""Tests of ``' + module + '``."""', "", "import unittest", ""]
    lines += [f"from {module} import {', '.join(sorted(names))}", "", ""]
    for name in names:
        own = [(args, expected) for fn, args, expected in tests if fn == name]
        if not own:
            continue
        class_name = "Test" + "".join(part.capitalize() for part in name.split("_"))
        lines.append(f"class {class_name}(unittest.TestCase):")
        for number, (args, expected) in enumerate(own):
            lines += [
                f"    def test_{name}_{number}(self):",
                f"        {_assertion(name, args, expected)}",
            ]
            lines.append("")
        lines.append("")
    lines += ['if __name__ == "__main__":', "    unittest.main()", ""]
    return "\n".join(lines)


def _init_module(package: str, exports: list[tuple[str, str]]) -> str:
    lines = [f'"""``{package}``: small utility functions."""', ""]
    lines += [f"from {package}.{module} import {name}" for module, name in sorted(exports)]
    names = ", ".join(f'"{name}"' for _, name in sorted(exports, key=lambda e: e[1]))
    return "\n".join([*lines, "", f"__all__ = [{names}]", ""])


def _readme(package: str, chosen: list[FunctionTemplate], module_of: dict[str, str]) -> str:
    lines = [f"# {package}", "", "Small utility functions.", ""]
    for template in sorted(chosen, key=lambda t: t.name):
        module = module_of[template.topic]
        lines.append(f"- `{package}.{module}.{template.name}`: {template.summary}.")
    lines += ["", "Run the tests with `python -m unittest discover -s tests`.", ""]
    return "\n".join(lines)


def _symptom(call: str, expected: Outcome, actual: Outcome) -> str:
    if actual[0] == "raises" and expected[0] == "raises":
        return f"`{call}` raises `{actual[1]}` instead of `{expected[1]}`."
    if actual[0] == "raises":
        return f"`{call}` raises `{actual[1]}`, but it should return `{expected[1]!r}`."
    if expected[0] == "raises":
        return f"`{call}` returns `{actual[1]!r}`, but it should raise `{expected[1]}`."
    return f"`{call}` returns `{actual[1]!r}` instead of `{expected[1]!r}`."


def _issue(
    rng: random.Random,
    package: str,
    module: str,
    template: FunctionTemplate,
    args: tuple,
    expected: Outcome,
    actual: Outcome,
) -> str:
    name = template.name
    call = _call(name, args)
    title = rng.choice(
        (
            f"`{name}` gives a wrong result",
            f"Wrong output from `{package}.{module}.{name}`",
            f"Bug in `{name}`",
            f"`{name}` misbehaves for some inputs",
        )
    )
    opening = rng.choice(
        (
            f"`{name}` should {template.summary}.",
            f"According to its documentation, `{name}` should {template.summary}.",
        )
    )
    return (
        f"{title}\n\n{opening} {_symptom(call, expected, actual)}\n\n"
        f"To reproduce:\n\n    from {package}.{module} import {name}\n    {call}\n"
    )


def _minimal_fix(path: str, buggy: str, correct: str) -> Fix:
    """The smallest block of whole lines around the change that is unique in the buggy file."""
    old_lines, new_lines = buggy.split("\n"), correct.split("\n")
    start = 0
    while start < min(len(old_lines), len(new_lines)) and old_lines[start] == new_lines[start]:
        start += 1
    end_old, end_new = len(old_lines), len(new_lines)
    while end_old > start and end_new > start and old_lines[end_old - 1] == new_lines[end_new - 1]:
        end_old, end_new = end_old - 1, end_new - 1
    if end_old == start:  # pure insertion: anchor on the line above
        start -= 1
    while True:
        old = "\n".join(old_lines[start:end_old])
        if buggy.count(old) == 1:
            return Fix(path, old, "\n".join(new_lines[start:end_new]))
        start, end_old, end_new = max(start - 1, 0), end_old + 1, end_new + 1
