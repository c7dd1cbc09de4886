"""Policy-gradient losses and loss aggregation, as a registry in the style of verl's core_algos.

Every policy loss has one signature, :data:`PolicyLossFn`::

    loss_fn = get_policy_loss("ppo")
    loss, metrics = loss_fn(old_log_prob, log_prob, advantages, response_mask, config)

with ``[B, T]`` tensors (one row per response, ``response_mask`` 1 on response tokens), a
:class:`PolicyLossConfig`, a scalar loss to minimise and detached scalar metrics
``clipfrac``, ``clipfrac_lower``, ``approx_kl`` and ``ratio_mean``. Math runs in fp32 (fp16/bf16
inputs are upcast; fp64 stays fp64). Masked-out positions are ignored entirely: they may hold
any value, even NaN, and receive zero gradient.

Built-in losses: ``"ppo"`` (alias ``"vanilla"``; PPO's clipped surrogate with DAPO's decoupled
clip range and dual clip) and ``"gspo"`` (GSPO's sequence-level ratio). Recommended configs:
:data:`DAPO_CONFIG` and :data:`GSPO_CONFIG`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from aem.checks import (
    bool_mask,
    compute_dtype,
    require_finite,
    require_ndim,
    require_nonempty,
    require_positive,
    require_shape,
    require_tensor,
)

AGG_MODES: tuple[str, ...] = (
    "token-mean",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
)
PPO_LOG_RATIO_LIMIT = 20.0
"""PPO clamps ``log_prob - old_log_prob`` to ``[-20, 20]`` before ``exp`` (as verl)."""
GSPO_LOG_RATIO_MAX = 10.0
APPROX_KL_LOG_RATIO_BOUND = 20.0
"""``approx_kl`` averages the log ratio clamped to [-20, 20], as verl's ``ppo_kl`` does."""
"""GSPO clamps the token-level log ratio from above at 10 before ``exp`` (as verl)."""


# ----------------------------------------------------------------------------- aggregation


def aggregate_loss(
    loss_mat: Tensor, mask: Tensor, mode: str, norm_length: float | None = None
) -> Tensor:
    """Reduce a ``[B, T]`` per-token loss to a scalar over the tokens where ``mask`` is 1.

    Modes (verl's ``agg_loss``; rows whose mask is all zero are left out of every sequence mean):

    - ``"token-mean"``: sum over all kept tokens / number of kept tokens (DAPO).
    - ``"seq-mean-token-mean"``: mean over rows of each row's token mean (GRPO, GSPO).
    - ``"seq-mean-token-sum"``: mean over rows of each row's token sum.
    - ``"seq-mean-token-sum-norm"``: mean over rows of each row's token sum divided by the constant
      ``norm_length`` (Dr. GRPO; pass the maximum response length so the scale is fixed during
      training; ``None`` uses ``T``, the padded length of this batch). verl 0.9.1's ``agg_loss``
      also averages over the non-empty rows.

    A mask with no kept token gives a zero loss that is still connected to the graph.
    """
    return _checked_aggregate("loss_mat", loss_mat, mask, mode, norm_length)


def _approx_kl(log_ratio: Tensor, keep: Tensor) -> Tensor:
    """Mean of ``-log_ratio`` clamped to +-20 over the kept tokens (verl's ``ppo_kl``)."""
    bound = APPROX_KL_LOG_RATIO_BOUND
    return _masked_mean(-log_ratio.clamp(-bound, bound), keep)


def entropy_bonus(
    entropy: Tensor, mask: Tensor, mode: str = "token-mean", norm_length: float | None = None
) -> Tensor:
    """Aggregated token entropy ``[B, T] -> scalar`` (see :func:`aggregate_loss` for the modes).

    The trainer subtracts ``coef * entropy_bonus(...)`` from the loss; AEM needs no entropy bonus,
    so the trainer's default coefficient is 0.
    """
    return _checked_aggregate("entropy", entropy, mask, mode, norm_length)


def _checked_aggregate(
    name: str, values: Tensor, mask: Tensor, mode: str, norm_length: float | None
) -> Tensor:
    """Check the arguments of :func:`aggregate_loss` (``values`` called ``name``), then reduce."""
    values = require_tensor(name, values)
    require_ndim(name, values, 2)
    require_nonempty(name, values)
    keep = bool_mask("mask", mask, values.shape)
    _require_agg_mode("mode", mode)
    if norm_length is not None:
        require_positive("norm_length", norm_length)
    require_finite(name, values, where=keep)
    return _aggregate(values.to(compute_dtype(values)), keep, mode, norm_length)


def _aggregate(values: Tensor, keep: Tensor, mode: str, norm_length: float | None) -> Tensor:
    """:func:`aggregate_loss` on checked inputs (``keep`` is a bool mask of ``values``' shape)."""
    values = torch.where(keep, values, 0.0)
    row_sums = values.sum(dim=-1)
    row_counts = keep.sum(dim=-1)
    if mode == "token-mean":
        return row_sums.sum() / row_counts.sum().clamp(min=1)
    if mode == "seq-mean-token-mean":
        row_values = row_sums / row_counts.clamp(min=1)
    elif mode == "seq-mean-token-sum":
        row_values = row_sums
    else:
        row_values = row_sums / (values.shape[-1] if norm_length is None else norm_length)
    # Empty rows have row_values == 0, so summing all rows and dividing by the non-empty count
    # is the mean over non-empty rows.
    return row_values.sum() / (row_counts > 0).sum().clamp(min=1)


def _require_agg_mode(name: str, mode: object) -> None:
    if mode not in AGG_MODES:
        raise ValueError(f"{name} must be one of {list(AGG_MODES)}, got {mode!r}")


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class PolicyLossConfig:
    """Settings shared by the policy losses.

    - ``clip_low``, ``clip_high``: the ratio is clipped to ``[1 - clip_low, 1 + clip_high]``
      (PPO: both 0.2; DAPO "clip-higher": ``clip_high=0.28``; GSPO works on a length-normalised
      sequence ratio and needs a far smaller range: ``clip_low=3e-4, clip_high=4e-4``).
    - ``dual_clip_c``: dual-clip constant (Ye et al. 2020, arXiv:1912.09729): for negative
      advantages the per-token loss is at most ``-A * c``; must be > 1; ``None`` disables it.
      Used by ``"ppo"``; GSPO has no dual clip.
    - ``agg_mode``, ``norm_length``: see :func:`aggregate_loss`.
    """

    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip_c: float | None = 3.0
    agg_mode: str = "token-mean"
    norm_length: float | None = None

    def __post_init__(self) -> None:
        if not (0.0 < self.clip_low < 1.0):
            raise ValueError(f"clip_low must be in (0, 1), got {self.clip_low!r}")
        require_positive("clip_high", self.clip_high)
        if self.dual_clip_c is not None and not (1.0 < self.dual_clip_c < math.inf):
            raise ValueError(
                f"dual_clip_c must be a finite number > 1 or None, got {self.dual_clip_c!r}"
            )
        _require_agg_mode("agg_mode", self.agg_mode)
        if self.norm_length is not None:
            require_positive("norm_length", self.norm_length)


DAPO_CONFIG = PolicyLossConfig(clip_low=0.2, clip_high=0.28, agg_mode="token-mean")
"""DAPO (arXiv:2503.14476): clip-higher with token-mean aggregation; use with ``"ppo"``."""
GSPO_CONFIG = PolicyLossConfig(
    clip_low=3e-4, clip_high=4e-4, dual_clip_c=None, agg_mode="seq-mean-token-mean"
)
"""GSPO (arXiv:2507.18071): the paper's clip range and verl's aggregation; use with ``"gspo"``."""


# ----------------------------------------------------------------------------- registry

PolicyLossFn = Callable[
    [Tensor, Tensor, Tensor, Tensor, PolicyLossConfig], tuple[Tensor, dict[str, Tensor]]
]
"""``(old_log_prob, log_prob, advantages, response_mask, config) -> (loss, metrics)``."""

_POLICY_LOSSES: dict[str, PolicyLossFn] = {}
_POLICY_LOSS_ALIASES: dict[str, str] = {"vanilla": "ppo"}


def register_policy_loss(name: str) -> Callable[[PolicyLossFn], PolicyLossFn]:
    """Decorator registering a :data:`PolicyLossFn` under ``name`` (names are unique)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")

    def register(loss_fn: PolicyLossFn) -> PolicyLossFn:
        taken = _POLICY_LOSSES.get(name)
        if (taken is not None and taken is not loss_fn) or name in _POLICY_LOSS_ALIASES:
            raise ValueError(f"name {name!r} is already registered as a policy loss")
        _POLICY_LOSSES[name] = loss_fn
        return loss_fn

    return register


def get_policy_loss(name: str) -> PolicyLossFn:
    """The policy loss registered as ``name`` (``"vanilla"`` is an alias of ``"ppo"``)."""
    canonical = _POLICY_LOSS_ALIASES.get(name, name) if isinstance(name, str) else name
    if canonical not in _POLICY_LOSSES:
        raise ValueError(
            f"policy loss name must be one of {policy_losses(aliases=True)}, got {name!r}"
        )
    return _POLICY_LOSSES[canonical]


def policy_losses(aliases: bool = False) -> list[str]:
    """Registered policy-loss names, sorted (with ``aliases``: their aliases too)."""
    return sorted(_POLICY_LOSSES) + (sorted(_POLICY_LOSS_ALIASES) if aliases else [])


# ----------------------------------------------------------------------------- losses


@register_policy_loss("ppo")
def ppo_policy_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    config: PolicyLossConfig,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped surrogate with a decoupled clip range and dual clip (verl's ``vanilla``).

    Per token, with ``r = exp(log_prob - old_log_prob)``::

        l = max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))
        l = min(l, -A c)   where A < 0 and dual_clip_c = c is set

    then aggregated with ``config.agg_mode``. ``clipfrac`` is the fraction of kept tokens where the
    clipped term is the larger one, ``clipfrac_lower`` the fraction where the dual clip binds.
    """
    old, new, adv, keep = _prepare(old_log_prob, log_prob, advantages, response_mask, config)
    log_ratio = new - old
    ratio = torch.exp(log_ratio.clamp(-PPO_LOG_RATIO_LIMIT, PPO_LOG_RATIO_LIMIT))
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - config.clip_low, 1.0 + config.clip_high)
    token_loss = torch.maximum(unclipped, clipped)
    clipfrac = _masked_mean(clipped > unclipped, keep)
    if config.dual_clip_c is None:
        clipfrac_lower = torch.zeros((), dtype=new.dtype, device=new.device)
    else:
        bound = -adv * config.dual_clip_c
        negative = adv < 0
        clipfrac_lower = _masked_mean(negative & (token_loss > bound), keep)
        token_loss = torch.where(negative, torch.minimum(token_loss, bound), token_loss)
    loss = _aggregate(token_loss, keep, config.agg_mode, config.norm_length)
    metrics = {
        "clipfrac": clipfrac,
        "clipfrac_lower": clipfrac_lower,
        "approx_kl": _approx_kl(log_ratio, keep),
        "ratio_mean": _masked_mean(ratio, keep),
    }
    return loss, {key: value.detach() for key, value in metrics.items()}


@register_policy_loss("gspo")
def gspo_policy_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    config: PolicyLossConfig,
) -> tuple[Tensor, dict[str, Tensor]]:
    """GSPO (Zheng et al. 2025, arXiv:2507.18071): clip the sequence's length-normalised ratio.

    ``s_i = exp(mean_t(log_prob - old_log_prob))`` over row ``i``'s kept tokens, used per token as
    ``s_i,t = sg(s_i) * pi_t / sg(pi_t)`` (value ``s_i``, gradient ``s_i * grad log pi_t``), so::

        l_t = max(-A_t s_i,t, -A_t clip(s_i,t, 1 - clip_low, 1 + clip_high))

    With ``agg_mode="seq-mean-token-mean"`` (:data:`GSPO_CONFIG`, verl's choice) and one advantage
    per row this is the paper's objective ``mean_i min(s_i A_i, clip(s_i) A_i)`` and its gradient;
    other modes reweight rows by length. ``dual_clip_c`` is ignored (``clipfrac_lower`` is 0).
    ``clipfrac`` is the fraction of rows clipped (mean over rows of each row's clipped-token
    fraction) and ``ratio_mean`` the mean of ``s_i`` over non-empty rows.
    """
    old, new, adv, keep = _prepare(old_log_prob, log_prob, advantages, response_mask, config)
    log_ratio = new - old
    row_lengths = keep.sum(dim=-1).clamp(min=1)
    seq_log_ratio = log_ratio.sum(dim=-1) / row_lengths
    token_log_ratio = new - new.detach() + seq_log_ratio.detach().unsqueeze(-1)
    ratio = torch.exp(token_log_ratio.clamp(max=GSPO_LOG_RATIO_MAX))
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - config.clip_low, 1.0 + config.clip_high)
    token_loss = torch.maximum(unclipped, clipped)
    loss = _aggregate(token_loss, keep, config.agg_mode, config.norm_length)
    clipped_rows = _aggregate(
        (clipped > unclipped).to(new.dtype), keep, "seq-mean-token-mean", None
    )
    non_empty = keep.any(dim=-1)
    metrics = {
        "clipfrac": clipped_rows,
        "clipfrac_lower": torch.zeros((), dtype=new.dtype, device=new.device),
        "approx_kl": _approx_kl(log_ratio, keep),
        "ratio_mean": _masked_mean(
            torch.exp(seq_log_ratio.clamp(max=GSPO_LOG_RATIO_MAX)), non_empty
        ),
    }
    return loss, {key: value.detach() for key, value in metrics.items()}


# ----------------------------------------------------------------------------- helpers


def _prepare(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    config: PolicyLossConfig,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Check a policy loss's arguments; return ``(old, new, adv, keep)`` in the compute dtype with
    masked-out entries set to 0 (so padding cannot leak NaN into values or gradients)."""
    if not isinstance(config, PolicyLossConfig):
        raise ValueError(f"config must be a PolicyLossConfig, got {type(config).__name__}")
    log_prob = require_tensor("log_prob", log_prob)
    require_ndim("log_prob", log_prob, 2)
    require_nonempty("log_prob", log_prob)
    old_log_prob = require_tensor("old_log_prob", old_log_prob)
    require_shape("old_log_prob", old_log_prob, log_prob.shape)
    advantages = require_tensor("advantages", advantages)
    require_shape("advantages", advantages, log_prob.shape)
    keep = bool_mask("response_mask", response_mask, log_prob.shape)
    require_finite("old_log_prob", old_log_prob, where=keep)
    require_finite("log_prob", log_prob, where=keep)
    require_finite("advantages", advantages, where=keep)
    dtype = compute_dtype(old_log_prob, log_prob, advantages)
    old, new, adv = (
        torch.where(keep, tensor.to(dtype), 0.0) for tensor in (old_log_prob, log_prob, advantages)
    )
    return old, new, adv, keep


def _masked_mean(values: Tensor, keep: Tensor) -> Tensor:
    """Mean of ``values`` where ``keep`` (0 if nothing is kept), in at least fp32."""
    values = values.to(compute_dtype(values))
    return torch.where(keep, values, 0.0).sum() / keep.sum().clamp(min=1)
