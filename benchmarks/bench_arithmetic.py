"""How close the policy's training pass comes to the core's own matrix-multiply rate.

Run: ``python benchmarks/bench_arithmetic.py [--rows R] [--tokens T] [--repeats N]`` (one thread).

Counts the floating-point operations of one forward + backward pass of the tiny Qwen2 of
``bench_vs_trl.py`` (hidden 96, 3 layers, its 8-word tokenizer) over ``R x T`` tokens with
``torch.utils.flop_counter``, times the pass, and sets the achieved rate beside plain ``torch.mm``
at the pass's own matrix shapes, in fp32 and in bf16. A trainer doing the same arithmetic on the
same shapes can be faster than another only by the gap between the two rates, or by doing less
arithmetic.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench_policy import timed_calls
from bench_vs_trl import tiny_policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=62)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = tiny_policy()
    vocab = model.config.vocab_size
    ids = torch.randint(5, vocab - 1, (args.rows, args.tokens), generator=torch.Generator())

    def train_pass() -> None:
        model.zero_grad(set_to_none=True)
        model(input_ids=ids).logits.float().logsumexp(-1).mean().backward()

    with FlopCounterMode(display=False) as counter:
        train_pass()
    flops = counter.get_total_flops()
    seconds = statistics.median(timed_calls(train_pass, args.repeats))
    tokens = args.rows * args.tokens
    print(f"tiny Qwen2 {sum(p.numel() for p in model.parameters()):,} parameters, vocab {vocab}")
    print(f"forward + backward over {args.rows} x {args.tokens} tokens: {flops / 1e9:.2f} GFLOP")
    print(f"  {seconds * 1e3:.0f} ms, {flops / seconds / 1e9:.1f} GFLOP/s\n")
    print("| torch.mm at the pass's shapes | fp32 GFLOP/s | bf16 GFLOP/s |\n|---|---:|---:|")
    for inner, outer in ((96, 256), (256, 96), (96, vocab)):
        left, right = torch.randn(tokens, inner), torch.randn(inner, outer)
        rates = []
        for dtype in (torch.float32, torch.bfloat16):
            a, b = left.to(dtype), right.to(dtype)
            seconds = statistics.median(timed_calls(lambda a=a, b=b: a @ b, 3 * args.repeats))
            rates.append(2 * tokens * inner * outer / seconds)
        print(f"| {tokens} x {inner} x {outer} | {rates[0] / 1e9:.1f} | {rates[1] / 1e9:.1f} |")


if __name__ == "__main__":
    main()
