"""curves.png of a run: which points go on which curve."""

from __future__ import annotations

import json
from pathlib import Path

from aem.trainer.curves import CURVES_FILE, curve_points, plot_run


def _records() -> list[dict]:
    start = {"iteration": -1, "eval/success": 0.1, "warm_start/steps": 5.0}
    trained = [
        {"iteration": i, "rollout/success": 0.2 * i, "entropy/response_mean": 1.0 - 0.1 * i}
        for i in range(3)
    ]
    trained[2]["eval/success"] = 0.3
    return [start, *trained]


def test_eval_curve_opens_with_the_starting_policy() -> None:
    points = curve_points(_records())
    assert points["eval"] == ([-1, 2], [0.1, 0.3])
    assert points["rollout"] == ([0, 1, 2], [0.0, 0.2, 0.4])
    assert points["entropy"][0] == [0, 1, 2]


def test_plot_run_writes_a_png_and_skips_a_run_without_iterations(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records()))
    path = plot_run(tmp_path)
    assert path == tmp_path / CURVES_FILE
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "metrics.jsonl").write_text(json.dumps(_records()[0]) + "\n")
    assert plot_run(empty) is None
