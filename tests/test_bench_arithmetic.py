"""``benchmarks/bench_arithmetic.py`` runs end to end at a trivial size (rates are not asserted:
speed lives in the benchmark, not in tests)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[1] / "benchmarks" / "bench_arithmetic.py"


def test_counts_the_pass_and_rates_the_three_matrix_shapes():
    args = ["--rows", "4", "--tokens", "16", "--repeats", "1"]
    out = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, check=True
    ).stdout
    parameters = int(re.search(r"tiny Qwen2 ([\d,]+) parameters", out).group(1).replace(",", ""))
    gflop = float(re.search(r"over 4 x 16 tokens: ([\d.]+) GFLOP", out).group(1))
    # a forward + backward pass is about 6 FLOPs per parameter per token (within 2x)
    assert 0.5 < gflop * 1e9 / (6 * parameters * 64) < 2
    rows = [line for line in out.splitlines() if line.startswith("| 64 x ")]
    assert len(rows) == 3
