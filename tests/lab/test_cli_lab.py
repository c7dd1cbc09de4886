"""``aem lab``: argument errors (rc 2 with a clear message) and one tiny end-to-end report."""

from __future__ import annotations

import json

import pytest
import torch

import aem.lab.runner as runner
from aem.cli import main
from aem.lab.settings import Setting
from aem.lab.tasks import TaskFamily


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "0"], "--seeds must be >= 2"),
        (["--seeds", "1"], "--seeds must be >= 2"),
        (["--seed-offset", "-3"], "--seed-offset must be >= 0"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--check-against", "/nonexistent/lab"], "no results.json"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys, tmp_path):
    assert main(["lab", "--out", str(tmp_path / "out"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_non_integer_seeds_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["lab", "--seeds", "many"])
    assert exit_info.value.code == 2
    assert "--seeds" in capsys.readouterr().err


def tiny_plan(drift: bool) -> dict[str, Setting]:
    setting = Setting(
        family=TaskFamily("lock", 2, 1),
        steps=4,
        eval_every=2,
        instances=4,
        groups=2,
        group_size=4,
        arms=("grpo", "aem@1", "mask_decreasing", "mask_increasing", "empg"),
        drift=drift,
    )
    return {("tabular/natural" if drift else "lock-tiny"): setting}


def test_end_to_end_report_and_replication_check(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "MAIN", tiny_plan(False))
    monkeypatch.setattr(runner, "DRIFT", tiny_plan(True))
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["lab", "--seeds", "3", "--out", str(first)]) == 0
    for name in ("report.md", "results.json", "curves.csv", "summary.csv", "headline.png"):
        assert (first / name).is_file(), name
    results = json.loads((first / "results.json").read_text())
    assert results["meta"]["seeds"] == [0, 2]
    assert "aem lab --seeds=3 --seed-offset=0" in (first / "report.md").read_text()
    argv = ["lab", "--seeds", "3", "--seed-offset", "100", "--out", str(second)]
    assert main([*argv, "--check-against", str(first)]) == 0
    replicated = json.loads((second / "results.json").read_text())
    assert replicated["meta"]["seeds"] == [100, 102]
    rep = replicated["replication"]
    assert len(rep["agree"]) + len(rep["differ"]) == len(results["conclusions"])
    assert "Replication on a disjoint seed set" in (second / "report.md").read_text()
    torch.set_num_threads(1)


def test_sensitivity_grid_writes_its_table(tmp_path, monkeypatch):
    plan = tiny_plan(False)
    monkeypatch.setattr(runner, "SENSITIVITY", {"tiny depth=2": plan["lock-tiny"]})
    assert main(["lab", "--sensitivity", "--seeds", "2", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "sensitivity.md").read_text()
    assert "| tiny depth=2 |" in table and "GRPO+AEM tau=1" in table
    result = json.loads((tmp_path / "sensitivity.json").read_text())
    assert set(result["summaries"]["tiny depth=2"]["arms"]) >= {"grpo", "empg"}
