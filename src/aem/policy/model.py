"""Load and save any Hugging Face causal LM with its tokenizer as a policy; its KL reference."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from aem.policy.lora import adapter_free_view, has_lora, merged_copy

PathLike = str | os.PathLike[str]


def load_policy(
    path_or_model: PathLike | PreTrainedModel,
    tokenizer: PathLike | PreTrainedTokenizerBase | None = None,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Return ``(model, tokenizer)`` ready for :func:`aem.policy.generate` and
    :func:`aem.policy.score`.

    ``path_or_model`` is a directory (or hub id already in the local cache) holding any
    ``AutoModelForCausalLM``, or a model instance. ``tokenizer`` defaults to the one stored next
    to the model. A tokenizer without a pad token gets ``pad = eos`` (as for most pretrained LMs);
    padding is set to the left, which the sampler relies on. The model is put in eval mode.
    """
    if isinstance(path_or_model, PreTrainedModel):
        model = path_or_model
    elif isinstance(path_or_model, str | os.PathLike):
        model = AutoModelForCausalLM.from_pretrained(
            path_or_model, dtype=dtype, attn_implementation=attn_implementation
        )
    else:
        raise ValueError(
            f"path_or_model must be a path or a PreTrainedModel, got {type(path_or_model).__name__}"
        )

    if tokenizer is None:
        source = model.name_or_path
        if not source:
            raise ValueError("tokenizer is required when the model was not loaded from a path")
        tokenizer = AutoTokenizer.from_pretrained(source)
    elif isinstance(tokenizer, str | os.PathLike):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    elif not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise ValueError(f"tokenizer must be a path or a tokenizer, got {type(tokenizer).__name__}")

    if tokenizer.eos_token_id is None:
        raise ValueError("tokenizer must define an eos token")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if len(tokenizer) > model.get_output_embeddings().weight.shape[0]:
        raise ValueError(
            f"tokenizer has {len(tokenizer)} tokens but the model's vocabulary has "
            f"{model.get_output_embeddings().weight.shape[0]}"
        )
    return model.eval(), tokenizer


def save_policy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: PathLike) -> Path:
    """Save model (safetensors) and tokenizer into one directory that :func:`load_policy` reads.

    A LoRA model (:func:`aem.policy.lora.apply_lora`) is saved with its adapters merged into the
    base weights, as a plain model of its architecture; ``model`` itself is left untouched.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    (merged_copy(model) if has_lora(model) else model).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def frozen_reference(model: PreTrainedModel) -> PreTrainedModel:
    """The KL reference policy: a frozen eval-mode copy of ``model`` as it is now. For a LoRA
    model it is the base model (adapters disabled) sharing the frozen base weights, which equals
    the starting policy because LoRA starts with ``B = 0``."""
    if has_lora(model):
        return adapter_free_view(model)
    return copy.deepcopy(model).eval().requires_grad_(False)


def trainable_parameters(module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """``(name, parameter)`` of every parameter of ``module`` that requires grad, in module order:
    what an optimiser should hold (under LoRA only the adapters). Named, so the optimiser's
    state dict records which parameter each state belongs to (checked on resume)."""
    return [(name, param) for name, param in module.named_parameters() if param.requires_grad]
