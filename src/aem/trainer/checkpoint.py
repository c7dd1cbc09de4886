"""Atomic checkpoints: weights (safetensors), optimiser and RNG states, the iteration counter.

Frozen parameters (the base weights under LoRA adapters) are not written: they never change
during a run and come back from ``RUN_DIR/init``, so a LoRA checkpoint holds only the adapters.
Optimisers hold only the trainable parameters, by name (``param_names`` in their state dict):
loading checks the names match, so a state can never be applied to the wrong parameter.

A checkpoint is written into a temporary folder and renamed into place, then ``latest`` is
replaced atomically, so a crash at any moment leaves the previous checkpoint intact.

Loading never runs code from the run folder: weights are safetensors, the optimiser and RNG
states are read with ``torch.load(weights_only=True)`` (tensors and plain data only), metadata
is JSON. Every file of a checkpoint is read before anything is restored; a damaged checkpoint
(a truncated file, an unsafe ``state.pt``) is set aside as ``damaged_iter_XXXXXX`` with a
warning and the newest intact one before it is restored instead. ``latest`` naming a missing
checkpoint is an error (:class:`CheckpointError`), never a silent restart.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

CHECKPOINTS = "checkpoints"
LATEST = "latest"
DAMAGED_PREFIX = "damaged_"

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A run folder whose checkpoints cannot be restored; the message says which and why."""


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
    """The checkpoint ``latest`` names (None before the first one); :class:`CheckpointError` if
    it names a folder that does not exist."""
    pointer = Path(run_dir) / CHECKPOINTS / LATEST
    if not pointer.exists():
        return None
    name = pointer.read_text().strip()
    path = pointer.parent / name
    if not name.startswith("iter_") or not path.is_dir():
        raise CheckpointError(
            f"{pointer} names {name!r}, which is not a checkpoint folder: the run folder is "
            f"damaged (restore {name or 'it'}, or write the name of an intact iter_* folder "
            f"into {LATEST})"
        )
    return path


@dataclass
class _Saved:
    """Everything one checkpoint folder holds, read and checked before anything is restored."""

    path: Path
    weights: dict[str, dict[str, torch.Tensor]]
    state: dict[str, Any]
    meta: dict[str, Any]


_STATE_KEYS = ("optimizers", "generators", "py_random", "torch_rng")


def _read(path: Path, names: list[str]) -> _Saved:
    """Read checkpoint ``path`` (the weights of ``names``); :class:`CheckpointError` if any part
    is missing, truncated or unsafe to load."""
    part = "meta.json"
    try:
        meta = json.loads((path / part).read_text())
        int(meta["iteration"])
        weights = {}
        for name in names:
            part = f"{name}.safetensors"
            weights[name] = load_file(str(path / part))
        part = "state.pt"
        state = torch.load(path / part, weights_only=True)
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise KeyError(f"no {missing}")
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path / part} holds objects other than tensors and plain data, refused by a safe "
            f"load ({_first_line(error)}): it was not written by aem or was altered"
        ) from None
    except Exception as error:  # any failure to read a part: a damaged checkpoint
        raise CheckpointError(f"{path / part} is damaged ({_first_line(error)})") from None
    return _Saved(path, weights, state, meta)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _intact(path: Path, names: list[str]) -> _Saved:
    """Checkpoint ``path`` read, or the newest intact one before it: the damaged ones are then
    set aside (renamed ``damaged_<name>``) with a warning and ``latest`` names the one read."""
    root = path.parent
    older = sorted((p for p in root.glob("iter_*") if p.name < path.name), reverse=True)
    damaged: list[tuple[Path, str]] = []
    for candidate in [path, *older]:
        try:
            saved = _read(candidate, names)
        except CheckpointError as error:
            damaged.append((candidate, str(error)))
            continue
        for folder, problem in damaged:
            aside = root / f"{DAMAGED_PREFIX}{folder.name}"
            logger.warning("%s; set aside as %s", problem, aside.name)
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(folder, aside)
        if damaged:
            logger.warning("resuming from %s, the newest intact checkpoint", candidate.name)
            _write_atomic(root / LATEST, candidate.name)
        return saved
    raise CheckpointError(f"no intact checkpoint in {root}: " + "; ".join(p for _, p in damaged))


def load_checkpoint(
    path: Path,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    generators: dict[str, torch.Generator],
    py_random: random.Random,
) -> dict[str, Any]:
    """Restore everything :func:`save_checkpoint` wrote to ``path``, or to the newest intact
    checkpoint before it if ``path`` is damaged (see the module docstring); returns the restored
    checkpoint's ``meta.json``."""
    checkpoint = _intact(Path(path), list(modules))
    for name, module in modules.items():
        module.load_state_dict(checkpoint.weights[name], strict=False)
    state = checkpoint.state
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
    return checkpoint.meta


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
