"""The lab's settings: one :class:`Setting` is one experiment (task family, policy, update rule,
sizes, arms), validated on construction with errors that name the field."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from aem.lab.arms import parse_arm
from aem.lab.policies import POLICIES
from aem.lab.tasks import FAMILIES, TaskFamily

UPDATES: tuple[str, ...] = ("natural", "natural_token", "pg", "adam", "ppo")


def _positive_int(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _positive_number(name: str, value: object, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def check_family(family: TaskFamily, responses: int) -> None:
    """Raise ValueError naming the field if ``family`` cannot be built over ``responses``."""
    if family.name not in FAMILIES:
        raise ValueError(f"family.name must be one of {FAMILIES}, got {family.name!r}")
    _positive_int("family.depth", family.depth, 2 if family.name == "keydoor" else 1)
    _positive_int("family.decoys", family.decoys, 0)
    _positive_int("family.safe_moves", family.safe_moves, 1)
    needed = 1 + family.decoys
    if family.name == "keydoor" and family.depth > 2:
        needed = max(needed, family.safe_moves + family.decoys)
    if needed > responses:
        raise ValueError(
            f"family.decoys={family.decoys} (safe_moves={family.safe_moves}) needs {needed} "
            f"distinct responses, the response space has {responses}"
        )


@dataclass(frozen=True)
class Setting:
    """One experiment; every run of it differs only in its seed and arm."""

    family: TaskFamily = field(default_factory=TaskFamily)
    policy: str = "tabular"
    update: str = "adam"
    lr: float = 0.1
    steps: int = 100
    eval_every: int = 5
    instances: int = 32
    groups: int = 8
    group_size: int = 8
    vocab: int = 3
    length: int = 2
    prior_boost: float = 2.0
    prior_noise: float = 1.0
    embed_dim: int = 16
    ppo_epochs: int = 4
    clip: float = 0.2
    trust_region: bool = False
    arms: tuple[str, ...] = ("grpo",)
    drift: bool = False
    double: bool = False

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if self.update not in UPDATES:
            raise ValueError(f"update must be one of {UPDATES}, got {self.update!r}")
        _positive_number("lr", self.lr)
        for name in (
            "steps",
            "eval_every",
            "instances",
            "vocab",
            "length",
            "embed_dim",
            "ppo_epochs",
        ):
            _positive_int(name, getattr(self, name))
        _positive_int("group_size", self.group_size, 2)
        _positive_int("groups", self.groups)
        if self.groups > self.instances:
            raise ValueError(f"groups must be <= instances ({self.instances}), got {self.groups}")
        _positive_number("prior_boost", self.prior_boost, allow_zero=True)
        _positive_number("prior_noise", self.prior_noise, allow_zero=True)
        _positive_number("clip", self.clip)
        if not self.arms:
            raise ValueError("arms must name at least one arm, got ()")
        names = [parse_arm(arm).name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arms must be distinct, got {self.arms}")
        check_family(self.family, self.vocab**self.length)

    def with_(self, **changes) -> Setting:
        return replace(self, **changes)

    @property
    def trajectories_per_step(self) -> int:
        return self.groups * self.group_size
