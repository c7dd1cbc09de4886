"""Iteration time of two source trees of ``aem``, side by side: is a change slower?

Run: ``python benchmarks/bench_versions.py --old OLD/src [--new NEW/src] [--repeats 4]
[--iterations 6] [key=value ...]``, e.g. with the branch point checked out by
``git worktree add --detach /tmp/base <commit>``. Each repeat starts one trainer per tree at the
same time (each pinned to its own core, the cores swapped every other repeat; one torch thread
each), both on the same config and seed, and
times every ``Trainer.iteration`` (rollout + learning, wall and process CPU seconds). A change that
keeps the trainer's behaviour (``tests/trainer/test_reproduction.py``) makes both trees do the
same work on the same batches, so iteration ``k`` of one tree is compared with iteration ``k`` of
the other; iteration 0 is left out (first-call costs). Prints the median new/old ratio of wall
and CPU time over all compared iterations, with its range.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def worker(iterations: int, overrides: list[str]) -> None:
    """Train ``iterations`` iterations with the ``aem`` on ``PYTHONPATH``; print their times."""
    from aem.trainer.config import load_config
    from aem.trainer.loop import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(overrides=[f"trainer.iterations={iterations}", *overrides])
        trainer = Trainer(config, Path(tmp) / "run")
        trainer.setup()
        times = []
        try:
            for it in range(iterations):
                wall, cpu = time.perf_counter(), time.process_time()
                trainer.iteration(it)
                times.append((time.perf_counter() - wall, time.process_time() - cpu))
        finally:
            trainer.close()
    print(json.dumps(times))


def run_pair(
    sources: dict[str, str], iterations: int, overrides: list[str], swap: bool
) -> dict[str, list[list[float]]]:
    """Both trees at once, each pinned to its own core (the cores swap when ``swap``, so that
    other jobs' load on one core hits both trees alike over an even number of repeats);
    ``{label: [(wall, cpu) per iteration]}``."""
    cores = sorted(os.sched_getaffinity(0))[:2] if hasattr(os, "sched_getaffinity") else []
    if swap:
        cores = cores[::-1]
    processes = {}
    for index, (label, src) in enumerate(sources.items()):
        env = {**os.environ, "PYTHONPATH": src}
        command = [sys.executable, str(HERE), "--worker", "--iterations", str(iterations)]
        core = {cores[index]} if len(cores) == 2 else None
        processes[label] = subprocess.Popen(
            [*command, *overrides],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=None if core is None else (lambda core=core: os.sched_setaffinity(0, core)),
        )
    out = {}
    for label, process in processes.items():
        stdout, _ = process.communicate()
        if process.returncode:
            raise RuntimeError(f"{label} ({sources[label]}) failed")
        out[label] = json.loads(stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", help="src folder of the reference tree")
    parser.add_argument("--new", default=str(HERE.parents[1] / "src"), help="src folder")
    parser.add_argument("--repeats", type=int, default=4, help="even: both trees on both cores")
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="training config overrides")
    args = parser.parse_intermixed_args()
    if args.worker:
        worker(args.iterations, args.overrides)
        return
    if args.old is None:
        parser.error("--old is required")
    ratios: dict[str, list[float]] = {"wall": [], "cpu": []}
    totals: dict[str, list[float]] = {"old": [], "new": []}
    for repeat in range(args.repeats):
        sources = {"old": args.old, "new": args.new}
        times = run_pair(sources, args.iterations, args.overrides, swap=repeat % 2 == 1)
        for clock, column in (("wall", 0), ("cpu", 1)):
            pairs = zip(times["new"][1:], times["old"][1:], strict=True)
            ratios[clock] += [new[column] / old[column] for new, old in pairs]
        for label in totals:
            totals[label] += [t[0] for t in times[label][1:]]
        print(f"repeat {repeat}: " + json.dumps(times), flush=True)
    print(f"\nmedian iteration wall time: old {statistics.median(totals['old']):.2f} s, new "
          f"{statistics.median(totals['new']):.2f} s")  # fmt: skip
    for clock, values in ratios.items():
        print(
            f"new/old {clock} time per iteration: median {statistics.median(values):.3f}x "
            f"(range {min(values):.3f}-{max(values):.3f}, {len(values)} iterations)"
        )


if __name__ == "__main__":
    main()
