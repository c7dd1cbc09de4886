"""The run's starting policy: the embedded tiny model (tokenizer built offline + warm start), a
registered pretrained model (``smollm2-135m``) or any Hugging Face causal LM by path, optionally
with LoRA adapters. Saved under ``RUN_DIR/init`` (the base weights, plus ``aem_lora.json`` when
LoRA is on) so a resumed run and the KL reference start from exactly the same weights."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from aem.agent import PromptConfig
from aem.envs import spec as env_spec
from aem.policy.lora import LoraSpec, apply_lora
from aem.policy.model import load_policy, save_policy
from aem.policy.pretrained import PRETRAINED, load_pretrained
from aem.policy.runner import PolicyRunner
from aem.policy.tiny import build_tiny_model
from aem.policy.tokenizer import build_tokenizer
from aem.trainer.config import TrainConfig
from aem.trainer.warmstart import (
    budget_overrun,
    corpus_texts,
    expert_dataset,
    expert_trajectories,
    finetune_examples,
    supervised_finetune,
)

logger = logging.getLogger(__name__)

LORA_FILE = "aem_lora.json"
"""The run's :class:`LoraSpec` next to the base weights in ``RUN_DIR/init`` (not
``adapter_config.json``, which transformers would try to load as a peft adapter)."""


def initial_policy(
    cfg: TrainConfig, init_dir: Path
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, float]]:
    """Build (or load) the policy, warm-start it when configured, save it to ``init_dir``."""
    fresh = cfg.model.path == "tiny"
    if fresh:
        tiny = cfg.model.tiny
        texts = corpus_texts(cfg.env.name, tiny.tokenizer_episodes, cfg.seed)
        tokenizer = build_tokenizer(texts, vocab_size=tiny.vocab_size)
        model = build_tiny_model(
            tokenizer,
            hidden_size=tiny.hidden_size,
            layers=tiny.layers,
            heads=tiny.heads,
            kv_heads=tiny.kv_heads,
            intermediate=tiny.intermediate_size,
            max_positions=tiny.max_positions,
            seed=cfg.seed,
        )
        model, tokenizer = load_policy(model, tokenizer)
    elif cfg.model.path in PRETRAINED:
        model, tokenizer = load_policy(*load_pretrained(cfg.model.path))
    else:
        model, tokenizer = load_policy(cfg.model.path)
    metrics: dict[str, float] = {}
    warm = cfg.warm_start
    if warm.steps > 0 and (warm.enabled == "on" or (warm.enabled == "auto" and fresh)):
        start = time.perf_counter()
        labels = warm.labels
        if labels == "auto":
            labels = "expert" if env_spec(cfg.env.name).observation_expert else "taken"
        play = dict(
            env_name=cfg.env.name,
            num_episodes=warm.episodes,
            noise=warm.noise,
            seed=cfg.seed,
            prompt=PromptConfig(
                style=cfg.rollout.prompt_style, history_length=cfg.rollout.history_length
            ),
            max_turns=cfg.env.max_turns,
            env_kwargs=cfg.env.env_kwargs(),
            labels=labels,
            invalid_noise=warm.invalid_noise if labels == "expert" else 0.0,
        )
        train = dict(
            steps=warm.steps,
            batch_size=warm.batch_size,
            lr=warm.lr,
            seed=cfg.seed,
            cosine=warm.cosine,
        )
        policy = PolicyRunner(model, bf16=cfg.model.bf16)
        if cfg.rollout.layout == "trajectory":  # whole episodes, as the rollout will feed them
            examples = expert_trajectories(
                **play,
                tokenizer=tokenizer,
                max_prompt_tokens=cfg.rollout.max_prompt_tokens,
                max_sequence_tokens=cfg.rollout.max_sequence_tokens
                or getattr(model.config, "max_position_embeddings", None),
            )
            pad_id = int(tokenizer.pad_token_id)
            lengths = [len(t[1]) for example in examples for t in example if t[2]]
            losses = finetune_examples(policy, examples, pad_id, **train)
        else:
            examples = expert_dataset(**play)
            lengths = [
                len(tokenizer(r, add_special_tokens=False)["input_ids"]) for _, r in examples
            ]
            losses = supervised_finetune(
                policy,
                tokenizer,
                examples,
                max_prompt_tokens=cfg.rollout.max_prompt_tokens,
                **train,
            )
        model.eval()
        overrun = budget_overrun(
            lengths, cfg.rollout.max_response_tokens, "rollout.max_response_tokens"
        )
        if overrun:
            logger.warning(overrun)
        metrics = {
            "warm_start/examples": float(len(examples)),
            "warm_start/steps": float(len(losses)),
            "warm_start/loss_first": losses[0] if losses else float("nan"),
            "warm_start/loss_last": losses[-1] if losses else float("nan"),
            "warm_start/seconds": time.perf_counter() - start,
        }
    tmp = init_dir.with_name(init_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_policy(model, tokenizer, tmp)
    lora = cfg.model.lora
    if lora.enabled:
        spec = LoraSpec(
            rank=lora.rank,
            alpha=lora.alpha,
            dropout=lora.dropout,
            target_modules=lora.target_modules,
            seed=cfg.seed,
        )
        (tmp / LORA_FILE).write_text(json.dumps(dataclasses.asdict(spec)))
        model = apply_lora(model, spec)
    shutil.rmtree(init_dir, ignore_errors=True)
    tmp.rename(init_dir)
    return model, tokenizer, metrics


def load_initial_policy(init_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The policy :func:`initial_policy` saved: base weights, plus the same freshly initialised
    LoRA adapters when it had them (a checkpoint then restores the trained adapters)."""
    model, tokenizer = load_policy(init_dir)
    lora_file = init_dir / LORA_FILE
    if lora_file.exists():
        model = apply_lora(model, LoraSpec(**json.loads(lora_file.read_text())))
    return model, tokenizer
