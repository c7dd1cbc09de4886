"""Atomic checkpoints: weights (safetensors), optimiser and RNG states, the iteration counter.

Frozen parameters (the base weights under LoRA adapters) are not written: they never change
during a run and come back from ``RUN_DIR/init``, so a LoRA checkpoint holds only the adapters.
Optimisers hold only the trainable parameters, by name (``param_names`` in their state dict):
loading checks the names match, so a state can never be applied to the wrong parameter.

A checkpoint is written into a temporary folder and renamed into place, then ``latest`` is
replaced atomically, so a crash at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

CHECKPOINTS = "checkpoints"
LATEST = "latest"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(
    run_dir: Path,
    iteration: int,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    generators: dict[str, torch.Generator],
    py_random: random.Random,
    extra: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write ``checkpoints/iter_XXXXXX`` atomically and point ``latest`` at it."""
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"iter_{iteration:06d}"
    tmp = root / f".tmp_iter_{iteration:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, module in modules.items():
        frozen = {
            key
            for key, param in module.named_parameters(remove_duplicate=False)
            if not param.requires_grad
        }
        state = {
            key: value.detach().contiguous()
            for key, value in module.state_dict().items()
            if key not in frozen
        }
        save_file(_untie(state), str(tmp / f"{name}.safetensors"))
    torch.save(
        {
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            "generators": {name: gen.get_state() for name, gen in generators.items()},
            "py_random": py_random.getstate(),
            "torch_rng": torch.get_rng_state(),
        },
        tmp / "state.pt",
    )
    (tmp / "meta.json").write_text(json.dumps({"iteration": iteration, **(extra or {})}))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _write_atomic(root / LATEST, final.name)
    for old in sorted(root.glob("iter_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / CHECKPOINTS / LATEST
    if not pointer.exists():
        return None
    path = run_dir / CHECKPOINTS / pointer.read_text().strip()
    return path if path.exists() else None


def load_checkpoint(
    path: Path,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    generators: dict[str, torch.Generator],
    py_random: random.Random,
) -> dict[str, Any]:
    """Restore everything :func:`save_checkpoint` wrote; returns ``meta.json``."""
    for name, module in modules.items():
        state = load_file(str(path / f"{name}.safetensors"))
        module.load_state_dict(state, strict=False)
    state = torch.load(path / "state.pt", weights_only=False)
    for name, opt in optimizers.items():
        saved = state["optimizers"][name]
        if name in modules:
            saved = _from_all_parameters(saved, modules[name], opt)
        _check_parameter_names(name, saved, opt)
        opt.load_state_dict(saved)
    for name, gen in generators.items():
        gen.set_state(state["generators"][name])
    py_random.setstate(state["py_random"])
    torch.set_rng_state(state["torch_rng"])
    return json.loads((path / "meta.json").read_text())


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory (tied embeddings): store copies."""
    seen: dict[int, str] = {}
    out = {}
    for key, value in state.items():
        pointer = value.data_ptr()
        out[key] = value.clone() if pointer in seen else value
        seen.setdefault(pointer, key)
    return out


def _check_parameter_names(
    name: str, saved: dict[str, Any], optimizer: torch.optim.Optimizer
) -> None:
    """Refuse an optimiser state saved for other parameters (torch maps states by position)."""
    for index, (old, new) in enumerate(
        zip(saved["param_groups"], optimizer.param_groups, strict=False)
    ):
        saved_names, names = old.get("param_names"), new.get("param_names")
        if saved_names is None or names is None or saved_names == names:
            continue
        first = next(
            (i for i, (a, b) in enumerate(zip(saved_names, names, strict=False)) if a != b),
            min(len(saved_names), len(names)),
        )
        raise ValueError(
            f"checkpoint optimizer {name!r} (group {index}) was saved for {len(saved_names)} "
            f"parameters but the run trains {len(names)}; first difference at position {first}: "
            f"saved {saved_names[first : first + 1]}, now {names[first : first + 1]}"
        )


def _from_all_parameters(
    saved: dict[str, Any], module: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """A checkpoint from before optimisers held only trainable parameters (one unnamed group over
    ``module.parameters()``, states only for those that had gradients): the same state indexed
    over the trainable parameters, in module order. Any other state is returned unchanged."""
    groups = saved["param_groups"]
    params = list(module.parameters())
    if (
        len(groups) != 1
        or "param_names" in groups[0]
        or len(groups[0]["params"]) != len(params)
        or len(optimizer.param_groups) != 1
        or len(optimizer.param_groups[0]["params"]) == len(params)
    ):
        return saved
    kept = [index for index, p in zip(groups[0]["params"], params, strict=True) if p.requires_grad]
    return {
        "state": {
            new: saved["state"][old] for new, old in enumerate(kept) if old in saved["state"]
        },
        "param_groups": [{**groups[0], "params": list(range(len(kept)))}],
    }
