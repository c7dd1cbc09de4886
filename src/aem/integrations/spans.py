"""Rows to responses for the framework adapters: which spans AEM weighs, and the one call that
weighs them.

verl and TRL hand over ``[B, T]`` rows with a loss mask; a row may hold a whole multi-turn session
(assistant turns with 1 in the mask, observation / tool tokens with 0 between them). The paper's
unit is the response of one turn (Eq. 13), so by default (``span="turn"``) every run of a row's
mask is one span, grouped with the row's task; ``span="row"`` gives the whole row one weight (the
behaviour before per-turn spans, for rows known to hold one response). :func:`modulate_spans` is
the single place where the adapters call the modulation itself.

Torch only: no verl or TRL import.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from aem.algorithms.empg import empg_modulate
from aem.algorithms.modulation import Modulation, ModulationConfig, modulate, spans_from_mask
from aem.checks import require_integer, require_ndim, require_shape, require_tensor

__all__ = [
    "INTEGRATION_MODULATIONS",
    "SPAN_GRANULARITIES",
    "RowSpans",
    "SpanGranularity",
    "modulate_rows",
    "modulate_spans",
    "require_integration_modulation",
    "require_span_granularity",
    "require_tokens",
    "row_spans",
    "turn_of_spans",
]

SpanGranularity = Literal["turn", "row"]
SPAN_GRANULARITIES: tuple[str, ...] = ("turn", "row")


def require_span_granularity(name: str, value: object) -> SpanGranularity:
    """Return ``value`` if it is ``"turn"`` or ``"row"``; else raise naming ``name``."""
    if value not in SPAN_GRANULARITIES:
        raise ValueError(f"{name} must be one of {list(SPAN_GRANULARITIES)}, got {value!r}")
    return value  # type: ignore[return-value]


class RowSpans(NamedTuple):
    """The spans of a batch of rows: ``span_index [B, T]`` (None for one span per row) and
    ``span_row [S]`` (each span's row)."""

    span_index: Tensor | None
    span_row: Tensor

    @property
    def num_spans(self) -> int:
        return int(self.span_row.shape[0])


def row_spans(mask: Tensor, span: SpanGranularity) -> RowSpans:
    """Spans of ``mask [B, T]`` (bool): one per run of each row (``"turn"``) or one per row
    (``"row"``). When every row holds exactly one run the two coincide, and the result is the
    one-span-per-row form (``span_index`` None), so single-turn batches take the core's row path
    and give bit for bit what they gave before per-turn spans."""
    rows = torch.arange(mask.shape[0], device=mask.device)
    if span == "row":
        return RowSpans(None, rows)
    found = spans_from_mask(mask)
    if found.num_spans == mask.shape[0] and torch.equal(found.span_row, rows):
        return RowSpans(None, rows)
    return RowSpans(found.span_index, found.span_row)


def require_tokens(name: str, mask: Tensor, counted: Tensor | None) -> None:
    """Every row of ``mask [B, T]`` (bool) that ``counted [B]`` keeps (all rows when None) must
    hold at least one masked token; else raise naming ``name`` and the first such row."""
    empty = ~mask.any(dim=1)
    if counted is not None:
        empty = empty & counted
    if bool(empty.any()):
        row = int(empty.nonzero()[0, 0])
        raise ValueError(
            f"{name} has no token in row {row} ({int(empty.sum())} such row(s)); every row "
            "must hold a response, or be left out of the statistics (stat_mask False)"
        )


INTEGRATION_MODULATIONS: tuple[str, ...] = ("aem", "empg")
"""The modulations an adapter can apply (``none`` is the adapter switched off)."""


def require_integration_modulation(name: str, value: object) -> str:
    """Return ``value`` if it is one of :data:`INTEGRATION_MODULATIONS`; else raise naming
    ``name``."""
    if value not in INTEGRATION_MODULATIONS:
        raise ValueError(f"{name} must be one of {list(INTEGRATION_MODULATIONS)}, got {value!r}")
    return value  # type: ignore[return-value]


def turn_of_spans(span_row: Tensor) -> Tensor:
    """``[S]`` position of each span among its row's spans (spans numbered row by row, in token
    order, as :func:`row_spans` numbers them): the turn index within the row's session."""
    position = torch.arange(span_row.shape[0], device=span_row.device)
    first = torch.full_like(position, span_row.shape[0]).scatter_reduce(
        0, span_row, position, reduce="amin", include_self=False
    )
    return position - first[span_row]


def modulate_spans(
    advantages: Tensor,
    token_entropy: Tensor,
    mask: Tensor,
    span_index: Tensor | None,
    span_group: Tensor,
    *,
    config: ModulationConfig,
    modulation: str = "aem",
    span_row: Tensor | None = None,
    span_stat_mask: Tensor | None = None,
) -> Modulation:
    """The modulation every adapter applies, on spans already found (see :func:`row_spans`).

    ``aem``: :func:`aem.algorithms.modulation.modulate` with ``config.temperature`` and ``eps``.
    ``empg``: :func:`aem.algorithms.empg.empg_modulate` over the whole batch, each row one
    trajectory whose spans are its steps in order (``span_row [S]`` required; a row with one span
    has no next step), with ``config.empg_*``; ``weights`` are then EMPG's scales g."""
    if modulation == "aem":
        return modulate(
            advantages,
            token_entropy,
            mask,
            span_group,
            span_index,
            config.temperature,
            config.eps,
            span_stat_mask,
        )
    require_integration_modulation("modulation", modulation)
    if span_row is None:
        raise ValueError("span_row must be given for modulation='empg' (rows are trajectories)")
    result = empg_modulate(
        advantages,
        token_entropy,
        mask,
        span_group,
        span_index,
        trajectory_index=span_row,
        turn_index=turn_of_spans(span_row),
        k=config.empg_k,
        k_future=config.empg_k_future,
        zeta=config.empg_zeta,
        stat_mask=span_stat_mask,
    )
    return Modulation(result.advantages, result.span_entropy, result.weights, result.stats)


def modulate_rows(
    advantages: Tensor,
    token_entropy: Tensor,
    mask: Tensor,
    row_group: Tensor,
    *,
    span: SpanGranularity,
    config: ModulationConfig,
    modulation: str = "aem",
    stat_mask: Tensor | None = None,
) -> tuple[Modulation, RowSpans]:
    """:func:`modulate_spans` on rows: split ``mask [B, T]`` into spans (``span``), give each span
    its row's group ``row_group [B]`` and stat flag ``stat_mask [B]`` (each row is one
    trajectory for ``modulation="empg"``).

    Raises:
        ValueError: ``row_group`` or ``stat_mask`` not one entry per row, a row that
            ``stat_mask`` keeps (every row when None) with no masked token, and everything
            :func:`aem.modulate_advantages` refuses.
    """
    require_tensor("response_mask", mask)
    require_ndim("response_mask", mask, 2)
    rows = mask.shape[0]
    require_tensor("group_index", row_group)
    require_integer("group_index", row_group)
    require_shape("group_index", row_group, (rows,))
    if stat_mask is not None:
        require_tensor("stat_mask", stat_mask)
        require_shape("stat_mask", stat_mask, (rows,))
        stat_mask = stat_mask.to(device=mask.device, dtype=torch.bool)
    mask = mask if mask.dtype == torch.bool else mask != 0
    require_tokens("response_mask", mask, stat_mask)
    spans = row_spans(mask, span)
    if spans.num_spans == 0:
        raise ValueError("response_mask has no token in any row: there is no response to weigh")
    result = modulate_spans(
        advantages,
        token_entropy,
        mask,
        spans.span_index,
        row_group.to(mask.device)[spans.span_row],
        config=config,
        modulation=modulation,
        span_row=spans.span_row,
        span_stat_mask=None if stat_mask is None else stat_mask[spans.span_row],
    )
    return result, spans
