"""Argument checks shared by the algorithms: each raises ``ValueError`` naming the argument."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from aem.validation import require_int_at_least

__all__ = ["require_int_at_least"]


def require_tensor(name: str, value: object) -> Tensor:
    """Return ``value`` if it is a tensor, else raise naming ``name`` and the type."""
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def require_shape(name: str, value: Tensor, shape: Sequence[int]) -> None:
    """Require ``value.shape == shape`` exactly."""
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(value.shape)}")


def require_ndim(name: str, value: Tensor, ndim: int) -> None:
    """Require ``value.dim() == ndim``."""
    if value.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(value.shape)}")


def require_nonempty(name: str, value: Tensor) -> None:
    """Require at least one element."""
    if value.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(value.shape)}")


def require_finite(name: str, value: Tensor, where: Tensor | None = None) -> None:
    """Require finite entries (only where ``where`` is True, if given); name the first bad one."""
    bad = ~torch.isfinite(value)
    if where is not None:
        bad = bad & where.bool()
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name} must be finite, got {value[index].item()} at index {index}")


def require_integer(name: str, value: Tensor) -> None:
    """Require an integer dtype (ids, indices)."""
    if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
        raise ValueError(f"{name} must have an integer dtype, got {value.dtype}")


def require_non_negative(name: str, value: float) -> None:
    """Require a finite scalar >= 0."""
    if not (value >= 0.0 and value < float("inf")):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def require_positive(name: str, value: float) -> None:
    """Require a finite scalar > 0."""
    if not (value > 0.0 and value < float("inf")):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
