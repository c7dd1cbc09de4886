"""Entropy-drift analysis: the quadrants of Analysis A and the first-order drift of Eq. 16-17.

Theorem 3.2.2 gives the entropy drift of a natural-gradient step on one sampled response as
``A * (surprisal - H)``. AEM's proxy for the relative surprisal is the span entropy relative to its
group mean, so each span falls in one of four quadrants by the sign of its advantage and by the
side of the group mean its entropy lies on:

- ``pos_low``  (A > 0, h < mean): pushes entropy down,
- ``pos_high`` (A > 0, h >= mean): pushes entropy up,
- ``neg_low``  (A < 0, h < mean): pushes entropy up,
- ``neg_high`` (A < 0, h >= mean): pushes entropy down.

Masking the loss of the entropy-decreasing quadrants makes entropy rise and the opposite masking
makes it fall (the paper's Fig. 2); :func:`predicted_entropy_drift` is the batch's first-order
prediction that the trainer logs beside the entropy change it then measures.
"""

from __future__ import annotations

import torch
from torch import Tensor

from aem.algorithms.modulation import dense_groups
from aem.checks import bool_mask, compute_dtype, require_ndim, require_shape, require_tensor

QUADRANTS: tuple[str, ...] = ("pos_low", "pos_high", "neg_low", "neg_high")
"""Quadrant names, in the order of the codes :func:`span_quadrants` returns (0..3)."""

ENTROPY_DECREASING: tuple[str, ...] = ("pos_low", "neg_high")
ENTROPY_INCREASING: tuple[str, ...] = ("pos_high", "neg_low")
QUADRANT_MASKS: tuple[str, ...] = ("decreasing", "increasing", *QUADRANTS)
"""What :func:`quadrant_keep_mask` accepts as one name: an entropy-moving pair or a quadrant."""


def group_relative_entropy(
    span_entropy: Tensor, group_index: Tensor, stat_mask: Tensor | None = None
) -> Tensor:
    """``h_j - mean_G h`` per span: AEM's proxy for the relative surprisal (Eq. 11, 13).

    Spans with ``stat_mask`` False do not enter the group mean.
    """
    require_tensor("span_entropy", span_entropy)
    require_ndim("span_entropy", span_entropy, 1)
    entropy = span_entropy.detach().to(compute_dtype(span_entropy))
    group, num_groups = dense_groups(group_index, entropy.shape)
    counted = (
        torch.ones_like(entropy, dtype=torch.bool)
        if stat_mask is None
        else bool_mask("stat_mask", stat_mask, entropy.shape)
    )
    sums = entropy.new_zeros(num_groups).index_add_(0, group, torch.where(counted, entropy, 0.0))
    counts = torch.bincount(group[counted], minlength=num_groups).clamp(min=1).to(entropy.dtype)
    return entropy - (sums / counts)[group]


def span_quadrants(
    span_advantage: Tensor,
    span_entropy: Tensor,
    group_index: Tensor,
    stat_mask: Tensor | None = None,
) -> Tensor:
    """Quadrant code per span: index into :data:`QUADRANTS`, or -1 where the advantage is 0."""
    require_tensor("span_advantage", span_advantage)
    require_shape("span_advantage", span_advantage, span_entropy.shape)
    relative = group_relative_entropy(span_entropy, group_index, stat_mask)
    high = (relative >= 0).long()
    code = torch.where(span_advantage > 0, high, 2 + high)
    return torch.where(span_advantage == 0, -1, code)


def quadrant_keep_mask(quadrant: Tensor, masked: str | tuple[str, ...] | list[str]) -> Tensor:
    """Bool ``[S]``: False on spans in the ``masked`` quadrant(s) (Analysis A), True elsewhere.

    ``masked`` may also be ``"decreasing"`` or ``"increasing"`` for the two entropy-moving pairs.
    """
    if isinstance(masked, str):
        pairs = {"decreasing": ENTROPY_DECREASING, "increasing": ENTROPY_INCREASING}
        names = pairs.get(masked, (masked,))
    else:
        names = tuple(masked)
    unknown = [name for name in names if name not in QUADRANTS]
    if unknown:
        raise ValueError(
            f"masked must name quadrants from {QUADRANTS} or 'decreasing'/'increasing', "
            f"got {masked!r}"
        )
    keep = torch.ones_like(quadrant, dtype=torch.bool)
    for name in names:
        keep &= quadrant != QUADRANTS.index(name)
    return keep


def predicted_entropy_drift(
    span_advantage: Tensor,
    span_entropy: Tensor,
    group_index: Tensor,
    weights: Tensor | None = None,
    stat_mask: Tensor | None = None,
) -> dict[str, Tensor]:
    """First-order entropy drift the batch predicts, total and per quadrant (Eq. 16-17).

    Each span contributes ``w_j * A_j * (h_j - mean_G h)`` (``w = 1`` without AEM), the proxy of
    ``A * (surprisal - H)`` in Theorem 3.2.2, divided by the number of counted spans. Its sign is
    what the paper predicts for the entropy change the update causes; its scale is that of a
    unit natural-gradient step, so compare signs and trends, not magnitudes.

    Returns 0-d tensors ``drift/total`` and ``drift/<quadrant>`` for each quadrant.
    """
    relative = group_relative_entropy(span_entropy, group_index, stat_mask)
    advantage = span_advantage.detach().to(relative.dtype)
    weight = torch.ones_like(relative) if weights is None else weights.detach().to(relative.dtype)
    counted = (
        torch.ones_like(relative, dtype=torch.bool)
        if stat_mask is None
        else bool_mask("stat_mask", stat_mask, relative.shape)
    )
    contribution = torch.where(counted, weight * advantage * relative, 0.0)
    scale = counted.sum().clamp(min=1).to(relative.dtype)
    quadrant = span_quadrants(span_advantage, span_entropy, group_index, stat_mask)
    drift = {"drift/total": contribution.sum() / scale}
    for code, name in enumerate(QUADRANTS):
        drift[f"drift/{name}"] = torch.where(quadrant == code, contribution, 0.0).sum() / scale
    return drift
