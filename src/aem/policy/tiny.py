"""The embedded default policy: a tiny Qwen2 causal LM (about 1M parameters with the default
sizes and a 2048-token vocabulary), randomly initialised from a seed."""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM

from aem.checks import require_int_at_least


def tiny_config(
    tokenizer: PreTrainedTokenizerBase,
    hidden_size: int = 128,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 384,
    max_positions: int = 2048,
) -> Qwen2Config:
    """A Qwen2 config sized for ``tokenizer``: tied embeddings, SDPA attention, no sliding
    window."""
    sizes = {
        "hidden_size": hidden_size,
        "layers": layers,
        "heads": heads,
        "kv_heads": kv_heads,
        "intermediate": intermediate,
        "max_positions": max_positions,
    }
    for name, value in sizes.items():
        require_int_at_least(name, value, 1)
    if hidden_size % heads != 0:
        raise ValueError(f"hidden_size must be divisible by heads, got {hidden_size} and {heads}")
    if heads % kv_heads != 0:
        raise ValueError(f"heads must be divisible by kv_heads, got {heads} and {kv_heads}")
    if (hidden_size // heads) % 2 != 0:
        raise ValueError(
            f"head size hidden_size/heads must be even (RoPE), got {hidden_size // heads}"
        )
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError("tokenizer must define pad_token_id and eos_token_id")
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=intermediate,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        use_sliding_window=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        attn_implementation="sdpa",
    )


def build_tiny_model(
    tokenizer: PreTrainedTokenizerBase,
    hidden_size: int = 128,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 384,
    max_positions: int = 2048,
    seed: int = 0,
) -> Qwen2ForCausalLM:
    """A freshly initialised fp32 ``Qwen2ForCausalLM``; the same ``seed`` gives the same weights.

    The global torch RNG is left as it was (initialisation runs under a forked RNG).
    """
    config = tiny_config(
        tokenizer, hidden_size, layers, heads, kv_heads, intermediate, max_positions
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    return model.eval()
