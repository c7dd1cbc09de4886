"""The trainer reproduces the metrics recorded before the data-flow redesign (issue 14), to the
last bit: every case of ``reproduction.py`` trains again and must log exactly the recorded
``metrics.jsonl`` (wall-clock keys aside). Recording and replay run under the pinned numerics of
``reproduction.py``, so the comparison holds on any x86-64 CPU."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from reproduction import BASE, FIXTURE, cases, replay_pinned

RECORDED = json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> dict[str, Any]:
    """Every case and the resumed old run, replayed in one pinned-numerics interpreter."""
    return replay_pinned(tmp_path_factory.mktemp("replay") / "replayed.json")


def differences(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> list[str]:
    """Human-readable differences between two lists of metrics records."""
    if len(got) != len(want):
        return [f"{len(got)} records, recorded {len(want)}"]
    out = []
    for index, (new, old) in enumerate(zip(got, want, strict=True)):
        for key in sorted(set(new) | set(old)):
            if key not in new or key not in old:
                out.append(f"record {index}: {key!r} only in {'new' if key in new else 'recorded'}")
            elif not _same(new[key], old[key]):
                out.append(f"record {index}: {key} = {new[key]!r}, recorded {old[key]!r}")
    return out


def _same(new: Any, old: Any) -> bool:
    if isinstance(new, float) and isinstance(old, float) and math.isnan(new):
        return math.isnan(old)
    return new == old


def test_the_fixture_covers_every_case_with_the_recorded_settings():
    assert RECORDED["base"] == list(BASE)
    assert {name: case["overrides"] for name, case in RECORDED["cases"].items()} == cases()


@pytest.mark.parametrize("name", sorted(cases()))
def test_trainer_reproduces_the_recorded_metrics(replayed, name):
    recorded = RECORDED["cases"][name]
    problems = differences(replayed["cases"][name], recorded["records"])
    where = f"recorded with {RECORDED['environment']}, replayed with {replayed['environment']}"
    assert not problems, f"{name} ({where}):\n" + "\n".join(problems[:20])


def test_the_comparison_sees_a_one_ulp_change():
    value = 0.1
    assert not differences([{"a": value, "b": None}], [{"a": value, "b": None}])
    assert differences([{"a": math.nextafter(value, 1.0)}], [{"a": value}])
    assert differences([{"a": 1.0, "c": 2.0}], [{"a": 1.0}])


def test_a_run_checkpointed_by_the_code_before_the_redesign_resumes(replayed):
    """``fixtures/old_ppo_run``: case ``ppo-turn-aem`` stopped after iteration 0 by the code
    before the redesign (policy, critic, both optimisers, generators). Resumed now, it logs
    exactly the recorded uninterrupted run."""
    recorded = RECORDED["cases"]["ppo-turn-aem"]["records"]
    assert not differences(replayed["resumed"], recorded)
