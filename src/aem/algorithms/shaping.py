"""Reward shaping applied before the advantage: DAPO's soft overlong punishment."""

from __future__ import annotations

import torch
from torch import Tensor

from aem.checks import require_ndim, require_positive, require_tensor


def overlong_penalty(
    lengths: Tensor, max_length: int, buffer: float, factor: float = 1.0
) -> Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025) for responses of ``lengths`` tokens:
    0 up to ``max_length - buffer`` tokens, then falling linearly to ``-factor`` at
    ``max_length`` and staying there beyond it. Returns fp32 ``[N]`` (added to the score)."""
    require_tensor("lengths", lengths)
    require_ndim("lengths", lengths, 1)
    require_positive("max_length", max_length)
    require_positive("buffer", buffer)
    if buffer > max_length:
        raise ValueError(f"buffer must be <= max_length ({max_length}), got {buffer!r}")
    require_positive("factor", factor)
    excess = lengths.to(torch.float32) - (max_length - buffer)
    return -factor * (excess / buffer).clamp(0.0, 1.0)
