"""Throughput of aem's trainer against TRL's ``GRPOTrainer``, side by side in one process.

Run: ``python benchmarks/bench_vs_trl.py [--steps N] [--tasks T] [--group G] [--tokens L]
[--hidden H] [--layers K]``.

Both trainers get the same tiny Qwen2 and tokenizer (built here, saved once, loaded by both), the
same single-turn prompts (the texts aem's rollout builds for a one-turn registered environment),
the same group size, response budget, learning rate, fp32 on the CPU, one gradient step per
batch (one epoch, one mini-batch), no KL term (so neither runs a reference model) and GRPO's
seq-mean-token-mean loss. Steps alternate between the two trainers so machine noise hits both
alike; the medians over ``--steps`` steps (after one warm-up step each) are printed per phase
and for the whole step as samples (completions) per second, with aem / TRL ratios.

Phases. aem: rollout (generation and the environment), scoring (the old-log-prob pass that also
gives AEM its token entropy), advantage + AEM, update. TRL: generation (``_generate``), scoring
(the rest of ``_generate_and_score_completions``: rewards, advantages; with ``num_iterations=1``
TRL skips the old-log-prob pass), update (the rest of the training step). With ``--scoring
fused`` (the default) aem does the same: ``optim.fused_scoring`` takes the old log-probs and
AEM's entropy from the update's own forward, which then shows as aem's "scoring" (its "update"
is the backward and the step); ``--scoring separate`` runs aem's separate scoring pass. What
differs, on purpose: responses end at the model's stop token (aem: ``</action>``, TRL: EOS), so
the mean response lengths are printed and samples/s is also given as tokens/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import aem.envs
from aem.envs.base import TextEnv
from aem.policy import build_tiny_model, build_tokenizer
from aem.trainer.config import load_config
from aem.trainer.loop import Trainer

ENV_NAME = "bench-single-turn"
TASK_WORDS = ("apple", "mug", "knife", "towel", "lamp", "book", "plate", "pen")


class SingleTurnEnv(TextEnv):
    """One prompt, one response: reward 1 when the response names the task's object."""

    def __init__(self, split: str = "train", max_steps: int = 1, success_reward: float = 1.0):
        self.success_reward = success_reward
        self.word = TASK_WORDS[0]

    def _info(self, won: bool) -> dict[str, Any]:
        task = f"name the {self.word}"
        return {"admissible_commands": [], "won": won, "task_type": "name", "task": task}

    def reset(self, seed: int | None = None, options: dict | None = None):
        self.word = TASK_WORDS[(seed or 0) % len(TASK_WORDS)]
        return f"You see a {self.word} on the table.", self._info(False)

    def step(self, action: str):
        won = self.word in action
        return "done", self.success_reward if won else 0.0, True, False, self._info(won)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def tiny_policy(hidden: int = 96, layers: int = 3, seed: int = 0) -> tuple[Any, Any]:
    """``(model, tokenizer)``: the main job's tiny Qwen2 shape (``model.tiny`` defaults) unless
    told otherwise, over a tokenizer of the bench's prompts."""
    corpus = [f"Task: name the {w}\nObs 1: You see a {w} on the table.\n" for w in TASK_WORDS]
    tokenizer = build_tokenizer([*corpus, "<action>take the apple</action>"] * 8, 400)
    model = build_tiny_model(
        tokenizer,
        hidden_size=hidden,
        layers=layers,
        heads=4,
        kv_heads=2,
        intermediate=hidden * 8 // 3,
        seed=seed,
    )
    return model, tokenizer


def build_model(directory: Path, args: argparse.Namespace) -> None:
    model, tokenizer = tiny_policy(args.hidden, args.layers, args.seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def aem_trainer(model_dir: Path, run_dir: Path, args: argparse.Namespace) -> Trainer:
    config = load_config(
        overrides=[
            f"env.name={ENV_NAME}",
            "env.max_turns=1",
            f"model.path={model_dir}",
            "warm_start.enabled=off",
            "algorithm=grpo",
            "algorithm.kl_coef=0",
            "algorithm.agg_mode=seq-mean-token-mean",
            f"rollout.tasks={args.tasks}",
            f"rollout.group_size={args.group}",
            f"rollout.max_response_tokens={args.tokens}",
            "rollout.temperature=1.0",
            f"optim.lr={args.lr}",
            "optim.epochs=1",
            f"optim.fused_scoring={str(args.scoring == 'fused').lower()}",
            f"optim.mini_batch_rows={args.tasks * args.group}",
            "eval.every=0",
            "trainer.threads=1",
            f"seed={args.seed}",
            f"output_dir={run_dir}",
        ]
    )
    trainer = Trainer(config, run_dir)
    trainer.setup()
    return trainer


def trl_trainer(model_dir: Path, out: Path, prompts: list[str], args: argparse.Namespace) -> Any:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")

    def reward(completions: list[str], word: list[str], **kwargs: Any) -> list[float]:
        return [float(w in text) for text, w in zip(completions, word, strict=True)]

    batch = args.tasks * args.group
    config = GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=batch,
        num_generations=args.group,
        max_completion_length=args.tokens,
        temperature=1.0,
        learning_rate=args.lr,
        beta=0.0,
        loss_type="grpo",
        num_iterations=1,
        gradient_accumulation_steps=1,
        max_steps=args.steps + 1,
        logging_steps=10**6,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        gradient_checkpointing=False,
        seed=args.seed,
    )
    words = [next(w for w in TASK_WORDS if w in prompt) for prompt in prompts]
    data = Dataset.from_dict({"prompt": prompts, "word": words})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GRPOTrainer(
            model=model,
            reward_funcs=reward,
            args=config,
            train_dataset=data,
            processing_class=tokenizer,
        )


class TRLTimer:
    """Wraps TRL's generation and generate-and-score; :meth:`begin` / :meth:`end` bracket a
    whole optimiser step (called from a ``TrainerCallback``)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.phases: list[dict[str, float]] = []
        self.response_tokens: list[float] = []
        self._current: dict[str, float] = {}
        self._start = 0.0
        self._wrap("_generate", "generation")
        self._wrap("_generate_and_score_completions", "generate_and_score", self._lengths)

    def begin(self) -> None:
        self._current, self._start = {}, time.perf_counter()

    def end(self) -> None:
        self._current["step"] = time.perf_counter() - self._start
        self.phases.append(self._current)

    def _wrap(self, name: str, phase: str, after: Callable[[Any], None] | None = None) -> None:
        original = getattr(self.trainer, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = original(*args, **kwargs)
            self._current[phase] = self._current.get(phase, 0.0) + time.perf_counter() - start
            if after is not None:
                after(result)
            return result

        setattr(self.trainer, name, timed)

    def _lengths(self, output: dict[str, Any]) -> None:
        self.response_tokens.append(float(output["completion_mask"].sum(dim=1).float().mean()))


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    torch.set_num_threads(1)
    if ENV_NAME not in aem.envs.names():  # once per process
        aem.envs.register(ENV_NAME, SingleTurnEnv, eval_split="train")
    samples = args.tasks * args.group
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        build_model(model_dir, args)
        ours = aem_trainer(model_dir, Path(tmp) / "aem", args)
        prompts = ours.collect()[0]["prompt_text"][:: args.group]  # one per task of a batch
        prompts = prompts * (args.steps + 2)  # TRL draws tasks prompts per step from these
        theirs = trl_trainer(model_dir, Path(tmp) / "trl", prompts, args)
        timer = TRLTimer(theirs)
        our_records: list[dict[str, float]] = []

        def our_step(it: int) -> None:
            our_records.append(ours.iteration(it))

        # TRL runs its own loop; interleave by running our step inside its step callback.
        from transformers import TrainerCallback

        class Interleave(TrainerCallback):
            def on_step_begin(self, *unused: Any, **kwargs: Any) -> None:
                timer.begin()

            def on_step_end(self, *unused: Any, **kwargs: Any) -> None:
                timer.end()
                our_step(len(our_records))

        theirs.add_callback(Interleave())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs.train()
        ours.close()

    ours_steps = our_records[1:]
    theirs_steps = timer.phases[1:]
    our_phase = {
        "generation": [r["time/rollout"] for r in ours_steps],
        "scoring": [r["time/scoring"] for r in ours_steps],
        "update": [r["time/update"] + r["time/advantage"] + r["time/aem"] for r in ours_steps],
        "step": [r["time/total"] for r in ours_steps],
    }
    their_phase = {
        "generation": [p["generation"] for p in theirs_steps],
        "scoring": [p["generate_and_score"] - p["generation"] for p in theirs_steps],
        "update": [p["step"] - p["generate_and_score"] for p in theirs_steps],
        "step": [p["step"] for p in theirs_steps],
    }
    lengths = {
        "aem": statistics.fmean(r["rollout/response_tokens"] for r in ours_steps),
        "trl": statistics.fmean(timer.response_tokens[1:]),
    }
    return {
        "aem": {key: _median(values) for key, values in our_phase.items()},
        "trl": {key: _median(values) for key, values in their_phase.items()},
        "lengths": lengths,
        "samples": {"per_step": float(samples), "steps": float(len(ours_steps))},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per trainer")
    parser.add_argument("--tasks", type=int, default=8, help="prompts per step")
    parser.add_argument("--group", type=int, default=8, help="completions per prompt")
    parser.add_argument("--tokens", type=int, default=24, help="response budget")
    parser.add_argument("--hidden", type=int, default=96, help="model width (main job: 96)")
    parser.add_argument("--layers", type=int, default=3, help="model depth (main job: 3)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--scoring",
        choices=("fused", "separate"),
        default="fused",
        help="aem's old log-probs and entropy from the update's own forward (optim.fused_scoring,"
        " like TRL's num_iterations=1; aem's 'scoring' then holds that forward) or a separate pass",
    )
    args = parser.parse_args()
    result = run(args)
    samples = result["samples"]["per_step"]
    print(
        f"{int(samples)} completions per step ({args.tasks} prompts x {args.group}), budget "
        f"{args.tokens} tokens, {int(result['samples']['steps'])} timed steps each; mean "
        f"response tokens aem {result['lengths']['aem']:.1f}, TRL {result['lengths']['trl']:.1f}"
    )
    print(f"{'phase':<11} {'aem s':>8} {'TRL s':>8} {'aem samples/s':>14} {'TRL samples/s':>14} "
          f"{'aem/TRL':>8}")  # fmt: skip
    for phase in ("generation", "scoring", "update", "step"):
        ours, theirs = result["aem"][phase], result["trl"][phase]
        ratio = theirs / ours if ours > 0 else float("nan")
        print(
            f"{phase:<11} {ours:8.3f} {theirs:8.3f} {samples / ours:14.1f} "
            f"{samples / theirs if theirs > 0 else float('inf'):14.1f} {ratio:8.2f}x"
        )
    tokens = {k: result["lengths"][k] * samples for k in ("aem", "trl")}
    print(
        f"whole step, response tokens/s: aem {tokens['aem'] / result['aem']['step']:.0f}, "
        f"TRL {tokens['trl'] / result['trl']['step']:.0f}"
    )


if __name__ == "__main__":
    main()
