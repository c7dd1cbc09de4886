"""The trainer's reproduction cases: what ``fixtures/reproduction.json`` pins down, and the script
that records it.

Record (from the repository root, on the code whose behaviour the fixture pins down)::

    PYTHONPATH=$PWD/src:$PWD/tests python tests/trainer/reproduction.py

Each case trains a tiny run for two iterations (``tests/tiny_config.py``) and keeps its
``metrics.jsonl`` without the wall-clock keys; ``test_reproduction.py`` retrains every case and
compares. The runs play :class:`ValidStepHousehold`, whose returns differ between the
trajectories of a group, so every estimator gives non-zero advantages and DAPO's dynamic
sampling keeps (and refills) groups. Results depend on the torch and transformers versions and on
the CPU's instruction set (recorded under ``"environment"``).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import transformers

from aem.envs import register, spec
from aem.envs.household import HouseholdEnv
from aem.trainer.config import load_config
from aem.trainer.loop import Trainer
from aem.trainer.metrics import read_metrics
from tiny_config import TINY

FIXTURE = Path(__file__).with_name("fixtures") / "reproduction.json"


class ValidStepHousehold(HouseholdEnv):
    """The household environment plus a reward of 0.5 for every action the engine carries out."""

    def step(self, action: str):  # type: ignore[no-untyped-def]
        observation, reward, terminated, truncated, info = super().step(action)
        return observation, reward + 0.5 * bool(info["valid"]), terminated, truncated, info


ENV = "valid-step-household"
register(ENV, ValidStepHousehold, observation_expert=spec("household").observation_expert)

BASE = (
    *TINY,
    f"env.name={ENV}",
    "env.eval_split=valid_seen",
    "env.kwargs={scene_config: {receptacle_scale: 0.25, distractors: [1, 3]}}",
    "env.invalid_penalty=0.1",
    "warm_start.steps=80",  # enough cloning for well-formed, often valid actions
    "warm_start.lr=1e-2",
    "rollout.max_response_tokens=16",
    "eval.tasks=2",
    "trainer.threads=1",
    "optim.epochs=2",  # the shuffle generator is drawn from more than once
    "optim.mini_batch_rows=5",  # several mini-batches per epoch
    "optim.micro_batch_tokens=400",  # several micro-batches per mini-batch
)
"""What every case shares: the tests' tiny run, with the update split into epochs, mini-batches
and micro-batches so that every loop of the update runs."""

TIMING_PREFIXES = ("time/", "throughput/tokens_per_s", "warm_start/seconds")
"""Wall-clock keys: they differ between any two runs and are left out."""


def cases() -> dict[str, list[str]]:
    """Case name -> overrides: 4 presets x 2 layouts x AEM on/off, then Analysis A, GSPO, RLOO
    with an entropy bonus, and the plain household environment with its default arguments."""
    out = {}
    for preset in ("grpo", "dapo", "ppo", "gigpo"):
        for layout in ("turn", "trajectory"):
            for aem in (True, False):
                out[f"{preset}-{layout}-{'aem' if aem else 'base'}"] = [
                    f"algorithm={preset}",
                    f"rollout.layout={layout}",
                    f"aem.enabled={str(aem).lower()}",
                ]
    out["grpo-turn-aem-mask"] = ["algorithm=grpo", "analysis.mask_quadrant=decreasing"]
    out["gspo-trajectory-aem"] = ["algorithm=gspo", "rollout.layout=trajectory"]
    out["rloo-turn-aem-entropy"] = ["algorithm=rloo", "algorithm.entropy_coef=0.01"]
    defaults = ["env.name=household", "env.eval_split=null", "env.kwargs=null"]
    out["grpo-household-defaults"] = defaults
    return out


def comparable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` without the wall-clock keys."""
    return [{k: v for k, v in r.items() if not k.startswith(TIMING_PREFIXES)} for r in records]


def run_case(overrides: list[str], run_dir: Path) -> list[dict[str, Any]]:
    """Train one case in ``run_dir``; its comparable metrics records."""
    config = load_config(overrides=[*BASE, f"output_dir={run_dir}", *overrides])
    Trainer(config, run_dir).train()
    return comparable(read_metrics(run_dir))


def environment() -> dict[str, str]:
    """What the recorded numbers depend on besides the code."""
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def main() -> None:
    torch.set_num_threads(1)
    names = sys.argv[1:] or list(cases())
    recorded: dict[str, Any] = {"environment": environment(), "base": list(BASE), "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            overrides = cases()[name]
            records = run_case(overrides, Path(tmp) / name)
            recorded["cases"][name] = {"overrides": overrides, "records": records}
            print(name, len(records), "records", flush=True)
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
