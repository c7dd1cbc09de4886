"""Entropy-Modulated Policy Gradients (EMPG; Wang et al. 2025, arXiv 2509.09265, Sec. 3).

EMPG is the nearest published peer of AEM: it also rescales each agent step's advantage by a
decreasing function of the step's entropy, but over the whole *batch* (not per group), and it adds
a "future clarity" bonus from the entropy of the *next* step of the same trajectory. A step is one
span (one response; see :mod:`aem.algorithms.modulation` for the two layouts).

Equations, as numbered in the paper and in its published pseudocode (project page
https://empgseed-seed.github.io, ``compute_empg_advantage``), for a batch of steps j with base
advantage A_j (the trajectory's outcome advantage, e.g. GRPO):

    H_j      = mean token entropy over step j's tokens                 (Sec. 3, step uncertainty)
    Hn_j     = (H_j - min_batch H) / (max_batch H - min_batch H + eps)   (Eq. 12, eps = 1e-8)
    g_j      = exp(-k Hn_j) / (mean_batch exp(-k Hn) + eps)               (Eq. 10, self-calibrating)
    f_j      = exp(-k_f Hn_j)                                             (Eq. 11, future clarity)
    A_mod,j  = g_j A_j + zeta f_{next(j)}   if j has a next step in its trajectory,
               g_j A_j                      otherwise                     (Eq. 8)
    A_fin,j  = A_mod,j - mean_batch A_mod                                  (Eq. 7, zero-mean)

with the pseudocode's defaults k = 1, k_f = 1, zeta = 0.1. Eq. 10-12 and the defaults are read
from the project page's pseudocode; the bonus of Eq. 8 (added to the step whose *next* step in the
same trajectory exists, valued at that next step's f) and the final zero-mean shift of Eq. 7 follow
the rest of that pseudocode as reproduced in public re-implementations, with the scaling applied
to each step's own tokens. The mean of Eq. 7 is taken over steps (one value per step: the mean of
its tokens' modulated advantages, which is the value every token holds for outcome estimators),
and the shift is applied to every response token of the batch.

Choices beyond the paper, all explicit arguments: ``batch_index`` stacks several independent
batches (the lab's seeds) so every ``batch`` statistic above is taken per batch; ``stat_mask``
False spans (padding, duplicated rows) stay out of min, max and both means, get g and f from their
own entropy with Hn clipped to [0, 1], are never another step's next step, and still receive their
own bonus and the shift; spans without response tokens are not steps (advantages unchanged). The
next step of j is the counted step of j's trajectory with the smallest turn index greater than
j's; a batch without any counted span is left unchanged. Everything is computed without
gradient in fp32 (fp64 for fp64 input) by segment reductions: no Python loop over batches,
trajectories or spans.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from aem.algorithms.advantages import AdvantageInputs
from aem.algorithms.modulation import (
    Modulation,
    ModulationConfig,
    per_token,
    register_modulation,
    span_view,
)
from aem.checks import require_integer, require_non_negative, require_shape, require_tensor

__all__ = ["EMPGModulation", "empg_modulate", "empg_modulate_advantages"]


class EMPGModulation(NamedTuple):
    """What :func:`empg_modulate` computed: the final advantages (Eq. 7) and per span (``[S]``)
    the step entropy H, the scale g (Eq. 10), the bonus zeta f(H_next) it received (Eq. 8; 0 when
    it has no next step) and the shift subtracted from it (Eq. 7), plus logging statistics."""

    advantages: Tensor
    span_entropy: Tensor
    weights: Tensor
    bonus: Tensor
    shift: Tensor
    stats: dict[str, Tensor]


def empg_modulate_advantages(*args, **kwargs) -> tuple[Tensor, dict[str, Tensor]]:
    """EMPG's advantages (Eq. 7-12) and logging statistics: :func:`empg_modulate`'s arguments,
    its ``(advantages, stats)`` (as :func:`aem.algorithms.modulation.modulate_advantages`)."""
    result = empg_modulate(*args, **kwargs)
    return result.advantages, result.stats


def empg_modulate(
    advantages: Tensor,
    token_entropy: Tensor,
    response_mask: Tensor,
    group_index: Tensor,
    span_index: Tensor | None = None,
    *,
    trajectory_index: Tensor | None = None,
    turn_index: Tensor | None = None,
    batch_index: Tensor | None = None,
    k: float = 1.0,
    k_future: float = 1.0,
    zeta: float = 0.1,
    eps: float = 1e-8,
    stat_mask: Tensor | None = None,
) -> EMPGModulation:
    """EMPG (module docstring) with the call shape of :func:`aem.algorithms.modulation.modulate`.

    Args:
        advantages: ``[B, T]`` base advantages (the trajectory outcome advantage on every token).
        token_entropy: ``[B, T]`` token entropy from the old-log-prob pass.
        response_mask: ``[B, T]`` bool or 0/1, True on response tokens.
        group_index: ``[S]`` int group id per span (S = B without ``span_index``). EMPG's
            statistics are batch-level, so groups only check that a trajectory stays in one group.
        span_index: optional ``[B, T]`` span id per response token (-1 elsewhere), as in
            :func:`aem.algorithms.modulation.response_entropy`.
        trajectory_index: ``[S]`` int trajectory id per span; required when ``zeta > 0``.
        turn_index: ``[S]`` int turn (step order) of each span within its trajectory; required
            when ``zeta > 0``; unique within a trajectory among counted spans.
        batch_index: optional ``[S]`` int id of the independent batch each span belongs to;
            None treats everything as one batch (the paper).
        k, k_future, zeta: the hyper-parameters of Eq. 10, Eq. 11 and Eq. 8 (>= 0).
        eps: the epsilon of Eq. 10 and Eq. 12 (>= 0).
        stat_mask: optional ``[S]`` bool; False spans stay out of the statistics (docstring).

    Returns:
        :class:`EMPGModulation`; ``advantages`` in the input dtype, unchanged off the response
        tokens. ``stats`` holds 0-d tensors: ``empg/scale_{min,max,std}`` (g over counted spans),
        ``empg/bonus_mean`` (mean bonus over counted spans), ``empg/next_step_frac`` (counted
        spans with a next step), ``empg/shift_mean`` (mean Eq. 7 shift over batches),
        ``empg/entropy_mean``.

    Raises:
        ValueError: naming the argument: shapes, dtypes, empty input, non-finite entropy or
            advantages on response tokens, negative or non-finite hyper-parameters, missing
            ``trajectory_index``/``turn_index`` with ``zeta > 0``, a turn repeated within a
            trajectory, or a trajectory spread over several groups or batches.
    """
    for name, value in (("k", k), ("k_future", k_future), ("zeta", zeta), ("eps", eps)):
        require_non_negative(name, value)

    with torch.no_grad():
        view = span_view(
            advantages, token_entropy, response_mask, group_index, span_index, stat_mask
        )
        entropy, has_tokens, counted = view.entropy, view.has_tokens, view.counted
        group = view.group
        batch, num_batches = _batch_ids(batch_index, entropy.shape, group.device)
        span_advantage = view.advantage_sums / view.counts.clamp(min=1).to(view.base.dtype)

        normalised = _batch_min_max(entropy, batch, num_batches, counted, eps)  # Eq. 12
        unscaled = torch.exp(-k * normalised)
        mean_unscaled = _batch_mean(unscaled, batch, num_batches, counted)
        batch_counted = torch.bincount(batch[counted], minlength=num_batches) > 0
        scaled = has_tokens & batch_counted[batch]  # a batch with no counted span keeps g = 1
        scale = torch.where(scaled, unscaled / (mean_unscaled[batch] + eps), 1.0)  # Eq. 10
        clarity = torch.exp(-k_future * normalised)  # Eq. 11

        bonus = torch.zeros_like(entropy)
        if zeta > 0.0:
            following = _next_step(
                trajectory_index, turn_index, group, batch, has_tokens, counted, entropy.shape
            )
            has_next = following >= 0
            bonus = torch.where(has_next, zeta * clarity[following.clamp(min=0)], 0.0)  # Eq. 8
        else:
            has_next = torch.zeros_like(has_tokens)

        span_modulated = scale * span_advantage + bonus
        shift_per_batch = _batch_mean(span_modulated, batch, num_batches, counted)  # Eq. 7
        shift = torch.where(has_tokens, shift_per_batch[batch], 0.0)

        token_scale, token_offset = (
            per_token(scale, span_index),
            per_token(bonus - shift, span_index),
        )
        final = torch.where(view.mask, view.base * token_scale + token_offset, view.base)
        stats = _empg_stats(
            scale, bonus, has_next, shift_per_batch, entropy, counted, batch_counted
        )
    return EMPGModulation(final.to(advantages.dtype), entropy, scale, bonus, shift, stats)


def _batch_ids(batch_index: Tensor | None, shape: torch.Size, device: torch.device):
    """Dense batch ids ``[S]`` and their number (one batch when ``batch_index`` is None)."""
    if batch_index is None:
        return torch.zeros(shape, dtype=torch.long, device=device), 1
    require_tensor("batch_index", batch_index)
    require_integer("batch_index", batch_index)
    require_shape("batch_index", batch_index, shape)
    _, dense = torch.unique(batch_index, return_inverse=True)
    return dense, int(dense.max()) + 1


def _batch_min_max(values: Tensor, batch: Tensor, num: int, counted: Tensor, eps: float) -> Tensor:
    """Eq. 12 per batch over the counted spans; uncounted spans clipped to [0, 1]."""
    inf = float("inf")
    low = values.new_full((num,), inf).scatter_reduce(
        0, batch, torch.where(counted, values, inf), reduce="amin"
    )
    high = values.new_full((num,), -inf).scatter_reduce(
        0, batch, torch.where(counted, values, -inf), reduce="amax"
    )
    empty = ~torch.isfinite(low)
    low = torch.where(empty, 0.0, low)
    denominator = torch.where(empty, 1.0, high - low + eps)
    safe = torch.where(denominator > 0, denominator, 1.0)
    scaled = torch.where(denominator[batch] > 0, (values - low[batch]) / safe[batch], 0.0)
    return scaled.clamp(0.0, 1.0)


def _batch_mean(values: Tensor, batch: Tensor, num: int, counted: Tensor) -> Tensor:
    """Mean of ``values`` over the counted spans of each batch (0 for a batch without any)."""
    sums = values.new_zeros(num).index_add_(0, batch, torch.where(counted, values, 0.0))
    number = torch.bincount(batch[counted], minlength=num).to(values.dtype)
    return sums / number.clamp(min=1.0)


def _next_step(
    trajectory_index: Tensor | None,
    turn_index: Tensor | None,
    group: Tensor,
    batch: Tensor,
    has_tokens: Tensor,
    counted: Tensor,
    shape: torch.Size,
) -> Tensor:
    """``[S]`` span index of each span's next counted step in its trajectory, -1 if none."""
    for name, value in (("trajectory_index", trajectory_index), ("turn_index", turn_index)):
        if value is None:
            raise ValueError(f"{name} must be given when zeta > 0 (the future bonus), got None")
        require_tensor(name, value)
        require_integer(name, value)
        require_shape(name, value, shape)
    _, trajectory = torch.unique(trajectory_index, return_inverse=True)
    _require_one_owner(trajectory, group, has_tokens, trajectory_index, "group_index")
    _require_one_owner(trajectory, batch, has_tokens, trajectory_index, "batch_index")

    following = torch.full(shape, -1, dtype=torch.long, device=group.device)
    steps = has_tokens.nonzero().squeeze(1)
    if steps.numel() == 0:
        return following
    # Order steps by (trajectory, turn); a counted step sorts before an uncounted one of its turn.
    order = torch.argsort((~counted[steps]).to(torch.int8), stable=True)
    order = order[torch.argsort(turn_index[steps][order], stable=True)]
    order = order[torch.argsort(trajectory[steps][order], stable=True)]
    sorted_steps = steps[order]
    same_trajectory = trajectory[sorted_steps[1:]] == trajectory[sorted_steps[:-1]]
    both_counted = counted[sorted_steps[1:]] & counted[sorted_steps[:-1]]
    repeated = same_trajectory & both_counted
    repeated &= turn_index[sorted_steps[1:]] == turn_index[sorted_steps[:-1]]
    if bool(repeated.any()):
        span = int(sorted_steps[1:][repeated][0])
        raise ValueError(
            f"turn_index must be unique within a trajectory, got turn {int(turn_index[span])} "
            f"twice in trajectory_index {int(trajectory_index[span])}"
        )
    number = sorted_steps.shape[0]
    position = torch.arange(number, device=steps.device)
    candidate = torch.where(counted[sorted_steps], position, number)
    # Smallest counted position at or after p (suffix minimum), then strictly after p.
    suffix = torch.flip(torch.cummin(torch.flip(candidate, (0,)), 0).values, (0,))
    after = torch.cat([suffix[1:], suffix.new_full((1,), number)])
    valid = after < number
    target = after.clamp(max=number - 1)
    valid &= trajectory[sorted_steps[target]] == trajectory[sorted_steps]
    following[sorted_steps] = torch.where(valid, sorted_steps[target], -1)
    return following


def _require_one_owner(
    trajectory: Tensor, owner: Tensor, has_tokens: Tensor, trajectory_index: Tensor, name: str
) -> None:
    """Every step of a trajectory must carry the same ``owner`` id (group or batch)."""
    first = torch.full((int(trajectory.max()) + 1,), -1, dtype=torch.long, device=owner.device)
    first.scatter_(0, trajectory[has_tokens], owner[has_tokens])
    split = has_tokens & (owner != first[trajectory])
    if bool(split.any()):
        span = int(split.nonzero()[0, 0])
        raise ValueError(
            f"trajectory_index {int(trajectory_index[span])} must belong to one {name} id, "
            f"got spans of it in several"
        )


def _empg_stats(
    scale: Tensor,
    bonus: Tensor,
    has_next: Tensor,
    shift_per_batch: Tensor,
    entropy: Tensor,
    counted: Tensor,
    used_batches: Tensor,
) -> dict[str, Tensor]:
    """Logging statistics over the counted spans."""
    nan = scale.new_tensor(float("nan"))
    any_counted = bool(counted.any())
    counted_scale = scale[counted] if any_counted else scale.new_ones(1)
    return {
        "empg/scale_min": counted_scale.min(),
        "empg/scale_max": counted_scale.max(),
        "empg/scale_std": counted_scale.std(unbiased=False),
        "empg/bonus_mean": bonus[counted].mean() if any_counted else nan,
        "empg/next_step_frac": has_next[counted].to(scale.dtype).mean() if any_counted else nan,
        "empg/shift_mean": shift_per_batch[used_batches].mean() if any_counted else nan,
        "empg/entropy_mean": entropy[counted].mean() if any_counted else nan,
    }


@register_modulation("empg")
def empg_modulation(
    advantages: Tensor, token_entropy: Tensor, spans: AdvantageInputs, config: ModulationConfig
) -> Modulation:
    """EMPG (Eq. 7-12) over the whole batch, the next step taken within each trajectory by turn:
    :func:`empg_modulate` with ``config.empg_k``, ``empg_k_future``, ``empg_zeta``. The result's
    ``weights`` are the scales g (Eq. 10); the bonus and the zero-mean shift are additive."""
    result = empg_modulate(
        advantages,
        token_entropy,
        spans.response_mask,
        spans.group_id,
        trajectory_index=spans.traj_id,
        turn_index=spans.turn,
        k=config.empg_k,
        k_future=config.empg_k_future,
        zeta=config.empg_zeta,
    )
    return Modulation(result.advantages, result.span_entropy, result.weights, result.stats)
