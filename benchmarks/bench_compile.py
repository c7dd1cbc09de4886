"""Eager vs ``torch.compile``d model bodies (``model.compile``) on the default tiny policy.

    python benchmarks/bench_compile.py passes [--quick] [--repeats 5]
    python benchmarks/bench_compile.py trainer [--iterations 6] [key=value ...]

``passes``: the policy built as ``aem train`` builds it (warm start off: weights do not change the
time), right-padded rows of random tokens with a 24-token response; side by side in one process,
alternating which goes first: scoring (the ``score`` phase: length-sorted chunks without grad,
as the scoring and reference phases) and a training step (``update_policy``: length-sorted
micro-batches, forward + backward, AdamW steps, each repeat from the same weights and optimiser
state). Compilation is the
first compiled call minus the second, for each graph a run compiles: policy scoring, reference
scoring (its frozen parameters make another graph), update, and update on micro-batches of at
most 4,096 tokens (inductor's CPU code for long sums differs, so they get their own graph).

``trainer``: one trainer (defaults + overrides) rolls out a batch per iteration and learns from it
twice from the same weights, optimiser and generator states, with eager and with compiled bodies,
alternating the order (as ``bench_train.py``); iteration 0 of the compiled side compiles.

The inductor cache starts empty (a fresh directory) unless ``--warm-cache``. Times are wall
seconds; ``passes`` also gives the ratio of process CPU times (one torch thread), which other jobs
on the machine disturb less.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch._dynamo.utils

from aem.batch import ROLLOUT_FIELDS, SpanBatch
from aem.policy.model import frozen_reference, trainable_parameters
from aem.policy.runner import CriticRunner, PolicyRunner
from aem.trainer import phases
from aem.trainer.config import load_config
from aem.trainer.initial_policy import initial_policy
from aem.trainer.loop import Trainer
from aem.trainer.metrics import PhaseTimer
from bench_train import _restore, _state

WORKLOADS = ((1024, 100, 200), (512, 200, 400))  # rows, shortest and longest row (tokens)
QUICK = ((128, 100, 200), (64, 200, 400))
RESPONSE = 24
SMALL_ROWS = 16  # a micro-batch under 4,096 tokens
PHASES = ("scoring", "reference", "critic", "update")  # what the bodies run
LABELS = ("eager", "compiled")


def workload(rows: int, low: int, high: int, vocab: int, pad_id: int, seed: int) -> SpanBatch:
    """``rows`` right-padded rows of ``low``-``high`` random tokens, the last 24 the response."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(low, high + 1, (rows,), generator=generator).tolist()
    lengths = torch.randint(low, high + 1, (rows,), generator=generator).tolist()
    tokens = [torch.randint(2, vocab, (n,), generator=generator).tolist() for n in lengths]
    prompts, responses = [t[:-RESPONSE] for t in tokens], [t[-RESPONSE:] for t in tokens]
    return SpanBatch.from_turns(prompts, responses, range(rows), "turn", pad_id)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of one call (CPU: this process, all its threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def passes(args: argparse.Namespace, tmp: Path) -> None:
    """Scoring and training-step times, eager vs compiled, and the compilation time."""
    config = load_config(overrides=["warm_start.enabled=off", *args.overrides])
    model, tokenizer, _ = initial_policy(config, tmp / "init")
    vocab, pad_id = len(tokenizer), int(tokenizer.pad_token_id)
    algo, optim = config.algorithm.resolved(), config.optim
    reference = PolicyRunner(frozen_reference(model), compile=True)
    runners = {"eager": PolicyRunner(model), "compiled": PolicyRunner(model, compile=True)}
    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=optim.lr)
    start_state = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
    params = sum(p.numel() for p in model.parameters())
    print(f"tiny policy: {params:,} parameters, vocab {vocab}, {torch.get_num_threads()} thread(s)")

    compile_seconds: dict[str, float] = {}
    results = []
    for index, (rows, low, high) in enumerate(QUICK if args.quick else WORKLOADS):
        batch = workload(rows, low, high, vocab, pad_id, seed=index)
        mask = batch.attention_mask

        def scoring(runner, batch=batch):
            phases.score(batch, runner)

        scoring(runners["eager"])
        old, span_mask = batch["old_log_probs"], batch.span_mask()
        advantages = torch.randn(old.shape[0], 1, generator=torch.Generator().manual_seed(index))
        batch["loss_mask"], batch["ref_log_probs"] = span_mask, old
        batch["advantages"] = advantages.expand_as(old) * span_mask

        def step(runner, batch=batch):
            model.load_state_dict(start_state[0])
            optimizer.load_state_dict(start_state[1])
            generator = torch.Generator().manual_seed(0)
            phases.update_policy(batch, runner, optimizer, algo, optim, generator)

        if index == 0:  # every graph compiles here; dynamic shapes serve the other workload
            small = batch.select(torch.arange(SMALL_ROWS))
            for name, fn in (
                ("policy scoring", lambda: scoring(runners["compiled"])),
                ("reference scoring", lambda: scoring(reference)),
                ("update", lambda: step(runners["compiled"])),
                (
                    "update, micro-batches <= 4,096 tokens",
                    lambda s=small: step(runners["compiled"], s),
                ),
            ):
                compile_seconds[name] = timed(fn)[0] - timed(fn)[0]
        times: dict[tuple[str, str], list[tuple[float, float]]] = {
            (kind, name): [] for kind in ("score", "step") for name in runners
        }
        for repeat in range(args.repeats):
            order = list(runners) if repeat % 2 == 0 else list(runners)[::-1]
            for name in order:
                times["score", name].append(timed(lambda name=name: scoring(runners[name])))
            for name in order:
                times["step", name].append(timed(lambda name=name: step(runners[name])))
        medians = {
            (kind, name, clock): statistics.median(t[clock] for t in values)
            for (kind, name), values in times.items()
            for clock in (0, 1)
        }
        results.append(((rows, low, high, int(mask.sum())), medians))

    print(f"\nmedians over {args.repeats} repeats (alternating order), wall seconds\n")
    print("| rows x tokens | tokens | pass | eager | compiled | speed-up | speed-up (CPU time) |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for (rows, low, high, tokens), medians in results:
        for kind, label in (("score", "scoring (no grad)"), ("step", "training step")):
            eager, compiled = medians[kind, "eager", 0], medians[kind, "compiled", 0]
            cpu = medians[kind, "eager", 1] / medians[kind, "compiled", 1]
            print(
                f"| {rows} x {low}-{high} | {tokens:,} | {label} | {eager:.2f} | "
                f"{compiled:.2f} | {eager / compiled:.2f}x | {cpu:.2f}x |"
            )
    print("\ncompilation, wall seconds (first compiled call - second):")
    for name, seconds in compile_seconds.items():
        print(f"  {name}: {seconds:.1f}")
    total = sum(compile_seconds.values())
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    print(f"  total: {total:.1f} ({graphs} graphs)")
    medians = results[0][1]
    saved = 2 * (medians["score", "eager", 0] - medians["score", "compiled", 0]) + (
        medians["step", "eager", 0] - medians["step", "compiled", 0]
    )
    verdict = f"repaid after {total / saved:.0f} iterations" if saved > 0 else "never repaid"
    print(
        f"\nan iteration of the first workload's size (scoring + reference + update) saves "
        f"{saved:.2f} s: the compilation is {verdict}"
    )


def trainer_iterations(args: argparse.Namespace, tmp: Path) -> None:
    """The trainer's phases on its own batches, eager vs compiled bodies."""
    config = load_config(
        overrides=[f"trainer.iterations={args.iterations}", *args.overrides, "model.compile=true"]
    )
    trainer = Trainer(config, tmp / "run")
    trainer.setup()
    compiled = (trainer.policy, trainer.reference, trainer.critic)
    eager = (
        PolicyRunner(trainer.model, config.rollout.temperature, config.model.bf16),
        None
        if trainer.reference is None
        else PolicyRunner(trainer.reference.model, config.rollout.temperature, config.model.bf16),
        None if trainer.critic is None else CriticRunner(trainer.critic.critic, config.model.bf16),
    )
    times: dict[str, list[dict[str, float]]] = {label: [] for label in LABELS}
    rows = []
    try:
        for it in range(args.iterations):
            batch, _ = trainer.collect()
            rows.append(batch.num_rows)
            start = _state(trainer)
            for position, label in enumerate(LABELS if it % 2 == 0 else LABELS[::-1]):
                if position:
                    _restore(trainer, start)
                runners = compiled if label == "compiled" else eager
                trainer.policy, trainer.reference, trainer.critic = runners
                timer = PhaseTimer()
                trainer.learn(batch.keep(*ROLLOUT_FIELDS), timer)
                times[label].append({p: timer.seconds[p] for p in PHASES if p in timer.seconds})
    finally:
        trainer.close()
    print(f"\n{args.iterations} iterations, {statistics.median(rows):.0f} rows (median)\n")
    print("| phase | eager, iteration 0 | compiled, iteration 0 | eager | compiled | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for phase in (*(p for p in PHASES if p in times["eager"][0]), "total"):

        def seconds(label: str, it: int, phase: str = phase) -> float:
            record = times[label][it]
            return sum(record.values()) if phase == "total" else record[phase]

        later = range(1, args.iterations)
        eager = statistics.median(seconds("eager", it) for it in later)
        compiled_median = statistics.median(seconds("compiled", it) for it in later)
        print(
            f"| {phase} | {seconds('eager', 0):.2f} | {seconds('compiled', 0):.2f} | {eager:.2f} "
            f"| {compiled_median:.2f} | {eager / compiled_median:.2f}x |"
        )
    print("\n(wall seconds; medians over iterations 1 and later; total: the phases above)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("passes", "trainer"))
    parser.add_argument("--repeats", type=int, default=5, help="passes: repeats per variant")
    parser.add_argument("--quick", action="store_true", help="passes: small workloads")
    parser.add_argument("--iterations", type=int, default=6, help="trainer: iterations (>= 2)")
    parser.add_argument("--threads", type=int, default=1, help="the trainer's default is 1")
    parser.add_argument("--warm-cache", action="store_true", help="keep the inductor cache")
    parser.add_argument("overrides", nargs="*", help="training config overrides")
    args = parser.parse_intermixed_args()
    if args.iterations < 2:
        raise ValueError(f"--iterations must be >= 2, got {args.iterations}")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.warm_cache:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "inductor")
        (passes if args.mode == "passes" else trainer_iterations)(args, Path(tmp))


if __name__ == "__main__":
    main()
