"""Counter-based random numbers: every draw is a pure function of (seed, stream, step, index).

The lab runs hundreds of seeds (and several arms per seed) in one tensor. A draw that depends only
on its own seed and counters makes a run's result independent of how many other runs share the
tensor, and gives the arms of one seed common random numbers (a paired design). The hash is a
32-bit integer finaliser (two multiply-xorshift rounds) computed in int64 without overflow.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_MASK = 0xFFFFFFFF
_MULTIPLIER = 0x45D9F3B  # < 2**27, so a 32-bit value times it fits in int64
_GOLDEN = 0x9E3779B9


def _mix(x: Tensor) -> Tensor:
    """A bijective 32-bit integer hash of int64 values in ``[0, 2**32)``."""
    x = (((x >> 16) ^ x) * _MULTIPLIER) & _MASK
    x = (((x >> 16) ^ x) * _MULTIPLIER) & _MASK
    return (x >> 16) ^ x


def _combine(key: Tensor, counter: int | Tensor) -> Tensor:
    counter = torch.as_tensor(counter, dtype=torch.long, device=key.device)
    return _mix(key ^ _mix((counter + _GOLDEN) & _MASK))


def _keys(seeds: Tensor, stream: int, step: int) -> Tensor:
    """``[R]`` one key per seed for the (stream, step) pair."""
    key = _mix(seeds.to(torch.long) & _MASK)
    return _combine(_combine(key, stream), step)


def uniform(
    seeds: Tensor, stream: int, step: int, shape: tuple[int, ...], dtype=torch.float64
) -> Tensor:
    """``[R, *shape]`` draws in (0, 1), one independent stream per seed."""
    count = math.prod(shape)
    index = torch.arange(count, dtype=torch.long, device=seeds.device)
    bits = _combine(_keys(seeds, stream, step)[:, None], index[None, :])
    bits = _mix(bits ^ ((index[None, :] * _GOLDEN) & _MASK))
    return ((bits.to(dtype) + 0.5) / 2.0**32).reshape(seeds.shape[0], *shape)


def normal(
    seeds: Tensor, stream: int, step: int, shape: tuple[int, ...], dtype=torch.float64
) -> Tensor:
    """``[R, *shape]`` standard normal draws (Box-Muller on two uniform streams)."""
    first = uniform(seeds, 2 * stream, step, shape, dtype)
    second = uniform(seeds, 2 * stream + 1, step, shape, dtype)
    return torch.sqrt(-2.0 * torch.log(first)) * torch.cos(2.0 * math.pi * second)


def permutations(seeds: Tensor, stream: int, step: int, shape: tuple[int, ...]) -> Tensor:
    """``[R, *shape]`` random permutations of ``range(shape[-1])`` along the last axis."""
    return torch.argsort(uniform(seeds, stream, step, shape), dim=-1)
