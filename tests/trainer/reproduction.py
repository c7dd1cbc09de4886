"""The trainer's reproduction cases: what ``fixtures/reproduction.json`` pins down, and the script
that records and replays it.

Record (from the repository root, on the code whose behaviour the fixture pins down)::

    PYTHONPATH=$PWD/src:$PWD/tests python tests/trainer/reproduction.py

Each case trains a tiny run for two iterations (``tests/tiny_config.py``) and keeps its
``metrics.jsonl`` without the wall-clock keys; ``test_reproduction.py`` replays every case and
compares. The runs play :class:`ValidStepHousehold`, whose returns differ between the
trajectories of a group, so every estimator gives non-zero advantages and DAPO's dynamic
sampling keeps (and refills) groups.

Recording and replaying run under :data:`PINNED_NUMERICS` (the script re-executes itself with
them): torch's own kernels without instruction-set dispatch, MKL in its conditional numerical
reproducibility mode and oneDNN capped at SSE4.1, one thread each. Without them the numbers
depend on the CPU: with torch and MKL dispatching to AVX2 instead of AVX-512 (same machine,
``ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2``) the last bits of the warm start
differ, sampling takes other tokens, and 15 of the 21 cases log other trajectories. Under the
pinned numerics the same runs give identical metrics whether MKL may use AVX2 or AVX-512, so the
fixture holds on any x86-64 CPU (measured 2026-12-04; the runs take about twice as long).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
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
OLD_RUN = FIXTURE.with_name("old_ppo_run")
"""A run of case ``ppo-turn-aem`` stopped after iteration 0 by the code before the redesign."""

PINNED_NUMERICS = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
"""Environment that makes the float results independent of the CPU (read when torch loads)."""


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


def pinned() -> bool:
    """True when this process runs under :data:`PINNED_NUMERICS`."""
    return all(os.environ.get(key) == value for key, value in PINNED_NUMERICS.items())


def replay(run_dir: Path) -> dict[str, Any]:
    """Every case trained again in ``run_dir``, and the stopped run of :data:`OLD_RUN` resumed:
    ``{"environment": ..., "cases": {name: records}, "resumed": records}``."""
    from aem.cli import main as aem_main

    replayed: dict[str, Any] = {"environment": environment(), "cases": {}}
    for name, overrides in cases().items():
        replayed["cases"][name] = run_case(overrides, run_dir / name)
    resumed = run_dir / "old_ppo_run"
    shutil.copytree(OLD_RUN, resumed)
    if aem_main(["train", "--resume", str(resumed)]) != 0:
        raise RuntimeError(f"resuming {resumed} failed")
    replayed["resumed"] = comparable(read_metrics(resumed))
    return replayed


def replay_pinned(out: Path) -> dict[str, Any]:
    """:func:`replay` in a fresh interpreter under the pinned numerics; its result."""
    env = {**os.environ, **PINNED_NUMERICS}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, _IMPORT_ROOTS), env.get("PYTHONPATH", "")])
    command = [sys.executable, __file__, "--replay", str(out)]
    subprocess.run(command, env=env, check=True, timeout=3600)
    return json.loads(out.read_text())


_IMPORT_ROOTS = (Path(__file__).parent, Path(__file__).parents[1])


def record_stopped_run(run_dir: Path) -> None:
    """Train case ``ppo-turn-aem`` in ``run_dir`` and stop it after iteration 0 (checkpointed, as
    on Ctrl-C): what :data:`OLD_RUN` holds."""
    config = load_config(overrides=[*BASE, f"output_dir={run_dir}", *cases()["ppo-turn-aem"]])
    trainer = Trainer(config, run_dir)

    def stop_after_first(iteration: int, record: dict[str, Any]) -> None:
        trainer.stop_requested = True

    trainer.train(progress=stop_after_first)


def main() -> None:
    """``reproduction.py``: record the fixture (and :data:`OLD_RUN`); ``reproduction.py --replay
    OUT``: write :func:`replay`'s result to ``OUT``. Either runs under the pinned numerics."""
    if not pinned():
        env = {**os.environ, **PINNED_NUMERICS}
        os.execve(sys.executable, [sys.executable, __file__, *sys.argv[1:]], env)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if sys.argv[1:2] == ["--replay"]:
            Path(sys.argv[2]).write_text(json.dumps(replay(Path(tmp))))
            return
        recorded: dict[str, Any] = {"environment": environment(), "base": list(BASE), "cases": {}}
        for name, overrides in cases().items():
            records = run_case(overrides, Path(tmp) / name)
            recorded["cases"][name] = {"overrides": overrides, "records": records}
            print(name, len(records), "records", flush=True)
        FIXTURE.parent.mkdir(exist_ok=True)
        FIXTURE.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
        record_stopped_run(Path(tmp) / "stopped")
        shutil.rmtree(OLD_RUN, ignore_errors=True)
        kept = ("config.yaml", "metrics.jsonl", "checkpoints", "init")
        OLD_RUN.mkdir()
        for name in kept:
            source = Path(tmp) / "stopped" / name
            copy = shutil.copytree if source.is_dir() else shutil.copy2
            copy(source, OLD_RUN / name)


if __name__ == "__main__":
    main()
