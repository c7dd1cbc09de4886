"""Iteration time of GRPO vs GRPO+AEM on the same batches, side by side in one process.

Run: ``python benchmarks/bench_train.py [--iterations N] [key=value ...]``. One trainer rolls out
a batch per iteration; that same batch is then learned from twice, from the same weights,
optimiser and generator states: once with AEM off and once with it on (the order alternates
between iterations so machine noise hits both alike). AEM touches nothing before the advantage,
so both share the rollout time. Prints per-phase medians (seconds), the ratio of iteration times
(target <= 1.02; the paper's Sec. 6 claim is ~1%) and AEM's share of the iteration.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
from pathlib import Path
from typing import Any

from aem.batch import ROLLOUT_FIELDS
from aem.trainer.config import load_config
from aem.trainer.loop import Trainer
from aem.trainer.metrics import PhaseTimer

PHASES = ("rollout", "scoring", "reference", "advantage", "aem", "update", "total")
LABELS = ("GRPO", "GRPO+AEM")


def _state(trainer: Trainer) -> dict[str, Any]:
    return {
        "model": copy.deepcopy(trainer.model.state_dict()),
        "optimizer": copy.deepcopy(trainer.optimizer.state_dict()),
        "shuffle": trainer.shuffle_generator.get_state(),
        "previous": (trainer.previous_entropy, trainer.previous_drift),
    }


def _restore(trainer: Trainer, state: dict[str, Any]) -> None:
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.shuffle_generator.set_state(state["shuffle"])
    trainer.previous_entropy, trainer.previous_drift = state["previous"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("overrides", nargs="*", help="training config overrides")
    args = parser.parse_args()
    times: dict[str, dict[str, list[float]]] = {label: {p: [] for p in PHASES} for label in LABELS}
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(
            overrides=["algorithm=grpo", f"trainer.iterations={args.iterations}", *args.overrides]
        )
        trainer = Trainer(config, Path(tmp) / "run")
        trainer.setup()
        try:
            for it in range(args.iterations):
                rollout_timer = PhaseTimer()
                with rollout_timer.phase("rollout"):
                    batch, _ = trainer.collect()
                start = _state(trainer)
                order = LABELS if it % 2 == 0 else LABELS[::-1]
                for position, label in enumerate(order):
                    if position:
                        _restore(trainer, start)
                    trainer.config.aem.enabled = label == "GRPO+AEM"
                    timer = PhaseTimer()
                    timer.seconds["rollout"] = rollout_timer.seconds["rollout"]
                    trainer.learn(batch.keep(*ROLLOUT_FIELDS), timer)
                    record = timer.as_metrics()
                    for phase in PHASES:
                        times[label][phase].append(record.get(f"time/{phase}", 0.0))
        finally:
            trainer.close()
    medians = {
        label: {phase: statistics.median(values) for phase, values in phases.items()}
        for label, phases in times.items()
    }
    print(f"median seconds per iteration over {args.iterations} iterations (same batches)\n")
    print("| phase | " + " | ".join(LABELS) + " |")
    print("|---|" + "---|" * len(LABELS))
    for phase in PHASES:
        print(f"| {phase} | " + " | ".join(f"{medians[k][phase]:.3f}" for k in LABELS) + " |")
    totals = zip(times["GRPO+AEM"]["total"], times["GRPO"]["total"], strict=True)
    ratios = [with_aem / without for with_aem, without in totals]
    share = medians["GRPO+AEM"]["aem"] / medians["GRPO+AEM"]["total"]
    print(
        f"\nGRPO+AEM / GRPO iteration time: median of per-iteration ratios "
        f"{statistics.median(ratios):.3f}x (range {min(ratios):.3f}-{max(ratios):.3f}); "
        f"AEM phase share: {share:.2%}"
    )


if __name__ == "__main__":
    main()
