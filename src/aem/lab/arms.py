"""The compared arms: how each turns the GRPO advantage into the advantage it trains on.

Every arm starts from GRPO's outcome advantage (Shao et al. 2024; the same formula as
``aem.algorithms.advantages`` ``grpo``: ``(r - mean_G r) / (std_G r + 1e-6)``, Bessel std) on every
turn of a trajectory, and then:

- ``grpo``: uses it as is;
- ``aem@tau``: AEM (paper Eq. 13-15), :func:`aem.algorithms.modulation.modulate`;
- ``mask_decreasing`` / ``mask_increasing``: Analysis A, the loss of the entropy-decreasing
  (``pos_low``, ``neg_high``) or entropy-increasing (``pos_high``, ``neg_low``) quadrants is
  masked (:func:`aem.algorithms.analysis.quadrant_keep_mask`);
- ``empg``: EMPG (Wang et al. 2025), :func:`aem.algorithms.empg.empg_modulate` with its
  published defaults, one batch per run.

Spans are turns, one row per turn (``[spans, L]``), padded turns of finished trajectories masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from aem.algorithms.analysis import quadrant_keep_mask, span_quadrants
from aem.algorithms.empg import empg_modulate
from aem.algorithms.modulation import modulate

GRPO_EPSILON = 1e-6


@dataclass(frozen=True)
class Arm:
    """One arm: ``kind`` in grpo, aem, mask_decreasing, mask_increasing, empg."""

    kind: str
    temperature: float = 1.0

    @property
    def name(self) -> str:
        return f"aem@{self.temperature:g}" if self.kind == "aem" else self.kind


ARM_KINDS: tuple[str, ...] = ("grpo", "aem", "mask_decreasing", "mask_increasing", "empg")


def parse_arm(name: str) -> Arm:
    """``grpo``, ``aem@1``, ``mask_decreasing``, ``mask_increasing`` or ``empg``."""
    if name.startswith("aem@"):
        try:
            temperature = float(name[4:])
        except ValueError:
            temperature = -1.0
        if not temperature > 0:
            raise ValueError(f"arm {name!r}: the AEM temperature must be a number > 0")
        return Arm("aem", temperature)
    if name not in ARM_KINDS or name == "aem":
        raise ValueError(
            f"arm must be one of grpo, aem@<tau>, mask_decreasing, mask_increasing, empg; "
            f"got {name!r}"
        )
    return Arm(name)


def grpo_advantage(success: Tensor) -> Tensor:
    """``[..., G]`` outcome advantage of each trajectory within its group (last axis); the float
    ``success`` (1 or 0) is the reward."""
    mean = success.mean(-1, keepdim=True)
    std = success.std(-1, keepdim=True) if success.shape[-1] > 1 else torch.ones_like(mean)
    return (success - mean) / (std + GRPO_EPSILON)


@dataclass(frozen=True)
class SpanBatch:
    """One arm's turns as spans (rows ``[S, L]``) with their ids."""

    advantage: Tensor  # [S] base (GRPO) advantage of the span's trajectory
    token_entropy: Tensor  # [S, L]
    alive: Tensor  # [S] the turn was played
    group: Tensor  # [S] unique across runs
    trajectory: Tensor  # [S] unique across runs
    turn: Tensor  # [S]
    run: Tensor  # [S] run within the arm


def arm_advantage(arm: Arm, spans: SpanBatch) -> tuple[Tensor, Tensor | None]:
    """``[S]`` the advantage the arm trains on, and the AEM weights (None for other arms)."""
    if arm.kind == "grpo":
        return torch.where(spans.alive, spans.advantage, 0.0), None
    mask = spans.alive[:, None].expand_as(spans.token_entropy)
    rows = spans.advantage[:, None].expand_as(spans.token_entropy)
    if arm.kind == "aem":
        result = modulate(rows, spans.token_entropy, mask, spans.group, temperature=arm.temperature)
        return torch.where(spans.alive, result.weights * spans.advantage, 0.0), result.weights
    if arm.kind == "empg":
        result = empg_modulate(
            rows,
            spans.token_entropy,
            mask,
            spans.group,
            trajectory_index=spans.trajectory,
            turn_index=spans.turn,
            batch_index=spans.run,
        )
        return torch.where(spans.alive, result.advantages[:, 0], 0.0), None
    entropy = spans.token_entropy.mean(-1)
    quadrant = span_quadrants(spans.advantage, entropy, spans.group, stat_mask=spans.alive)
    pair = "decreasing" if arm.kind == "mask_decreasing" else "increasing"
    keep = quadrant_keep_mask(quadrant, pair)
    return torch.where(spans.alive & keep, spans.advantage, 0.0), None
