"""The pre-registered setting of ``aem lab``: fixed before any arm was compared.

Task families, sizes, prior and step counts were chosen first; each learning rate was then tuned
on the GRPO arm alone (:func:`tune_grpo`, seeds 10000-10099, disjoint from the report's) over
the grid :data:`LR_GRID`, taking the largest area under the success curve and, among rates within
0.01 of it, the smallest. docs/results/lab/README.md records the tuning numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from aem.lab.experiment import run_experiment
from aem.lab.settings import Setting
from aem.lab.tasks import TaskFamily

LOCK = TaskFamily("lock", depth=3, decoys=2)
KEYDOOR = TaskFamily("keydoor", depth=4, decoys=2, safe_moves=2)
MAIN_ARMS: tuple[str, ...] = (
    "grpo",
    "aem@0.5",
    "aem@1",
    "aem@2",
    "mask_decreasing",
    "mask_increasing",
    "empg",
)
TUNING_SEEDS = (10000, 100)  # first seed, number of seeds
LR_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
_COMMON = {
    "steps": 150,
    "eval_every": 5,
    "instances": 32,
    "groups": 8,
    "group_size": 8,
    "vocab": 3,
    "length": 2,
    "prior_boost": 2.0,
    "prior_noise": 1.0,
    "arms": MAIN_ARMS,
}

MAIN: dict[str, Setting] = {
    "lock-tabular-adam": Setting(family=LOCK, policy="tabular", update="adam", lr=1.0, **_COMMON),
    "keydoor-tabular-adam": Setting(
        family=KEYDOOR, policy="tabular", update="adam", lr=1.0, **_COMMON
    ),
    "lock-tabular-natural": Setting(
        family=LOCK, policy="tabular", update="natural", lr=3.0, trust_region=True, **_COMMON
    ),
    "lock-loglinear-adam": Setting(
        family=LOCK, policy="loglinear", update="adam", lr=0.1, **_COMMON
    ),
}
"""The arm comparisons (success, entropy, Analysis A, transition)."""

_DRIFT_COMMON = {**_COMMON, "steps": 30, "arms": ("grpo", "aem@1"), "double": True}
_DRIFT_RULES = (
    ("natural", 1e-3, 1e-3),
    ("natural_token", 1e-3, 1e-3),
    ("pg", 0.3, 0.3),
    ("adam-small", 0.01, 0.01),
    ("adam", 1.0, 0.1),  # the learning rates of the arm comparisons
    ("ppo", 1.0, 0.1),
)


def _drift_settings() -> dict[str, Setting]:
    settings = {}
    for policy in ("tabular", "loglinear"):
        for label, tabular_lr, loglinear_lr in _DRIFT_RULES:
            update = label.removesuffix("-small")
            lr = tabular_lr if policy == "tabular" else loglinear_lr
            settings[f"{policy}/{label}"] = Setting(
                family=LOCK, policy=policy, update=update, lr=lr, drift=True, **_DRIFT_COMMON
            )
    return settings


DRIFT: dict[str, Setting] = _drift_settings()
"""The same-batch drift measurements, one per policy and update rule (lock family)."""


SENSITIVITY_ARMS: tuple[str, ...] = ("grpo", "aem@0.5", "aem@1", "aem@2", "empg")


def _sensitivity_settings() -> dict[str, Setting]:
    """The lock settings with one knob moved at a time (depth, decoys); tau is the arms. The
    learning rates stay the pre-registered ones (not re-tuned per variant)."""
    settings = {}
    for name in ("lock-tabular-adam", "lock-loglinear-adam"):
        base = MAIN[name].with_(arms=SENSITIVITY_ARMS)
        settings[f"{name} (pre-registered)"] = base
        for depth in (2, 4):
            settings[f"{name} depth={depth}"] = base.with_(family=replace(LOCK, depth=depth))
        for decoys in (1, 4):
            settings[f"{name} decoys={decoys}"] = base.with_(family=replace(LOCK, decoys=decoys))
    return settings


SENSITIVITY: dict[str, Setting] = _sensitivity_settings()
"""``aem lab --sensitivity``: GRPO, AEM at three temperatures and EMPG over depth and decoys."""


def tune_grpo(
    setting: Setting,
    lrs: tuple[float, ...] = LR_GRID,
    seeds: tuple[int, int] = TUNING_SEEDS,
    progress: Callable[[str], None] | None = None,
) -> dict[float, float]:
    """Area under GRPO's success curve (mean success over the evaluations) per learning rate."""
    first, number = seeds
    seed_tensor = torch.arange(first, first + number)
    areas = {}
    for lr in lrs:
        records = run_experiment(setting.with_(lr=lr, arms=("grpo",)), seed_tensor)
        areas[lr] = float(records.success[0].mean())
        if progress is not None:
            progress(f"lr={lr:g}: area {areas[lr]:.4f}")
    return areas


def pick_lr(areas: dict[float, float], tolerance: float = 0.01) -> float:
    """The smallest learning rate whose area is within ``tolerance`` of the best."""
    best = max(areas.values())
    return min(lr for lr, area in areas.items() if area >= best - tolerance)
