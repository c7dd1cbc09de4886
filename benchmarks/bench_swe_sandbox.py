"""Cost of the `swe` sandbox: one test run and one hidden verdict under bubblewrap vs the
``unsafe`` plain subprocess, interleaved in one process, and a 5-step expert episode.

Run: ``.venv/bin/python benchmarks/bench_swe_sandbox.py [--runs 30]``. Prints the median and the
maximum wall time of each (milliseconds).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from aem.envs.swe import ISOLATIONS, Sandbox, SweEnv, SweExpert, build_task


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def expert_episode(env: SweEnv, expert: SweExpert, index: int) -> None:
    env.reset(options={"task_index": index})
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(expert.act())
        done = terminated or truncated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs of each kind per isolation")
    args = parser.parse_args()
    task = build_task("train", 0)
    sandboxes = {isolation: Sandbox(task.files, isolation=isolation) for isolation in ISOLATIONS}
    times: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for isolation, sandbox in sandboxes.items():
            times.setdefault(f"test run ({isolation})", []).append(timed(sandbox.run_tests))
            times.setdefault(f"hidden verdict ({isolation})", []).append(
                timed(lambda sandbox=sandbox: sandbox.run_hidden(task.hidden_cases))
            )
    env = SweEnv("train")
    expert = SweExpert(env)
    times["5-step expert episode (bwrap)"] = [
        timed(lambda k=k: expert_episode(env, expert, k)) for k in range(args.runs)
    ]
    env.close()
    print("| measurement | median ms | max ms |")
    print("| --- | ---: | ---: |")
    for label, values in times.items():
        print(f"| {label} | {statistics.median(values) * 1e3:.0f} | {max(values) * 1e3:.0f} |")


if __name__ == "__main__":
    main()
