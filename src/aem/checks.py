"""The argument checks of every layer: each ``require_*`` raises ``ValueError`` naming the argument
and the value, one mask rule (:func:`bool_mask`) and one compute-dtype rule
(:func:`compute_dtype`).

Public functions check their arguments here, at the boundary. Checks that read tensor *values*
(finiteness, 0/1 masks, index ranges) cost a pass over the data and a host sync, so a hot loop
over data already checked at its boundary runs them under :func:`trusted_inputs`, which skips
them; shape, type and scalar checks always run. Only the standard library is imported here
(torch when a tensor is checked), so environments can use the scalar checks without torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import Tensor

_TRUSTED: ContextVar[bool] = ContextVar("aem_trusted_inputs", default=False)


@contextmanager
def trusted_inputs() -> Iterator[None]:
    """Inside, the checks that read tensor values are skipped (see the module docstring)."""
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def checking_values() -> bool:
    """False inside :func:`trusted_inputs`."""
    return not _TRUSTED.get()


# ----------------------------------------------------------------------------- scalars


def require_int_at_least(name: str, value: object, minimum: int) -> int:
    """Require a Python int (not a bool) >= ``minimum``; return it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def require_finite_number(name: str, value: object) -> float:
    """Require a finite int or float (not a bool); return it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def require_non_negative(name: str, value: float) -> None:
    """Require a finite scalar >= 0."""
    if not (value >= 0.0 and value < float("inf")):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def require_positive(name: str, value: float) -> None:
    """Require a finite scalar > 0."""
    if not (value > 0.0 and value < float("inf")):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def require_unit_interval(name: str, value: float) -> None:
    """Require a scalar in ``[0, 1]``."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


# ----------------------------------------------------------------------------- tensors


def require_tensor(name: str, value: object) -> Tensor:
    """Return ``value`` if it is a tensor, else raise naming ``name`` and the type."""
    import torch

    if not isinstance(value, torch.Tensor):
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


def require_integer(name: str, value: Tensor) -> None:
    """Require an integer dtype (ids, indices)."""
    import torch

    if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
        raise ValueError(f"{name} must have an integer dtype, got {value.dtype}")


def require_finite(name: str, value: Tensor, where: Tensor | None = None) -> None:
    """Require finite entries (only where ``where`` is True, if given); name the first bad one.
    A value check (skipped under :func:`trusted_inputs`)."""
    if not checking_values():
        return
    import torch

    bad = ~torch.isfinite(value)
    if where is not None:
        bad = bad & where.bool()
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name} must be finite, got {value[index].item()} at index {index}")


def bool_mask(name: str, mask: object, shape: Sequence[int]) -> Tensor:
    """The one mask rule: a tensor of ``shape``, bool or holding only 0 and 1 (a value check,
    skipped under :func:`trusted_inputs`); returned as bool."""
    import torch

    tensor = require_tensor(name, mask)
    require_shape(name, tensor, shape)
    if tensor.dtype == torch.bool:
        return tensor
    if tensor.dtype.is_complex:
        raise ValueError(f"{name} must be bool or hold only 0 and 1, got dtype {tensor.dtype}")
    if checking_values():
        bad = (tensor != 0) & (tensor != 1)
        if bool(bad.any()):
            index = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{name} must be bool or hold only 0 and 1, got {tensor[index].item()} at {index}"
            )
    return tensor != 0


def compute_dtype(*inputs: Tensor | torch.dtype) -> torch.dtype:
    """The one compute-dtype rule: float64 when any input (tensor or dtype) is float64, else
    float32 (so bf16/fp16 inputs are computed in fp32)."""
    import torch

    dtypes = [value if isinstance(value, torch.dtype) else value.dtype for value in inputs]
    return torch.float64 if torch.float64 in dtypes else torch.float32
