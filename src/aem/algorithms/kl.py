"""Per-token estimators of KL(pi || ref) from sampled log-probs (Schulman, "Approximating KL
divergence", 2020, http://joschu.net/blog/kl-approx.html), named as in verl's ``kl_penalty``.

For a token ``x`` sampled from ``pi`` write ``log r = log ref(x) - log pi(x)``. Then

======  ======================  ======================================================
kind    value                   as an estimator of KL(pi || ref) = E_pi[-log r]
======  ======================  ======================================================
k1      ``-log r``              unbiased; high variance; negative for some samples.
k2      ``(log r)^2 / 2``       biased (close for nearby policies); low variance; >= 0.
                                Its expected *gradient* is the gradient of the KL.
k3      ``(r - 1) - log r``     unbiased (E_pi[r] = 1); low variance; >= 0 (log x <= x - 1).
abs     ``|log r|``             biased; >= 0.
======  ======================  ======================================================

verl's names are accepted too: ``"kl"`` is k1, ``"mse"`` is k2, ``"low_var_kl"`` is k3.
A trailing ``"+"`` (``"k3+"``, ``"low_var_kl+"``) gives verl's straight-through form: the value
of the named estimator with the gradient of k2, so the loss reports k1/k3 while its gradient is
an unbiased estimate of the KL's gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from aem.checks import (
    compute_dtype,
    require_finite,
    require_positive,
    require_shape,
    require_tensor,
)

KL_ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3", "abs")
KL_ALIASES: dict[str, str] = {"kl": "k1", "mse": "k2", "low_var_kl": "k3"}
STRAIGHT_THROUGH_SUFFIX = "+"
K3_LOG_RATIO_LIMIT = 20.0
"""k3 clamps ``log r`` to ``[-20, 20]`` before ``exp`` (as verl), so ``r`` stays finite in fp32."""


def kl_penalty(
    log_prob: Tensor, ref_log_prob: Tensor, kind: str = "k3", clamp: float | None = 10.0
) -> Tensor:
    """Per-token KL(pi || ref) estimate, same shape as ``log_prob`` (e.g. ``[B, T]``), in fp32.

    ``log_prob`` are the current policy's log-probs of the sampled tokens and ``ref_log_prob`` the
    reference model's. ``kind`` is one of :data:`KL_ESTIMATORS`, a verl alias, or either with a
    trailing ``"+"``. ``clamp`` bounds the k3 value to ``[-clamp, clamp]`` (verl uses 10); ``None``
    leaves it unbounded. Other estimators are never clamped. Mask padding yourself: every entry is
    computed, so padded positions need finite values.
    """
    estimator, straight_through = _parse_kind(kind)
    log_prob = require_tensor("log_prob", log_prob)
    ref_log_prob = require_tensor("ref_log_prob", ref_log_prob)
    require_shape("ref_log_prob", ref_log_prob, log_prob.shape)
    if clamp is not None:
        require_positive("clamp", clamp)
    require_finite("log_prob", log_prob)
    require_finite("ref_log_prob", ref_log_prob)

    dtype = compute_dtype(log_prob, ref_log_prob)
    log_prob = log_prob.to(dtype)
    ref_log_prob = ref_log_prob.to(dtype)
    value = _estimate(log_prob, ref_log_prob, estimator, clamp)
    if not straight_through or estimator == "k2":
        return value
    gradient_carrier = _estimate(log_prob, ref_log_prob, "k2", clamp)
    return gradient_carrier - gradient_carrier.detach() + value.detach()


def importance_corrected_kl(kl: Tensor, log_prob: Tensor, old_log_prob: Tensor) -> Tensor:
    """``kl * exp(log_prob - old_log_prob)``: the per-token KL estimate weighted by the token
    importance ratio (with its gradient), TRL's ``use_bias_correction_kl`` for samples drawn
    from the old policy."""
    require_shape("log_prob", log_prob, kl.shape)
    require_shape("old_log_prob", old_log_prob, kl.shape)
    ratio = torch.exp(log_prob.to(kl.dtype) - old_log_prob.to(kl.dtype))
    return kl * ratio


def kl_kinds() -> list[str]:
    """Every accepted ``kind``: the estimators, verl's aliases, and each with a trailing ``"+"``."""
    names = [*KL_ESTIMATORS, *KL_ALIASES]
    return names + [name + STRAIGHT_THROUGH_SUFFIX for name in names]


def _parse_kind(kind: str) -> tuple[str, bool]:
    """Map ``kind`` to ``(estimator in KL_ESTIMATORS, straight_through)``."""
    if not isinstance(kind, str):
        raise ValueError(f"kind must be a str, got {type(kind).__name__}")
    straight_through = kind.endswith(STRAIGHT_THROUGH_SUFFIX)
    base = kind[: -len(STRAIGHT_THROUGH_SUFFIX)] if straight_through else kind
    base = KL_ALIASES.get(base, base)
    if base not in KL_ESTIMATORS:
        known = [*KL_ESTIMATORS, *KL_ALIASES]
        raise ValueError(
            f"kind must be one of {known} (optionally with a trailing '+'), got {kind!r}"
        )
    return base, straight_through


def _estimate(
    log_prob: Tensor, ref_log_prob: Tensor, estimator: str, clamp: float | None
) -> Tensor:
    """The estimator's per-token value; inputs are already checked and in the compute dtype."""
    if estimator == "k1":
        return log_prob - ref_log_prob
    if estimator == "k2":
        return 0.5 * (log_prob - ref_log_prob).square()
    if estimator == "abs":
        return (log_prob - ref_log_prob).abs()
    log_r = (ref_log_prob - log_prob).clamp(-K3_LOG_RATIO_LIMIT, K3_LOG_RATIO_LIMIT)
    k3 = torch.exp(log_r) - log_r - 1.0
    return k3 if clamp is None else k3.clamp(-clamp, clamp)
