"""Iteration time of the two batch layouts, side by side in one process.

Run: ``python benchmarks/bench_layout.py [--iterations N] [key=value ...]``. One trainer (one warm
start) runs every iteration twice from the same weights, optimiser and generator states: once
with ``rollout.layout=turn`` (one row per turn, each turn's prompt encoded afresh) and once with
``rollout.layout=trajectory`` (one row per trajectory, KV cache kept across turns, only new
observations fed), alternating which goes first. Defaults: 16 tasks x 8 trajectories (128) x up
to 10 turns. Prints per-phase medians (seconds), tokens through the model per iteration, the
rollout success of each layout, and the median per-iteration time ratio.

Both layouts start from the same warm start, which imitates the expert on the turn layout's
prompts; read the success columns before reading the times as like for like.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from aem.trainer.config import load_config
from aem.trainer.loop import Trainer
from bench_train import _restore, _state

PHASES = ("rollout", "scoring", "reference", "advantage", "aem", "update", "total")
LAYOUTS = ("turn", "trajectory")
DEFAULTS = ["rollout.tasks=16", "rollout.group_size=8", "env.max_turns=10", "eval.tasks=4"]
SHOWN = (
    "throughput/tokens",
    "rollout/rows",
    "rollout/length",
    "rollout/response_tokens",
    "rollout/success",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="training config overrides")
    args = parser.parse_args()
    records: dict[str, list[dict[str, float]]] = {layout: [] for layout in LAYOUTS}
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(
            overrides=[*DEFAULTS, f"trainer.iterations={args.iterations}", *args.overrides]
        )
        trainer = Trainer(config, Path(tmp) / "run")
        trainer.setup()
        try:
            for it in range(args.iterations):
                start = _state(trainer)
                sample_state = trainer.sample_generator.get_state()
                random_state = trainer.py_random.getstate()
                order = LAYOUTS if it % 2 == 0 else LAYOUTS[::-1]
                for position, layout in enumerate(order):
                    if position:
                        _restore(trainer, start)
                        trainer.sample_generator.set_state(sample_state)
                        trainer.py_random.setstate(random_state)
                    trainer.config.rollout.layout = layout
                    records[layout].append(trainer.iteration(it))
        finally:
            trainer.close()

    def median(layout: str, key: str) -> float:
        return statistics.median(record.get(key, 0.0) for record in records[layout])

    print(
        f"median per iteration over {args.iterations} iterations, "
        f"{config.rollout.tasks * config.rollout.group_size} trajectories x up to "
        f"{config.env.max_turns} turns\n"
    )
    print("| | " + " | ".join(f"{layout} layout" for layout in LAYOUTS) + " |")
    print("|---|" + "---|" * len(LAYOUTS))
    for phase in PHASES:
        cells = " | ".join(f"{median(layout, f'time/{phase}'):.2f} s" for layout in LAYOUTS)
        print(f"| {phase} | {cells} |")
    for key in SHOWN:
        print(f"| {key} | " + " | ".join(f"{median(layout, key):.3g}" for layout in LAYOUTS) + " |")
    totals = zip(
        (r["time/total"] for r in records["turn"]),
        (r["time/total"] for r in records["trajectory"]),
        strict=True,
    )
    ratios = [turn / trajectory for turn, trajectory in totals]
    print(
        f"\nturn / trajectory iteration time: median of per-iteration ratios "
        f"{statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
