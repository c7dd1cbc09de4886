"""Adaptive Entropy Modulation (paper Sec. 4, Eq. 13-15).

A *span* is one response: the tokens the policy generated before the environment reacted.
Spans are the rows of a ``[B, T]`` batch (one row per turn, verl-agent's layout) or, with
``span_index``, any set of tokens inside rows (one row per trajectory, several turns per row).

For every span j with response entropy proxy h_j (Eq. 13, mean token entropy over the span) in
group G (all responses of all trajectories rolled out from one task):

    if max_G h - min_G h <= eps:   w_j = 1
    else:                          u_j = (h_j - min_G h) / (max_G h - min_G h)          (Eq. 14)
                                   w_j = exp(-tau u_j) / mean_{k in G} exp(-tau u_k)      (Eq. 15)

and every token of span j gets advantage ``w_j * A``. The mean of w over each group is 1; lower
entropy (lower relative surprisal proxy) gets w > 1, which pushes entropy down on positive and up
on negative responses (Eq. 17-19). All reductions are segment reductions: no Python loop over
groups or spans.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from aem.algorithms.advantages import AdvantageInputs
from aem.checks import (
    bool_mask,
    compute_dtype,
    require_finite,
    require_integer,
    require_ndim,
    require_non_negative,
    require_nonempty,
    require_shape,
    require_tensor,
)


def _check_span_index(span_index: Tensor, mask: Tensor, num_spans: int | None) -> int:
    """Validate ``span_index`` against ``mask``; return the number of spans S."""
    require_integer("span_index", span_index)
    require_shape("span_index", span_index, mask.shape)
    on_response = span_index[mask]
    if on_response.numel() and int(on_response.min()) < 0:
        raise ValueError(
            "span_index must hold a span id >= 0 on every response token (response_mask True), "
            f"got {int(on_response.min())}"
        )
    largest = int(span_index.max()) if span_index.numel() else -1
    smallest = int(span_index.min()) if span_index.numel() else -1
    if smallest < -1:
        raise ValueError(f"span_index must be >= -1 (-1 marks non-response tokens), got {smallest}")
    if num_spans is None:
        return largest + 1
    if largest >= num_spans:
        raise ValueError(f"span_index must be < the number of spans ({num_spans}), got {largest}")
    return num_spans


def _span_sums(
    values: Tensor, mask: Tensor, span_index: Tensor | None, num_spans: int
) -> tuple[Tensor, Tensor]:
    """Sum of ``values`` and token count over each span's masked tokens: ``([S], [S])``.

    Values outside the mask are never read into the sums (a NaN there does no harm).
    """
    if span_index is None:
        sums = torch.where(mask, values, 0.0).sum(dim=1)
        counts = mask.view(torch.uint8).sum(dim=1, dtype=torch.int32)  # no int64 copy of the mask
        return sums, counts
    flat_ids = torch.where(mask, span_index, 0).flatten()  # off-span tokens add 0 to span 0
    sums = values.new_zeros(num_spans).index_add_(
        0, flat_ids, torch.where(mask, values, 0.0).flatten()
    )
    counts = torch.zeros(num_spans, dtype=torch.int32, device=values.device).index_add_(
        0, flat_ids, mask.flatten().to(torch.int32)
    )
    return sums, counts


def response_entropy(
    token_entropy: Tensor,
    response_mask: Tensor,
    span_index: Tensor | None = None,
    *,
    num_spans: int | None = None,
) -> Tensor:
    """Length-normalised response entropy h_j = mean of token entropy over span j (Eq. 13).

    Args:
        token_entropy: ``[B, T]`` full-vocabulary entropy of each token's distribution (Eq. 5).
        response_mask: ``[B, T]`` bool or 0/1, True on the policy's own response tokens.
        span_index: optional ``[B, T]`` int, span id in ``0..S-1`` on each response token, -1
            elsewhere. When None, each row is one span (S = B).
        num_spans: S when ``span_index`` is given (default: ``span_index.max() + 1``).

    Returns:
        ``[S]`` fp32 (fp64 for fp64 input). A span with no tokens gets 0 (callers exclude it:
        :func:`modulate_advantages` gives it weight 1 and keeps it out of the statistics).

    Raises:
        ValueError: non-2-D or mismatched shapes, empty input, non-finite entropy on a response
            token, ``span_index`` not integer, < -1, -1 on a response token, or >= ``num_spans``.
    """
    require_tensor("token_entropy", token_entropy)
    require_ndim("token_entropy", token_entropy, 2)
    require_nonempty("token_entropy", token_entropy)
    mask = bool_mask("response_mask", response_mask, token_entropy.shape)
    entropy, _ = _response_entropy_and_counts(token_entropy, mask, span_index, num_spans)
    return entropy


def _response_entropy_and_counts(
    token_entropy: Tensor, mask: Tensor, span_index: Tensor | None, num_spans: int | None
) -> tuple[Tensor, Tensor]:
    """Checked Eq. 13 on a boolean mask; also returns each span's token count."""
    entropy = token_entropy.detach().to(compute_dtype(token_entropy.dtype))
    if span_index is None:
        if num_spans is not None and num_spans != entropy.shape[0]:
            raise ValueError(
                f"group_index must have one id per row when span_index is None "
                f"(length {entropy.shape[0]}), got length {num_spans}"
            )
        spans = entropy.shape[0]
    else:
        require_tensor("span_index", span_index)
        spans = _check_span_index(span_index, mask, num_spans)
    sums, counts = _span_sums(entropy, mask, span_index, spans)
    if not bool(torch.isfinite(sums).all()):
        require_finite("token_entropy", token_entropy, where=mask)
    return sums / counts.clamp(min=1).to(sums.dtype), counts


def aem_coefficients(
    span_entropy: Tensor,
    group_index: Tensor,
    temperature: float = 1.0,
    eps: float = 1e-6,
    stat_mask: Tensor | None = None,
) -> Tensor:
    """AEM weights w_j per span (Eq. 14-15), group-wise min-max normalised and self-calibrated.

    Args:
        span_entropy: ``[S]`` response entropy proxy h_j (Eq. 13; see :func:`response_entropy`).
        group_index: ``[S]`` int group id of each span (all spans of all trajectories rolled out
            from one task share one id; ids need not be contiguous).
        temperature: tau >= 0; larger gives sharper separation, 0 turns AEM off (all w = 1).
        eps: a group whose entropy range ``max - min`` is ``<= eps`` gets w = 1 for every span.
        stat_mask: optional ``[S]`` bool; spans with False (padding or duplicated rows a framework
            adds) do not enter min, max or mean, and get the weight their entropy implies with u
            clipped to ``[0, 1]``. A group with no True span gets w = 1.

    Returns:
        ``[S]`` weights, no gradient, fp32 (fp64 for fp64 input). Over the True spans of each
        non-degenerate group their mean is 1, and w is strictly decreasing in h.

    Raises:
        ValueError: wrong shapes or dtypes, empty input, non-finite entropy, negative or
            non-finite ``temperature`` or ``eps``.
    """
    require_tensor("span_entropy", span_entropy)
    require_ndim("span_entropy", span_entropy, 1)
    require_nonempty("span_entropy", span_entropy)
    entropy = span_entropy.detach().to(compute_dtype(span_entropy.dtype))
    require_finite("span_entropy", entropy)
    in_stats = None if stat_mask is None else bool_mask("stat_mask", stat_mask, entropy.shape)
    group, num_groups = dense_groups(group_index, entropy.shape)
    weights, _ = _coefficients(entropy, group, num_groups, temperature, eps, in_stats)
    return weights


def dense_groups(group_index: Tensor, shape: torch.Size) -> tuple[Tensor, int]:
    """Map arbitrary integer group ids to ``0..G-1``; return ``(dense ids [S], G)``."""
    require_tensor("group_index", group_index)
    require_integer("group_index", group_index)
    require_shape("group_index", group_index, shape)
    _, group = torch.unique(group_index, return_inverse=True)
    return group, int(group.max()) + 1


def _coefficients(
    entropy: Tensor,
    group: Tensor,
    num_groups: int,
    temperature: float,
    eps: float,
    in_stats: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Eq. 14-15 on dense group ids; returns ``(weights [S], degenerate [G])``."""
    require_non_negative("temperature", temperature)
    require_non_negative("eps", eps)
    inf = float("inf")
    low_values = entropy if in_stats is None else torch.where(in_stats, entropy, inf)
    high_values = entropy if in_stats is None else torch.where(in_stats, entropy, -inf)
    group_min = entropy.new_full((num_groups,), inf).scatter_reduce(
        0, group, low_values, reduce="amin"
    )
    group_max = entropy.new_full((num_groups,), -inf).scatter_reduce(
        0, group, high_values, reduce="amax"
    )
    spread = group_max - group_min  # -inf for a group with no span in the statistics
    degenerate = ~(spread > eps)

    low = torch.where(degenerate, 0.0, group_min)[group]
    scale = torch.where(degenerate, 1.0, spread)[group]
    unnormalised = torch.exp(-temperature * ((entropy - low) / scale).clamp(0.0, 1.0))
    counted = unnormalised if in_stats is None else torch.where(in_stats, unnormalised, 0.0)
    group_sum = entropy.new_zeros(num_groups).index_add_(0, group, counted)
    counted_group = group if in_stats is None else group[in_stats]
    group_count = torch.bincount(counted_group, minlength=num_groups).to(entropy.dtype)
    group_mean = torch.where(degenerate, 1.0, group_sum / group_count.clamp(min=1.0))
    weights = torch.where(degenerate[group], 1.0, unnormalised / group_mean[group])
    return weights, degenerate


class MaskSpans(NamedTuple):
    """What :func:`spans_from_mask` found: ``span_index [B, T]`` (span id on each masked token, -1
    elsewhere; ids numbered row by row, left to right) and ``span_row [S]`` (each span's row)."""

    span_index: Tensor
    span_row: Tensor

    @property
    def num_spans(self) -> int:
        return int(self.span_row.shape[0])


def spans_from_mask(response_mask: Tensor) -> MaskSpans:
    """One span per run (maximal contiguous segment) of each row's ``response_mask``.

    A row that holds a whole multi-turn session (verl's agent loop, TRL's tool calls) has 1 on
    the policy's tokens and 0 on observation / tool / padding tokens, so each run is one assistant
    turn: the response of Eq. 13. A row with one contiguous response gives one span, a row with no
    masked token none. Vectorised (no Python loop over rows or spans).

    Args:
        response_mask: ``[B, T]`` bool or 0/1.

    Returns:
        :class:`MaskSpans`; pass ``span_index`` and ``group_index = row_group[span_row]`` to
        :func:`modulate_advantages`.

    Raises:
        ValueError: a non-tensor or non-2-D mask.
    """
    require_tensor("response_mask", response_mask)
    require_ndim("response_mask", response_mask, 2)
    mask = response_mask if response_mask.dtype == torch.bool else response_mask != 0
    previous = torch.zeros_like(mask)
    previous[:, 1:] = mask[:, :-1]
    starts = mask & ~previous
    span_index = torch.where(mask, starts.flatten().cumsum(0).view_as(mask) - 1, -1)
    span_row = starts.nonzero()[:, 0]
    return MaskSpans(span_index, span_row)


class Modulation(NamedTuple):
    """What :func:`modulate` computed: the modulated advantages, and per span (``[S]``) the
    response entropy h (Eq. 13) and the weight w (Eq. 15), plus the logging statistics."""

    advantages: Tensor
    span_entropy: Tensor
    weights: Tensor
    stats: dict[str, Tensor]


def modulate_advantages(
    advantages: Tensor,
    token_entropy: Tensor,
    response_mask: Tensor,
    group_index: Tensor,
    span_index: Tensor | None = None,
    temperature: float = 1.0,
    eps: float = 1e-6,
    stat_mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Rescale each response's advantage by its AEM weight (Sec. 4.1: every token of span j gets
    ``w_j * A``).

    Args:
        advantages: ``[B, T]`` base-estimator advantages (GRPO, DAPO, GSPO, PPO/GAE, RLOO, ...).
        token_entropy: ``[B, T]`` token entropy from the old-log-prob pass (no extra forward).
        response_mask: ``[B, T]`` bool or 0/1, True on response tokens.
        group_index: ``[S]`` int group id per span (S = B without ``span_index``).
        span_index: optional ``[B, T]`` span id per response token (-1 elsewhere) for rows that
            hold several turns; see :func:`response_entropy`.
        temperature, eps, stat_mask: as in :func:`aem_coefficients`. A span with no response
            token gets weight 1 and stays out of the statistics.

    Returns:
        ``(modulated [B, T], stats)``: advantages in their own dtype, multiplied by the (constant,
        gradient-free) span weight on response tokens and unchanged elsewhere; ``stats`` holds 0-d
        tensors for logging: ``aem/weight_{min,max,std}`` over counted spans,
        ``aem/degenerate_group_frac``, ``aem/entropy_{mean,pos,neg}`` (mean span entropy overall and
        of spans whose mean advantage is > 0 or < 0; NaN when there is none).

    Raises:
        ValueError: as :func:`response_entropy` and :func:`aem_coefficients`, plus non-finite
            advantages on response tokens or ``group_index`` of the wrong length.
    """
    result = modulate(
        advantages,
        token_entropy,
        response_mask,
        group_index,
        span_index,
        temperature,
        eps,
        stat_mask,
    )
    return result.advantages, result.stats


def modulate(
    advantages: Tensor,
    token_entropy: Tensor,
    response_mask: Tensor,
    group_index: Tensor,
    span_index: Tensor | None = None,
    temperature: float = 1.0,
    eps: float = 1e-6,
    stat_mask: Tensor | None = None,
) -> Modulation:
    """:func:`modulate_advantages` that also returns the span entropies and weights it computed
    (a trainer that logs them or predicts the entropy drift needs no second pass)."""
    with torch.no_grad():
        view = span_view(
            advantages, token_entropy, response_mask, group_index, span_index, stat_mask
        )
        weights, degenerate = _coefficients(
            view.entropy, view.group, view.num_groups, temperature, eps, view.counted
        )
        weights = torch.where(view.has_tokens, weights, 1.0)
        token_weight = per_token(weights, span_index)
        modulated = torch.where(view.mask, view.base * token_weight, view.base)
        stats = _modulation_stats(
            weights, view.entropy, view.advantage_sums, view.counted, degenerate
        )
    return Modulation(modulated.to(advantages.dtype), view.entropy, weights, stats)


class SpanView(NamedTuple):
    """The checked per-span view every modulation starts from (:func:`span_view`)."""

    mask: Tensor  # [B, T] bool response tokens
    base: Tensor  # [B, T] detached advantages in the compute dtype
    entropy: Tensor  # [S] response entropy h (Eq. 13)
    counts: Tensor  # [S] response tokens per span
    has_tokens: Tensor  # [S] bool: the span has a response token
    counted: Tensor  # [S] bool: has tokens and is in stat_mask (enters the statistics)
    group: Tensor  # [S] dense group ids
    num_groups: int
    advantage_sums: Tensor  # [S] sum of the base advantage over the span's tokens


def span_view(
    advantages: Tensor,
    token_entropy: Tensor,
    response_mask: Tensor,
    group_index: Tensor,
    span_index: Tensor | None,
    stat_mask: Tensor | None,
) -> SpanView:
    """Check a modulation's inputs (ValueError naming the argument) and compute per span its
    entropy, token count, group and advantage sum; call under ``torch.no_grad()``."""
    require_tensor("advantages", advantages)
    require_ndim("advantages", advantages, 2)
    require_nonempty("advantages", advantages)
    require_tensor("token_entropy", token_entropy)
    require_shape("token_entropy", token_entropy, advantages.shape)
    mask = bool_mask("response_mask", response_mask, advantages.shape)
    require_tensor("group_index", group_index)
    require_ndim("group_index", group_index, 1)
    num_spans = int(group_index.shape[0])
    entropy, counts = _response_entropy_and_counts(token_entropy, mask, span_index, num_spans)
    has_tokens = counts > 0
    stat = None if stat_mask is None else bool_mask("stat_mask", stat_mask, entropy.shape)
    counted = has_tokens if stat is None else has_tokens & stat
    group, num_groups = dense_groups(group_index, entropy.shape)
    base = advantages.detach().to(compute_dtype(advantages.dtype))
    advantage_sums, _ = _span_sums(base, mask, span_index, num_spans)
    if not bool(torch.isfinite(advantage_sums).all()):
        require_finite("advantages", advantages, where=mask)
    return SpanView(
        mask, base, entropy, counts, has_tokens, counted, group, num_groups, advantage_sums
    )


def per_token(span_values: Tensor, span_index: Tensor | None) -> Tensor:
    """Broadcast ``[S]`` span values to the tokens: ``[B, 1]`` (a row per span) or ``[B, T]``
    (each token its span's value; off-span tokens read span 0 and must be masked by the caller)."""
    return span_values[:, None] if span_index is None else span_values[span_index.clamp(min=0)]


def _modulation_stats(
    weights: Tensor, entropy: Tensor, advantage_sums: Tensor, counted: Tensor, degenerate: Tensor
) -> dict[str, Tensor]:
    """Logging statistics over the spans that entered the group statistics."""
    nan = weights.new_tensor(float("nan"))

    def masked_mean(values: Tensor, where: Tensor) -> Tensor:
        return values[where].mean() if bool(where.any()) else nan

    counted_weights = weights[counted] if bool(counted.any()) else weights.new_ones(1)
    return {
        "aem/weight_min": counted_weights.min(),
        "aem/weight_max": counted_weights.max(),
        "aem/weight_std": counted_weights.std(unbiased=False),
        "aem/degenerate_group_frac": degenerate.to(weights.dtype).mean(),
        "aem/entropy_mean": masked_mean(entropy, counted),
        "aem/entropy_pos": masked_mean(entropy, counted & (advantage_sums > 0)),
        "aem/entropy_neg": masked_mean(entropy, counted & (advantage_sums < 0)),
    }


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class ModulationConfig:
    """Hyper-parameters of the modulations: AEM's ``temperature`` (tau of Eq. 15) and ``eps``
    (the entropy range under which a group is left alone); EMPG's k (Eq. 10), k_f (Eq. 11) and
    zeta (Eq. 8), its published defaults (:mod:`aem.algorithms.empg`)."""

    temperature: float = 1.0
    eps: float = 1e-6
    empg_k: float = 1.0
    empg_k_future: float = 1.0
    empg_zeta: float = 0.1


ModulationFn = Callable[[Tensor, Tensor, AdvantageInputs, ModulationConfig], Modulation]
"""``fn(advantages [S, T], token_entropy [S, T], spans, config) -> Modulation``: rescale the base
estimator's advantages of the spans (one row per response; ``spans`` is the per-span view the
estimators get: mask, group, trajectory, turn, scores, ...). The result's ``span_entropy`` is the
response entropy of Eq. 13 and ``weights`` the per-span weight (1 where nothing changed)."""

_MODULATIONS: dict[str, ModulationFn] = {}


def register_modulation(name: str) -> Callable[[ModulationFn], ModulationFn]:
    """Decorator registering a :data:`ModulationFn` under ``name`` (a name holds one function)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"modulation name must be a non-empty str, got {name!r}")

    def wrap(fn: ModulationFn) -> ModulationFn:
        if name in _MODULATIONS and _MODULATIONS[name] is not fn:
            raise ValueError(f"modulation name {name!r} is already registered")
        _MODULATIONS[name] = fn
        return fn

    return wrap


def get_modulation(name: str) -> ModulationFn:
    """The modulation registered as ``name``; unknown names raise listing the valid ones."""
    if name not in _MODULATIONS:
        raise ValueError(f"modulation must be one of {modulations()}, got {name!r}")
    return _MODULATIONS[name]


def modulations() -> list[str]:
    """Registered modulation names, sorted."""
    return sorted(_MODULATIONS)


@register_modulation("aem")
def aem_modulation(
    advantages: Tensor, token_entropy: Tensor, spans: AdvantageInputs, config: ModulationConfig
) -> Modulation:
    """AEM (Eq. 13-15) over the spans' task groups: :func:`modulate`."""
    return modulate(
        advantages,
        token_entropy,
        spans.response_mask,
        spans.group_id,
        temperature=config.temperature,
        eps=config.eps,
    )


@register_modulation("none")
def no_modulation(
    advantages: Tensor, token_entropy: Tensor, spans: AdvantageInputs, config: ModulationConfig
) -> Modulation:
    """The base estimator alone: advantages unchanged, weight 1, no statistics."""
    entropy = response_entropy(token_entropy, spans.response_mask)
    return Modulation(advantages, entropy, torch.ones_like(entropy), {})
