"""``benchmarks/bench_vs_trl.py`` runs end to end at a trivial size (timings are not asserted:
speed lives in the benchmark, not in tests)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="TRL is an optional extra of aem: pip install 'aem[trl]'")

BENCH = Path(__file__).parents[2] / "benchmarks" / "bench_vs_trl.py"


@pytest.mark.parametrize("scoring", ["fused", "separate"])
def test_both_trainers_take_the_same_number_of_timed_steps(scoring):
    spec = importlib.util.spec_from_file_location("bench_vs_trl", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = argparse.Namespace(
        steps=2, tasks=2, group=2, tokens=6, hidden=32, layers=1, lr=1e-4, seed=0, scoring=scoring
    )
    result = bench.run(args)
    assert result["samples"] == {"per_step": 4.0, "steps": 2.0}
    for side in ("aem", "trl"):
        assert set(result[side]) == {"generation", "scoring", "update", "step"}
        assert all(value >= 0 for value in result[side].values())
        assert result[side]["step"] >= result[side]["generation"] > 0
        assert 1 <= result["lengths"][side] <= 6
