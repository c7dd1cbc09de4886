"""Throughput of the embedded tiny policy on this CPU: training (forward + backward through the
scoring pass), scoring, and batched sampling, in fp32 and under bf16 autocast.

    .venv/bin/python benchmarks/bench_policy.py [--quick] [--threads 2]

Prints a Markdown table (best of several repeats; tokens/s counts every position of the batch;
the training loss covers the response half).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import torch

from aem.policy import SamplingConfig, build_tiny_model, build_tokenizer, generate, score

WORDS = (
    "you are in the middle of a room looking quickly around see cabinet countertop drawer "
    "fridge garbagecan microwave shelf sinkbasin stoveburner toaster apple bread butterknife "
    "cup dishsponge egg fork kettle knife ladle lettuce mug pan peppershaker plate pot potato "
    "saltshaker soapbottle spatula spoon tomato take put open close go to heat cool clean "
    "examine inventory look use from in on with nothing happens arrive closed"
).split()


def corpus(lines: int, seed: int) -> list[str]:
    """Agent-like lines over the word list plus random made-up names (so BPE fills 2048)."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "zu", "pe", "gri", "sto"]
    words = [*WORDS, *("".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(600))]
    out = []
    for _ in range(lines):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(8, 30)))
        verb, obj = rng.choice(WORDS), rng.choice(words)
        out.append(
            f"{text} {rng.randint(1, 20)}.\n<think>{text[:40]}</think>"
            f"<action>{verb} {obj} {rng.randint(1, 9)}</action>"
        )
    return out


def timed_calls(fn: Callable[[], object], repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Best of ``repeats`` timed calls after one warm-up (the machine is shared: the minimum is
    the least disturbed measurement, as in ``timeit``)."""
    return min(timed_calls(fn, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small batches, few repeats")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tokenizer = build_tokenizer(corpus(3000, seed=0), vocab_size=2048)
    model = build_tiny_model(tokenizer, seed=0)
    vocab, params = len(tokenizer), sum(p.numel() for p in model.parameters())
    repeats = 2 if args.quick else 5
    batch, length = (8, 256) if args.quick else (16, 512)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(2, vocab, (batch, length), generator=generator)
    attention = torch.ones_like(ids)
    response = torch.zeros_like(ids)
    response[:, length // 2 :] = 1
    rows: list[tuple[str, str, str]] = []

    for bf16 in (False, True):
        precision = "bf16 autocast" if bf16 else "fp32"

        def train_step(bf16: bool = bf16) -> None:
            model.zero_grad(set_to_none=True)
            out = score(model, ids, attention, response, bf16=bf16)
            mask = response.float()
            loss = -(out.log_probs * mask).sum() / mask.sum() - 0.01 * out.entropy.sum()
            loss.backward()

        def score_step(bf16: bool = bf16) -> None:
            with torch.no_grad():
                score(model, ids, attention, response, bf16=bf16)

        seconds = best_seconds(train_step, repeats)
        rows.append(
            (f"train fwd+bwd {batch}x{length}", precision, f"{batch * length / seconds:,.0f} tok/s")
        )
        seconds = best_seconds(score_step, repeats)
        rows.append(
            (
                f"score (no grad) {batch}x{length}",
                precision,
                f"{batch * length / seconds:,.0f} tok/s",
            )
        )

    prompts = torch.randint(2, vocab, (128, 128), generator=generator).tolist()
    for bf16 in (False, True):
        config = SamplingConfig(max_new_tokens=16, temperature=1.0, stop_at_eos=False, bf16=bf16)
        seconds = best_seconds(
            lambda config=config: generate(
                model, tokenizer, prompts, config, torch.Generator().manual_seed(1)
            ),
            1 if args.quick else 3,
        )
        rows.append(
            (
                "sample 128 prompts x 16 new (128-token ctx)",
                "bf16 autocast" if bf16 else "fp32",
                f"{seconds:.2f} s",
            )
        )

    print(
        f"tiny Qwen2: {params / 1e6:.2f}M params, vocab {vocab}, "
        f"torch threads {torch.get_num_threads()}\n"
    )
    print("| measurement | precision | result |")
    print("| --- | --- | --- |")
    for name, precision, result in rows:
        print(f"| {name} | {precision} | {result} |")


if __name__ == "__main__":
    main()
