"""LoRA adapters (via ``peft``) injected in place into a Hugging Face causal LM.

The model keeps its class, so the sampler, the scoring pass (``model.base_model`` + LM head) and
the update run unchanged; only the adapter matrices require grad. The KL reference is the same
network with the adapters switched off, sharing the frozen base weights (:func:`adapter_free_view`),
and a LoRA model saves as a plain model with the adapters merged (:func:`merged_copy`).
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from aem.checks import require_int_at_least, require_positive


@dataclass(frozen=True)
class LoraSpec:
    """``W x + (alpha / rank) * B A x`` on every module named in ``target_modules``
    (``"all-linear"``: every linear layer but the LM head; a list becomes a tuple). ``B``
    starts at zero, so the adapted model starts equal to the base; ``A`` is drawn from
    ``seed``."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = "all-linear"
    seed: int = 0

    def __post_init__(self) -> None:
        require_int_at_least("rank", self.rank, 1)
        require_positive("alpha", self.alpha)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        targets = self.target_modules
        if isinstance(targets, list):  # from a config file or JSON
            targets = tuple(targets)
            object.__setattr__(self, "target_modules", targets)
        if isinstance(targets, str) and targets != "all-linear":
            raise ValueError(
                f"target_modules must be 'all-linear' or a list of names, got {targets!r}"
            )
        if not isinstance(targets, str) and (
            not targets or not all(isinstance(t, str) and t for t in targets)
        ):
            raise ValueError(f"target_modules must be non-empty module names, got {targets!r}")


def lora_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """``(name, module)`` of every peft adapter layer in ``model``."""
    if "peft" not in sys.modules:  # no adapter can exist before peft is imported
        return []
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]


def has_lora(model: torch.nn.Module) -> bool:
    return bool(lora_layers(model))


def apply_lora(model: PreTrainedModel, spec: LoraSpec) -> PreTrainedModel:
    """Inject LoRA adapters into ``model`` in place (returned for chaining) and freeze every
    other parameter; peft raises ``ValueError`` when a target matches no module. ``A`` is
    initialised from ``spec.seed`` (the global RNG is left as it was), so applying the same spec
    to the same base gives the same adapters (what resume relies on)."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as error:
        raise ModuleNotFoundError(
            "LoRA needs peft; install it with pip install 'aem[smollm2]'"
        ) from error
    if has_lora(model):
        raise ValueError(f"model {type(model).__name__} already has LoRA adapters")
    targets = spec.target_modules
    config = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=targets if isinstance(targets, str) else list(targets),
        bias="none",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        inject_adapter_in_model(config, model)
    return model


def adapter_free_view(model: PreTrainedModel) -> PreTrainedModel:
    """The base model of a LoRA model as a frozen module for the KL reference: a copy whose
    frozen (base) parameters are the very tensors of ``model`` (no extra memory; they never train)
    and whose adapters are disabled, so it computes the base model's outputs whatever the
    adapters learn."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError(f"model {type(model).__name__} has no LoRA adapters")
    shared = {id(p): p for p in model.parameters() if not p.requires_grad}
    view = copy.deepcopy(model, memo=shared)
    for _, layer in lora_layers(view):
        layer.enable_adapters(False)
    return view.eval().requires_grad_(False)


def merged_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A plain copy of a LoRA model with ``W + (alpha / rank) B A`` folded into each base layer
    and the adapter modules removed: it saves and loads like the original architecture."""
    merged = copy.deepcopy(model)
    for name, layer in lora_layers(merged):
        layer.merge()
        parent, _, child = name.rpartition(".")
        setattr(merged.get_submodule(parent), child, layer.get_base_layer())
    merged.requires_grad_(True)
    return merged
