"""AEM on a verl ``DataProto``: the config, the group ids, and the one function trainers call.

Everything here runs on the driver after verl's advantage estimator, on CPU tensors, and needs
only ``verl.protocol`` (no Ray, no GPU).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from verl.protocol import DataProto

from aem.algorithms.modulation import ModulationConfig
from aem.checks import require_non_negative, require_shape, require_tensor
from aem.integrations.spans import (
    SpanGranularity,
    modulate_rows,
    require_integration_modulation,
    require_span_granularity,
)

__all__ = [
    "AEMConfig",
    "apply_aem",
    "dense_group_ids",
    "first_occurrence_mask",
    "trainer_aem_config",
]

_CONFIG_PREFIX = "algorithm.aem"
_KEYS = (
    "enable",
    "modulation",
    "temperature",
    "eps",
    "span",
    "empg_k",
    "empg_k_future",
    "empg_zeta",
)


@dataclass(frozen=True)
class AEMConfig:
    """``algorithm.aem`` of a verl config.

    Attributes:
        enable: apply AEM after the base advantage estimator (False: verl's advantages untouched).
        temperature: tau >= 0 of Eq. 15 (0 gives w = 1 everywhere).
        eps: a group whose response-entropy range ``max - min`` is ``<= eps`` keeps w = 1.
        span: ``"turn"`` (default): every run of a row's ``response_mask`` (one assistant turn;
            tool / observation tokens between turns are 0) is one response with its own weight;
            ``"row"``: one weight per row (for rows known to hold one response).
        modulation: ``"aem"`` (default) or ``"empg"`` (EMPG, Eq. 7-12 of arXiv 2509.09265, over
            the whole batch; each row is one trajectory whose spans are its steps, so the
            future-clarity bonus needs multi-turn rows) with ``empg_k``, ``empg_k_future``,
            ``empg_zeta`` (its published defaults 1, 1, 0.1).

    Raises:
        ValueError: naming the field (``algorithm.aem.<field>``) for a non-bool ``enable``, a
            negative / non-finite / non-numeric number, a ``span`` other than ``turn`` /
            ``row``, or a ``modulation`` other than ``aem`` / ``empg``.
    """

    enable: bool = False
    temperature: float = 1.0
    eps: float = 1e-6
    span: SpanGranularity = "turn"
    modulation: str = "aem"
    empg_k: float = 1.0
    empg_k_future: float = 1.0
    empg_zeta: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.enable, bool):
            raise ValueError(f"{_CONFIG_PREFIX}.enable must be a bool, got {self.enable!r}")
        require_integration_modulation(f"{_CONFIG_PREFIX}.modulation", self.modulation)
        for name in ("temperature", "eps", "empg_k", "empg_k_future", "empg_zeta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{_CONFIG_PREFIX}.{name} must be a number, got {value!r}")
            require_non_negative(f"{_CONFIG_PREFIX}.{name}", float(value))
            object.__setattr__(self, name, float(value))
        require_span_granularity(f"{_CONFIG_PREFIX}.span", self.span)

    def modulation_config(self) -> ModulationConfig:
        """The core's hyper-parameters of both modulations."""
        return ModulationConfig(
            temperature=self.temperature,
            eps=self.eps,
            empg_k=self.empg_k,
            empg_k_future=self.empg_k_future,
            empg_zeta=self.empg_zeta,
        )

    @classmethod
    def from_algorithm_config(cls, algorithm: Mapping[str, Any] | None) -> AEMConfig:
        """Read ``algorithm.aem`` from verl's ``config.algorithm`` (a DictConfig or a mapping).

        A missing ``aem`` section gives the defaults (AEM off). Unknown keys raise ``ValueError``
        so that a typo such as ``algorithm.aem.temprature`` is not silently ignored.
        """
        section = None if algorithm is None else algorithm.get("aem")
        if section is None:
            return cls()
        if not isinstance(section, Mapping):
            try:
                section = dict(section)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{_CONFIG_PREFIX} must be a mapping with keys {', '.join(_KEYS)}, "
                    f"got {section!r}"
                ) from None
        unknown = sorted(set(section) - set(_KEYS))
        if unknown:
            raise ValueError(
                f"{_CONFIG_PREFIX} has unknown key(s) {unknown}; expected {', '.join(_KEYS)}"
            )
        return cls(**{str(key): value for key, value in section.items()})


def trainer_aem_config(config: Mapping[str, Any]) -> AEMConfig:
    """:class:`AEMConfig` of a whole verl trainer config, checked against the rest of it.

    Raises:
        ValueError: as :class:`AEMConfig`, or AEM enabled together with
            ``algorithm.rollout_correction.bypass_mode=True`` (that mode skips the old-log-prob
            pass, the only pass that computes the token entropy AEM needs).
    """
    algorithm = config.get("algorithm")
    aem_config = AEMConfig.from_algorithm_config(algorithm)
    rollout_correction = None if algorithm is None else algorithm.get("rollout_correction")
    if aem_config.enable and rollout_correction and rollout_correction.get("bypass_mode", False):
        raise ValueError(
            "algorithm.aem.enable=True needs the token entropy of verl's old-log-prob pass, which "
            "algorithm.rollout_correction.bypass_mode=True skips; set bypass_mode=False"
        )
    return aem_config


def dense_group_ids(uid: Sequence[Any] | np.ndarray) -> Tensor:
    """Map verl's per-row group labels (``non_tensor_batch["uid"]``, usually strings) to dense
    int64 ids ``0..G-1`` numbered in order of first appearance.

    Raises:
        ValueError: an empty or non-1-D ``uid``.
    """
    labels = np.asarray(uid, dtype=object)
    if labels.ndim != 1 or labels.shape[0] == 0:
        raise ValueError(f"uid must be a non-empty 1-D array of labels, got shape {labels.shape}")
    first_id: dict[Any, int] = {}
    ids = [first_id.setdefault(label, len(first_id)) for label in labels.tolist()]
    return torch.tensor(ids, dtype=torch.int64)


def first_occurrence_mask(
    data: DataProto, id_key: str = "traj_uid", content_key: str = "input_ids"
) -> Tensor:
    """``[B]`` bool: False on every row that repeats an earlier row, True elsewhere.

    Two rows are the same when they share ``non_tensor_batch[id_key]`` (verl-agent's trajectory
    id) and ``batch[content_key]`` (the row's tokens, prompt and response). verl-agent's
    ``adjust_batch`` (``mode="copy"``) pads a batch to a multiple of the data-parallel size by
    appending such copies; pass this mask as ``stat_mask`` so they count once in the AEM group
    statistics (they are still modulated like the row they copy).

    Raises:
        ValueError: a missing key or a row-count mismatch.
    """
    if id_key not in data.non_tensor_batch:
        raise ValueError(f"non_tensor_batch has no {id_key!r} (needed to find duplicated rows)")
    if content_key not in data.batch:
        raise ValueError(f"batch has no {content_key!r} (needed to find duplicated rows)")
    content = data.batch[content_key]
    rows = content.shape[0]
    trajectory = dense_group_ids(data.non_tensor_batch[id_key])
    if trajectory.shape[0] != rows:
        raise ValueError(
            f"non_tensor_batch[{id_key!r}] must have one entry per row ({rows}), "
            f"got {trajectory.shape[0]}"
        )
    keyed = torch.cat([trajectory[:, None], content.reshape(rows, -1).to(torch.int64)], dim=1)
    _, row_class = torch.unique(keyed, dim=0, return_inverse=True)
    position = torch.arange(rows)
    first = torch.full((rows,), rows, dtype=torch.int64).scatter_reduce(
        0, row_class, position, reduce="amin"
    )
    return first[row_class] == position


def apply_aem(
    data: DataProto,
    config: AEMConfig,
    token_entropy: Tensor | None = None,
    *,
    stat_mask: Tensor | None = None,
    group_key: str = "uid",
) -> dict[str, float]:
    """Modulate ``data.batch["advantages"]`` in place with AEM (Eq. 13-15); return ``aem/*``
    metrics for verl's tracker.

    ``batch["response_mask"]`` selects the policy's own tokens; in verl's multi-turn rows (the
    agent loop keeps a whole session in one row) tool and observation tokens are 0 there, so with
    ``config.span="turn"`` (default) every run of a row's mask is one response (span) with its own
    weight. A row with one contiguous response (single-turn verl, verl-agent's one row per turn)
    is one span either way; ``span="row"`` gives every row one weight. The group of a span is its
    row's ``non_tensor_batch[group_key]`` (verl's ``uid``: all rollouts of one prompt / task).
    The result equals :func:`aem.modulate_advantages` on the same tensors with
    ``span_index = aem.algorithms.spans_from_mask(response_mask).span_index`` and the uids of the
    spans' rows mapped to dense int ids; returns are not changed (a critic's targets stay the
    base estimator's).

    Args:
        data: a DataProto after ``compute_advantage`` (needs ``advantages``, ``response_mask``
            and ``non_tensor_batch[group_key]``).
        config: :class:`AEMConfig`; with ``enable=False`` nothing is read or written.
        token_entropy: ``[B, T]`` token entropy of the old-log-prob pass, aligned with the
            response; default ``data.batch["entropy"]`` (the V1 trainer's field name; the legacy
            trainer calls it ``entropys`` and pops it, see :mod:`aem.integrations.verl.legacy`).
        stat_mask: optional ``[B]`` bool, False for rows whose spans must not enter the group
            statistics (padding or duplicated rows, see :func:`first_occurrence_mask`); only
            these rows may have an empty ``response_mask``.
        group_key: the ``non_tensor_batch`` key holding the group label.

    Returns:
        ``{"aem/weight_min": ..., ...}`` as Python floats (see :func:`aem.modulate_advantages`),
        or ``{}`` when AEM is disabled.

    Raises:
        ValueError: missing fields, mismatched shapes, non-finite values on response tokens, a
            row that ``stat_mask`` keeps with no token in ``response_mask``.
    """
    if not config.enable:
        return {}
    batch = data.batch
    for key in ("advantages", "response_mask"):
        if key not in batch:
            raise ValueError(f"data.batch has no {key!r}; run verl's compute_advantage first")
    if token_entropy is None:
        if "entropy" not in batch:
            raise ValueError("data.batch has no 'entropy' and no token_entropy was given")
        token_entropy = batch["entropy"]
    require_tensor("token_entropy", token_entropy)
    advantages = batch["advantages"]
    require_shape("token_entropy", token_entropy, advantages.shape)
    if group_key not in data.non_tensor_batch:
        raise ValueError(f"data.non_tensor_batch has no {group_key!r} (the AEM group label)")
    group_index = dense_group_ids(data.non_tensor_batch[group_key])
    if stat_mask is not None:
        require_tensor("stat_mask", stat_mask)
        stat_mask = stat_mask.to(advantages.device)
    response_mask = require_tensor("response_mask", batch["response_mask"])
    require_shape("response_mask", response_mask, advantages.shape)
    result, _ = modulate_rows(
        advantages,
        token_entropy.to(advantages.device),
        response_mask.to(advantages.device),
        group_index.to(advantages.device),
        span=config.span,
        config=config.modulation_config(),
        modulation=config.modulation,
        stat_mask=stat_mask,
    )
    batch["advantages"] = result.advantages
    return {name: float(value) for name, value in result.stats.items()}
