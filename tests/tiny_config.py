"""The smallest training config the end-to-end tests share (seconds per run on one thread), and
the small household policy the rollout tests share."""

from __future__ import annotations

from typing import Any

from aem.agent import PromptConfig
from aem.policy import build_tiny_model, build_tokenizer
from aem.trainer.warmstart import corpus_texts

TINY = (
    "model.tiny.vocab_size=320",
    "model.tiny.hidden_size=32",
    "model.tiny.layers=1",
    "model.tiny.heads=2",
    "model.tiny.kv_heads=1",
    "model.tiny.intermediate_size=64",
    "model.tiny.tokenizer_episodes=20",
    "rollout.tasks=2",
    "rollout.group_size=2",
    "rollout.max_response_tokens=8",
    "rollout.max_prompt_tokens=96",
    "env.max_turns=3",
    "warm_start.episodes=8",
    "warm_start.steps=2",
    "warm_start.batch_size=8",
    "trainer.iterations=2",
)


def household_policy(prompt: PromptConfig) -> tuple[Any, Any]:
    """A 2-layer Qwen2 and a 512-token BPE fitted to 8 household episodes in ``prompt``'s style."""
    tokenizer = build_tokenizer(corpus_texts("household", 8, seed=0, prompt=prompt), 512)
    model = build_tiny_model(
        tokenizer, hidden_size=64, layers=2, heads=4, kv_heads=2, intermediate=128, seed=0
    )
    return model, tokenizer
