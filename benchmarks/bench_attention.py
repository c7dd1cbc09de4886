"""Two attention-side speed-ups of the trainer, each against what it replaced, in one process.

Run: ``python benchmarks/bench_attention.py [--repeats N]`` (one thread, the default tiny model
shape: hidden 96, 3 layers, 4 heads, 2 KV heads).

1. Multi-turn decoding (:class:`aem.policy.session.DecodingSession`, 128 rows, 8 turns of 100 new
   tokens + 24 sampled ones after a 180-token first prompt) with transformers' ``DynamicLayer``
   cache (concatenates the whole cache per token) vs :class:`aem.policy.sampling.GrowingLayer`.
2. A no-grad forward of the model body over right-padded rows with the attention mask vs without
   it (:func:`aem.policy.rows.body_inputs` drops it: plain causal attention).

Prints the median seconds of each variant and their ratio; variants alternate within a repeat.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import DynamicCache

import aem.policy.session as session_module
from aem.policy.sampling import SamplingConfig, growing_cache
from aem.policy.tiny import build_tiny_model
from aem.policy.tokenizer import build_tokenizer
from aem.trainer.warmstart import corpus_texts


def decode_turns(model, tokenizer, cache_factory, rows: int = 128, turns: int = 8) -> float:
    session_module.growing_cache = cache_factory
    config = SamplingConfig(max_new_tokens=24, temperature=1.0, stop_at_eos=False)
    session = session_module.DecodingSession(
        model, tokenizer, config, torch.Generator().manual_seed(0)
    )
    start = time.perf_counter()
    for turn in range(turns):
        new_tokens = [[7] * (180 if turn == 0 else 100) for _ in range(rows)]
        session.step(list(range(rows)), new_tokens)
    return time.perf_counter() - start


@torch.no_grad()
def body_forward(model, rows: int, length: int, masked: bool, seed: int = 0) -> float:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, model.config.vocab_size - 1, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, -length // 3 :] = 0  # one shorter row: right padding
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    start = time.perf_counter()
    model.model(input_ids=ids, attention_mask=mask if masked else None, position_ids=positions)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = build_tokenizer(corpus_texts("household", 10, seed=0), 1024)
    model = build_tiny_model(
        tokenizer, hidden_size=96, layers=3, heads=4, kv_heads=2, intermediate=256
    ).eval()

    def dynamic(m):
        return DynamicCache(config=m.config)

    times = {"DynamicLayer": [], "GrowingLayer": []}
    for _ in range(args.repeats):
        times["DynamicLayer"].append(decode_turns(model, tokenizer, dynamic))
        times["GrowingLayer"].append(decode_turns(model, tokenizer, growing_cache))
    print("| decoding, 128 rows x 8 turns | median s |\n|---|---:|")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"| {name} | {value:.2f} |")
    print(f"\nGrowingLayer speed-up: {medians['DynamicLayer'] / medians['GrowingLayer']:.2f}x\n")

    print("| body forward, right-padded rows | with mask (s) | without (s) | speed-up |")
    print("|---|---:|---:|---:|")
    for rows, length in ((64, 200), (64, 1400)):
        masked, plain = [], []
        for repeat in range(args.repeats):
            masked.append(body_forward(model, rows, length, True, repeat))
            plain.append(body_forward(model, rows, length, False, repeat))
        a, b = statistics.median(masked), statistics.median(plain)
        print(f"| {rows} x {length} | {a:.3f} | {b:.3f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
