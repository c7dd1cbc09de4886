"""Atomic checkpoints: weights (safetensors), optimiser and RNG states, the iteration counter.

Frozen parameters (the base weights under LoRA adapters) are not written: they never change
during a run and come back from ``RUN_DIR/init``, so a LoRA checkpoint holds only the adapters.

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
        opt.load_state_dict(state["optimizers"][name])
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
