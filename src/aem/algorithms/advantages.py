"""Base advantage estimators for batches of turns, selectable by name (verl ``core_algos`` style).

Batch layout (verl-agent): one row per turn. Row ``i`` is the response generated at turn
``turn[i]`` of trajectory ``traj_id[i]``, rolled out for task group ``group_id[i]``. Every
estimator has the signature ``fn(inputs, config) -> (advantages [B, T], returns [B, T])``, both
zero outside ``response_mask``; AEM (``aem.algorithms.modulation``) rescales the result later.

Estimators:

- ``grpo``: ``(score - group mean) / (group std + eps)`` (Shao et al. 2024), std Bessel-corrected
  as ``torch.std``; a group with a single sample gets mean 0 and std 1, as in verl.
  ``norm_by_std=False`` gives Dr.GRPO (Liu et al. 2025). ``std_scope="batch"`` divides by the
  std of all the batch's samples instead of the group's (TRL's ``scale_rewards="batch"``; TRL's
  ``"group"`` is the default, its ``"none"`` is ``norm_by_std=False``; TRL adds 1e-4, set
  ``epsilon``). ``grpo_stats`` picks the samples:
  ``"turn"`` (the default): every turn row of the group is a sample (verl-agent's default,
  ``compute_mean_std_cross_steps=True``).
  ``"trajectory"``: one score per trajectory, the score of its earliest turn. verl-agent with
  ``compute_mean_std_cross_all_data=False`` keeps the first row it meets of each trajectory and
  its rollout stores rows in turn order, so that is the same row; choosing it by ``turn`` keeps
  the result independent of row order. Each row is still normalised with its *own* score, so a
  per-turn invalid-action penalty moves that row's advantage.
- ``drgrpo``: ``score - group mean``.
- ``rloo``: ``score - mean of the other trajectories' scores`` over the trajectories of the group
  (Ahmadian et al. 2024; DeepSWE/rLLM leave-one-out); a one-trajectory group gets 0. Trajectory
  scores are chosen as for ``grpo_stats="trajectory"``. When every row of a trajectory carries
  the same score this equals verl's ``n/(n-1) * (score - mean)`` for groups of two or more
  trajectories; a one-trajectory group gets 0 here and in verl's vectorised ``rloo``, while verl's
  loop ``rloo`` keeps its raw score.
- ``gae``: GAE (Schulman et al. 2016) over the concatenated response tokens of each trajectory in
  turn order: ``step_rewards[i]`` sits on the last response token of row ``i``, the value after
  the last token of a turn is the value of the next turn's first response token (0 after the last
  turn), ``returns = advantages + values``; the advantages are then whitened over all response
  tokens of the batch (``gae_whiten``, verl's ``masked_whiten``).
- ``gigpo``: GiGPO (Feng et al. 2025, Eq. 8): episode-level ``grpo`` advantage plus
  ``gigpo_step_weight`` times a step-level advantage: rows of one ``group_id`` acting from the
  same ``anchor_id`` form a step group; each row's discounted return from its turn to the end of
  its trajectory (``gigpo_step_gamma``) is normalised within the step group like ``grpo``
  (``norm_by_std`` applies to both levels); a singleton step group gets 0.

All math is vectorised segment arithmetic in float32 on the device of ``response_mask``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from aem.checks import (
    bool_mask,
    require_finite,
    require_integer,
    require_ndim,
    require_non_negative,
    require_nonempty,
    require_shape,
    require_tensor,
    require_unit_interval,
)

__all__ = [
    "GRPO_STATS",
    "AdvantageConfig",
    "AdvantageFn",
    "AdvantageInputs",
    "advantage_estimators",
    "compute_advantages",
    "get_advantage_estimator",
    "register_advantage_estimator",
]

GRPO_STATS: tuple[str, ...] = ("trajectory", "turn")
STD_SCOPES: tuple[str, ...] = ("group", "batch")
_WHITEN_EPS = 1e-8  # verl's masked_whiten: (x - mean) * rsqrt(var + 1e-8)


@dataclass(frozen=True)
class AdvantageInputs:
    """One batch of turn rows (see the module docstring for the layout)."""

    response_mask: Tensor  # [B, T] bool or 0/1 float: the row's response tokens
    group_id: Tensor  # [B] int64 task/prompt group (uid)
    traj_id: Tensor  # [B] int64 trajectory id, unique across the batch
    turn: Tensor  # [B] int64 turn index within the trajectory
    scores: Tensor  # [B] float outcome score of the row (group estimators)
    step_rewards: Tensor | None = None  # [B] reward received right after this turn
    values: Tensor | None = None  # [B, T] critic value per response token (gae)
    anchor_id: Tensor | None = None  # [B] int64 id of the observation the turn acted from


@dataclass(frozen=True)
class AdvantageConfig:
    """Hyper-parameters; defaults follow verl / verl-agent / the GiGPO paper."""

    epsilon: float = 1e-6
    norm_by_std: bool = True  # grpo and both gigpo levels; False = Dr.GRPO
    grpo_stats: str = "turn"  # "turn" (verl-agent's cross-step statistics) or "trajectory"
    std_scope: str = "group"  # grpo/gigpo episode std: "group" or "batch" (TRL scale_rewards)
    gamma: float = 1.0  # gae discount
    lam: float = 1.0  # gae lambda
    gae_whiten: bool = True  # verl whitens gae advantages over the batch's response tokens
    gigpo_step_weight: float = 1.0  # omega
    gigpo_step_gamma: float = 0.95  # discount of gigpo's step-level returns


AdvantageFn = Callable[[AdvantageInputs, AdvantageConfig], tuple[Tensor, Tensor]]

_ESTIMATORS: dict[str, AdvantageFn] = {}


def register_advantage_estimator(name: str) -> Callable[[AdvantageFn], AdvantageFn]:
    """Decorator registering an estimator under ``name`` (a name can hold one function)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"estimator name must be a non-empty str, got {name!r}")

    def wrap(fn: AdvantageFn) -> AdvantageFn:
        if name in _ESTIMATORS and _ESTIMATORS[name] is not fn:
            raise ValueError(f"advantage estimator name {name!r} is already registered")
        _ESTIMATORS[name] = fn
        return fn

    return wrap


def get_advantage_estimator(name: str) -> AdvantageFn:
    """The estimator registered as ``name``; unknown names raise listing the valid ones."""
    if name not in _ESTIMATORS:
        raise ValueError(
            f"advantage estimator must be one of {advantage_estimators()}, got {name!r}"
        )
    return _ESTIMATORS[name]


def advantage_estimators() -> list[str]:
    """Registered estimator names, sorted."""
    return sorted(_ESTIMATORS)


def compute_advantages(
    name: str, inputs: AdvantageInputs, config: AdvantageConfig | None = None
) -> tuple[Tensor, Tensor]:
    """Run estimator ``name``: ``(advantages [B, T], returns [B, T])``, zero outside the mask."""
    return get_advantage_estimator(name)(inputs, AdvantageConfig() if config is None else config)


# ----------------------------------------------------------------------------- validation


def _check_config(config: AdvantageConfig) -> None:
    if not isinstance(config, AdvantageConfig):
        raise ValueError(f"config must be an AdvantageConfig, got {type(config).__name__}")
    require_non_negative("config.epsilon", config.epsilon)
    require_non_negative("config.gigpo_step_weight", config.gigpo_step_weight)
    require_unit_interval("config.gamma", config.gamma)
    require_unit_interval("config.lam", config.lam)
    require_unit_interval("config.gigpo_step_gamma", config.gigpo_step_gamma)
    if config.std_scope not in STD_SCOPES:
        raise ValueError(f"config.std_scope must be one of {STD_SCOPES}, got {config.std_scope!r}")
    if config.grpo_stats not in GRPO_STATS:
        raise ValueError(
            f"config.grpo_stats must be one of {GRPO_STATS}, got {config.grpo_stats!r}"
        )


def _row_tensor(name: str, value: object, batch: int, device: torch.device) -> Tensor:
    tensor = require_tensor(name, value)
    require_shape(name, tensor, (batch,))
    if tensor.device != device:
        raise ValueError(f"{name} must be on {device} like response_mask, got {tensor.device}")
    return tensor


def _float_rows(name: str, value: object, batch: int, device: torch.device) -> Tensor:
    tensor = _row_tensor(name, value, batch, device)
    if tensor.dtype == torch.bool or tensor.dtype.is_complex:
        raise ValueError(f"{name} must have a real numeric dtype, got {tensor.dtype}")
    tensor = tensor.float()
    require_finite(name, tensor)
    return tensor


def _id_rows(name: str, value: object, batch: int, device: torch.device) -> Tensor:
    tensor = _row_tensor(name, value, batch, device)
    require_integer(name, tensor)
    return tensor.long()


def _mask_of(inputs: AdvantageInputs) -> Tensor:
    mask = require_tensor("response_mask", inputs.response_mask)
    require_ndim("response_mask", mask, 2)
    require_nonempty("response_mask", mask)
    return bool_mask("response_mask", mask, mask.shape)


# ----------------------------------------------------------------------------- batch layout


@dataclass(frozen=True)
class _Layout:
    """Dense group/trajectory indices and the turn-order links of one validated batch."""

    mask: Tensor  # [B, T] bool
    group: Tensor  # [B] dense group index
    num_groups: int
    traj: Tensor  # [B] dense trajectory index
    traj_group: Tensor  # [num_trajs] dense group of each trajectory
    first_row: Tensor  # [num_trajs] row of each trajectory's earliest turn
    next_row: Tensor  # [B] row of the same trajectory's next turn; B when there is none


def _layout(inputs: AdvantageInputs) -> _Layout:
    mask = _mask_of(inputs)
    batch, device = mask.shape[0], mask.device
    group_id = _id_rows("group_id", inputs.group_id, batch, device)
    traj_id = _id_rows("traj_id", inputs.traj_id, batch, device)
    turn = _id_rows("turn", inputs.turn, batch, device)
    if bool((turn < 0).any()):
        row = int((turn < 0).nonzero()[0, 0])
        raise ValueError(f"turn must be >= 0, got {int(turn[row])} at row {row}")

    group_ids, group = torch.unique(group_id, return_inverse=True)
    traj = torch.unique(traj_id, return_inverse=True)[1]
    order = torch.argsort(turn, stable=True)
    order = order[torch.argsort(traj[order], stable=True)]  # rows by (trajectory, turn)
    same_traj = traj[order[1:]] == traj[order[:-1]]
    repeated = same_traj & (turn[order[1:]] == turn[order[:-1]])
    if bool(repeated.any()):
        row = int(order[1:][repeated][0])
        raise ValueError(
            f"turn must be unique within a trajectory, got turn {int(turn[row])} twice "
            f"in traj_id {int(traj_id[row])}"
        )
    next_row = torch.full((batch,), batch, dtype=torch.long, device=device)
    next_row[order[:-1][same_traj]] = order[1:][same_traj]
    starts = torch.ones(batch, dtype=torch.bool, device=device)
    starts[1:] = ~same_traj
    first_row = order[starts]
    traj_group = group[first_row]
    split = group != traj_group[traj]
    if bool(split.any()):
        row = int(split.nonzero()[0, 0])
        raise ValueError(
            f"traj_id {int(traj_id[row])} must belong to one group_id, got "
            f"{int(group_ids[traj_group[traj[row]]])} and {int(group_id[row])}"
        )
    return _Layout(mask, group, len(group_ids), traj, traj_group, first_row, next_row)


# ----------------------------------------------------------------------------- segment math


def _segment_mean_std(values: Tensor, segment: Tensor, num: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-segment mean, Bessel-corrected std (1 for single samples) and count."""
    zeros = values.new_zeros(num)
    count = zeros.index_add(0, segment, torch.ones_like(values))
    mean = zeros.index_add(0, segment, values) / count
    squares = zeros.index_add(0, segment, (values - mean[segment]) ** 2)
    std = torch.where(count > 1, (squares / (count - 1).clamp(min=1)).sqrt(), 1.0)
    return mean, std, count


def _solve_turn_chain(offset: Tensor, scale: Tensor, next_row: Tensor) -> Tensor:
    """Solve ``x[i] = offset[i] + scale[i] * x[next_row[i]]`` (``x = 0`` past the last turn).

    ``next_row[i] == len(offset)`` marks a trajectory's last turn. Pointer jumping: each pass
    folds the next link into the current one, so a trajectory of L turns takes ceil(log2 L)
    vectorised passes instead of a Python loop over turns or rows.
    """
    batch = offset.shape[0]
    a = torch.cat([offset, offset.new_zeros(1)])
    b = torch.cat([scale, scale.new_zeros(1)])
    link = torch.cat([next_row, next_row.new_full((1,), batch)])
    while bool((link[:batch] != batch).any()):
        a, b, link = a + b * a[link], b * b[link], link[link]
    return a[:batch]


def _scores(inputs: AdvantageInputs, layout: _Layout) -> Tensor:
    return _float_rows("scores", inputs.scores, layout.mask.shape[0], layout.mask.device)


def _per_token(row_values: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask, row_values.unsqueeze(-1), 0.0)


def _trajectory_samples(scores: Tensor, layout: _Layout) -> tuple[Tensor, Tensor]:
    """One score per trajectory (its earliest turn's) and the trajectory's dense group."""
    return scores[layout.first_row], layout.traj_group


def _grpo_rows(scores: Tensor, layout: _Layout, config: AdvantageConfig, by_std: bool) -> Tensor:
    """Per-row GRPO / Dr.GRPO advantage with verl's singleton rule (mean 0, std 1)."""
    if config.grpo_stats == "trajectory":
        samples, sample_group = _trajectory_samples(scores, layout)
    else:
        samples, sample_group = scores, layout.group
    mean, std, count = _segment_mean_std(samples, sample_group, layout.num_groups)
    mean = torch.where(count > 1, mean, 0.0)
    centred = scores - mean[layout.group]
    if not by_std:
        return centred
    if config.std_scope == "batch":
        _, batch_std, _ = _segment_mean_std(samples, torch.zeros_like(sample_group), 1)
        return centred / (batch_std[0] + config.epsilon)
    return centred / (std[layout.group] + config.epsilon)


# ----------------------------------------------------------------------------- estimators


@register_advantage_estimator("grpo")
def grpo_advantage(inputs: AdvantageInputs, config: AdvantageConfig) -> tuple[Tensor, Tensor]:
    """GRPO: ``(score - mean) / (std + eps)`` over the group (Dr.GRPO if not ``norm_by_std``)."""
    _check_config(config)
    layout = _layout(inputs)
    scores = _scores(inputs, layout)
    advantages = _per_token(_grpo_rows(scores, layout, config, config.norm_by_std), layout.mask)
    return advantages, advantages


@register_advantage_estimator("drgrpo")
def drgrpo_advantage(inputs: AdvantageInputs, config: AdvantageConfig) -> tuple[Tensor, Tensor]:
    """Dr.GRPO: ``score - group mean`` (no std division, whatever ``norm_by_std`` says)."""
    _check_config(config)
    layout = _layout(inputs)
    scores = _scores(inputs, layout)
    advantages = _per_token(_grpo_rows(scores, layout, config, by_std=False), layout.mask)
    return advantages, advantages


@register_advantage_estimator("rloo")
def rloo_advantage(inputs: AdvantageInputs, config: AdvantageConfig) -> tuple[Tensor, Tensor]:
    """RLOO: ``score - mean of the other trajectories' scores`` (0 for a lone trajectory)."""
    _check_config(config)
    layout = _layout(inputs)
    scores = _scores(inputs, layout)
    samples, sample_group = _trajectory_samples(scores, layout)
    zeros = samples.new_zeros(layout.num_groups)
    total = zeros.index_add(0, sample_group, samples)
    count = zeros.index_add(0, sample_group, torch.ones_like(samples))
    others = (total[layout.group] - samples[layout.traj]) / (count[layout.group] - 1).clamp(min=1)
    row_adv = torch.where(count[layout.group] > 1, scores - others, 0.0)
    advantages = _per_token(row_adv, layout.mask)
    return advantages, advantages


@register_advantage_estimator("gae")
def gae_advantage(inputs: AdvantageInputs, config: AdvantageConfig) -> tuple[Tensor, Tensor]:
    """GAE chained across the turns of each trajectory; verl-style whitening (``gae_whiten``).

    Within a row the token loop runs with a zero bootstrap (vectorised over rows). The true
    advantage differs from that by ``(gamma*lam)**k * C`` at a token with ``k`` response tokens
    after it, where ``C = gamma * V(f) + gamma*lam * A(f)`` and ``f`` is the next turn's first
    response token (``C = 0`` after the last turn). ``A(f)`` itself follows a linear recursion
    over the turns, solved in ``_solve_turn_chain``.
    """
    _check_config(config)
    layout = _layout(inputs)
    mask = layout.mask
    batch, length = mask.shape
    if inputs.step_rewards is None:
        raise ValueError("step_rewards must be given for gae, got None")
    if inputs.values is None:
        raise ValueError("values must be given for gae, got None")
    rewards = _float_rows("step_rewards", inputs.step_rewards, batch, mask.device)
    values = require_tensor("values", inputs.values)
    require_shape("values", values, (batch, length))
    if values.device != mask.device:
        raise ValueError(f"values must be on {mask.device} like response_mask, got {values.device}")
    values = values.float()
    require_finite("values", values, where=mask)
    values = torch.where(mask, values, 0.0)
    empty = ~mask.any(dim=1)
    if bool(empty.any()):
        row = int(empty.nonzero()[0, 0])
        raise ValueError(
            f"response_mask must hold a response token in every row for gae, row {row}"
        )

    positions = torch.arange(length, device=mask.device)
    first_pos = torch.where(mask, positions, length).amin(dim=1)
    last_pos = torch.where(mask, positions, -1).amax(dim=1)
    rows = torch.arange(batch, device=mask.device)
    token_rewards = torch.zeros_like(values)
    token_rewards[rows, last_pos] = rewards

    gamma, decay = config.gamma, config.gamma * config.lam
    local = _gae_within_rows(token_rewards, values, mask, gamma, decay)

    tokens_after = mask.flip(1).cumsum(1).flip(1) - mask.long()
    reach = torch.pow(torch.full_like(values, decay), tokens_after.float())
    has_next = layout.next_row < batch
    next_row = torch.where(has_next, layout.next_row, 0)
    next_first_value = torch.where(has_next, values[next_row, first_pos[next_row]], 0.0)
    reach_first = reach[rows, first_pos]
    first_advantage = _solve_turn_chain(
        local[rows, first_pos] + reach_first * gamma * next_first_value,
        reach_first * decay,
        layout.next_row,
    )
    carry = gamma * next_first_value + decay * torch.where(has_next, first_advantage[next_row], 0.0)
    advantages = torch.where(mask, local + reach * carry.unsqueeze(-1), 0.0)
    returns = torch.where(mask, advantages + values, 0.0)
    if config.gae_whiten:
        advantages = _masked_whiten(advantages, mask)
    return advantages, returns


def _gae_within_rows(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, decay: float
) -> Tensor:
    """verl's token loop with a zero bootstrap after each row; masked tokens are skipped.

    Runs on time-major contiguous copies so each step reads one contiguous slice.
    """
    rewards_t, values_t = rewards.t().contiguous(), values.t().contiguous()
    mask_t = mask.t().contiguous()
    next_value = values.new_zeros(values.shape[0])
    running = values.new_zeros(values.shape[0])
    reversed_steps = []
    for t in range(values.shape[1] - 1, -1, -1):
        delta = rewards_t[t] + gamma * next_value - values_t[t]
        next_value = torch.where(mask_t[t], values_t[t], next_value)
        running = torch.where(mask_t[t], delta + decay * running, running)
        reversed_steps.append(running)
    return torch.stack(reversed_steps[::-1], dim=1)


def _masked_whiten(values: Tensor, mask: Tensor) -> Tensor:
    """verl's ``masked_whiten``: batch mean and Bessel-corrected variance over masked tokens."""
    count = mask.sum()
    if int(count) < 2:
        raise ValueError(f"response_mask must hold >= 2 tokens to whiten gae, got {int(count)}")
    mean = values[mask].mean()
    var = ((values[mask] - mean) ** 2).sum() / (count - 1)
    return torch.where(mask, (values - mean) * torch.rsqrt(var + _WHITEN_EPS), 0.0)


@register_advantage_estimator("gigpo")
def gigpo_advantage(inputs: AdvantageInputs, config: AdvantageConfig) -> tuple[Tensor, Tensor]:
    """GiGPO (Feng et al. 2025, Eq. 8): episode-level GRPO + omega * anchor-state step level."""
    _check_config(config)
    layout = _layout(inputs)
    batch, device = layout.mask.shape[0], layout.mask.device
    scores = _scores(inputs, layout)
    if inputs.step_rewards is None:
        raise ValueError("step_rewards must be given for gigpo, got None")
    if inputs.anchor_id is None:
        raise ValueError("anchor_id must be given for gigpo, got None")
    rewards = _float_rows("step_rewards", inputs.step_rewards, batch, device)
    anchor_id = _id_rows("anchor_id", inputs.anchor_id, batch, device)

    episode = _grpo_rows(scores, layout, config, config.norm_by_std)
    step_return = _solve_turn_chain(
        rewards, torch.full_like(rewards, config.gigpo_step_gamma), layout.next_row
    )
    pairs = torch.stack([layout.group, anchor_id], dim=1)
    anchor_groups, step_group = torch.unique(pairs, dim=0, return_inverse=True)
    mean, std, _ = _segment_mean_std(step_return, step_group, anchor_groups.shape[0])
    centred = step_return - mean[step_group]  # exactly 0 in a singleton step group
    step = centred / (std[step_group] + config.epsilon) if config.norm_by_std else centred
    advantages = _per_token(episode + config.gigpo_step_weight * step, layout.mask)
    return advantages, advantages
