"""Advantage estimators vs plain-Python float64 references, hand-computed cases and edge cases."""

from __future__ import annotations

import math
import random
import statistics
from collections import defaultdict
from dataclasses import dataclass, replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aem.algorithms.advantages import (
    AdvantageConfig,
    AdvantageInputs,
    advantage_estimators,
    compute_advantages,
    get_advantage_estimator,
    register_advantage_estimator,
)

EPS = 1e-6
SEEDS = settings(max_examples=40, deadline=None, derandomize=True)


# ----------------------------------------------------------------------------- random batches


@dataclass
class Row:
    group: int
    traj: int
    turn: int
    score: float
    reward: float
    anchor: int
    mask: list[bool]
    values: list[float]


def random_rows(seed: int, length: int = 6) -> list[Row]:
    """Ragged multi-turn batch: 1-4 groups x 1-4 trajectories x 1-5 turns, rows shuffled."""
    rng = random.Random(seed)
    num_groups = rng.randint(1, 4)
    group_ids = rng.sample(range(-1000, 10**6), num_groups)
    traj_ids = iter(rng.sample(range(10**9), 16))
    rows: list[Row] = []
    for group in group_ids:
        for _ in range(rng.randint(1, 4)):
            traj = next(traj_ids)
            turns = rng.randint(1, 5)
            outcome = rng.choice([0.0, 1.0, 10.0, round(rng.uniform(-2, 2), 3)])
            for turn in range(turns):
                penalty = -0.1 if rng.random() < 0.3 else 0.0
                reward = outcome if turn == turns - 1 else rng.choice([0.0, 0.0, 0.5])
                rows.append(
                    Row(
                        group=group,
                        traj=traj,
                        turn=turn,
                        score=outcome + penalty,
                        reward=reward,
                        anchor=0 if turn == 0 else rng.randint(0, 3),
                        mask=random_mask(rng, length),
                        values=[rng.gauss(0.0, 1.0) for _ in range(length)],
                    )
                )
    rng.shuffle(rows)
    return rows


def random_mask(rng: random.Random, length: int) -> list[bool]:
    """Right-padded, left-padded or holed response mask with at least one token."""
    size = rng.randint(1, length)
    style = rng.choice(["right", "left", "holes"])
    if style == "right":
        return [i < size for i in range(length)]
    if style == "left":
        return [i >= length - size for i in range(length)]
    mask = [rng.random() < 0.5 for _ in range(length)]
    mask[rng.randrange(length)] = True
    return mask


def to_inputs(rows: list[Row], mask_dtype: torch.dtype = torch.bool) -> AdvantageInputs:
    return AdvantageInputs(
        response_mask=torch.tensor([r.mask for r in rows]).to(mask_dtype),
        group_id=torch.tensor([r.group for r in rows], dtype=torch.int64),
        traj_id=torch.tensor([r.traj for r in rows], dtype=torch.int64),
        turn=torch.tensor([r.turn for r in rows], dtype=torch.int64),
        scores=torch.tensor([r.score for r in rows], dtype=torch.float32),
        step_rewards=torch.tensor([r.reward for r in rows], dtype=torch.float32),
        values=torch.tensor([r.values for r in rows], dtype=torch.float32),
        anchor_id=torch.tensor([r.anchor for r in rows], dtype=torch.int64),
    )


# ----------------------------------------------------------------------------- references


def mean_std(samples: list[float]) -> tuple[float, float]:
    """verl's group statistics: a single sample gets mean 0 and std 1."""
    if len(samples) == 1:
        return 0.0, 1.0
    return statistics.fmean(samples), statistics.stdev(samples)


def trajectory_scores(rows: list[Row]) -> dict[int, float]:
    """Score of each trajectory's earliest turn."""
    first: dict[int, Row] = {}
    for row in rows:
        if row.traj not in first or row.turn < first[row.traj].turn:
            first[row.traj] = row
    return {traj: row.score for traj, row in first.items()}


def group_samples(rows: list[Row], stats: str) -> dict[int, list[float]]:
    samples: dict[int, list[float]] = defaultdict(list)
    if stats == "turn":
        for row in rows:
            samples[row.group].append(row.score)
    else:
        group_of = {row.traj: row.group for row in rows}
        for traj, score in trajectory_scores(rows).items():
            samples[group_of[traj]].append(score)
    return samples


def reference_grpo(rows: list[Row], stats: str, by_std: bool) -> list[float]:
    samples = group_samples(rows, stats)
    out = []
    for row in rows:
        mean, std = mean_std(samples[row.group])
        out.append((row.score - mean) / (std + EPS) if by_std else row.score - mean)
    return out


def reference_rloo(rows: list[Row]) -> list[float]:
    group_of = {row.traj: row.group for row in rows}
    per_traj = trajectory_scores(rows)
    out = []
    for row in rows:
        others = [s for t, s in per_traj.items() if group_of[t] == row.group and t != row.traj]
        out.append(row.score - statistics.fmean(others) if others else 0.0)
    return out


def trajectories(rows: list[Row]) -> dict[int, list[int]]:
    """Row indices of each trajectory in turn order."""
    by_traj: dict[int, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_traj[row.traj].append(i)
    return {t: sorted(idx, key=lambda i: rows[i].turn) for t, idx in by_traj.items()}


def reference_gae(
    rows: list[Row], gamma: float, lam: float, whiten: bool
) -> tuple[list[list[float]], list[list[float]]]:
    """Reverse loop over each trajectory's concatenated response tokens (float64)."""
    length = len(rows[0].mask)
    adv = [[0.0] * length for _ in rows]
    ret = [[0.0] * length for _ in rows]
    for order in trajectories(rows).values():
        tokens = []  # (row, position, value, reward)
        for i in order:
            positions = [p for p in range(length) if rows[i].mask[p]]
            for p in positions:
                reward = rows[i].reward if p == positions[-1] else 0.0
                tokens.append((i, p, rows[i].values[p], reward))
        running, next_value = 0.0, 0.0
        for i, p, value, reward in reversed(tokens):
            running = reward + gamma * next_value - value + gamma * lam * running
            next_value = value
            adv[i][p] = running
            ret[i][p] = running + value
    if whiten:
        flat = [adv[i][p] for i, row in enumerate(rows) for p in range(length) if row.mask[p]]
        mean, std = statistics.fmean(flat), statistics.stdev(flat)
        scale = 1.0 / math.sqrt(std**2 + 1e-8)
        adv = [
            [(a - mean) * scale if row.mask[p] else 0.0 for p, a in enumerate(adv_row)]
            for row, adv_row in zip(rows, adv, strict=True)
        ]
    return adv, ret


def reference_gigpo(rows: list[Row], config: AdvantageConfig) -> list[float]:
    episode = reference_grpo(rows, config.grpo_stats, config.norm_by_std)
    step_return = [0.0] * len(rows)
    for order in trajectories(rows).values():
        running = 0.0
        for i in reversed(order):
            running = rows[i].reward + config.gigpo_step_gamma * running
            step_return[i] = running
    anchor_groups: dict[tuple[int, int], list[float]] = defaultdict(list)
    for row, g in zip(rows, step_return, strict=True):
        anchor_groups[(row.group, row.anchor)].append(g)
    out = []
    for row, g, e in zip(rows, step_return, episode, strict=True):
        members = anchor_groups[(row.group, row.anchor)]
        if len(members) == 1:
            step = 0.0
        else:
            mean, std = statistics.fmean(members), statistics.stdev(members)
            step = (g - mean) / (std + EPS) if config.norm_by_std else g - mean
        out.append(e + config.gigpo_step_weight * step)
    return out


def expand(rows: list[Row], per_row: list[float]) -> torch.Tensor:
    return torch.tensor(
        [[v if m else 0.0 for m in row.mask] for row, v in zip(rows, per_row, strict=True)],
        dtype=torch.float64,
    )


def assert_close(actual: torch.Tensor, expected: torch.Tensor | list) -> None:
    expected = torch.as_tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual.double(), expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- vs references


@SEEDS
@given(seed=st.integers(0, 2**32 - 1), stats=st.sampled_from(["trajectory", "turn"]))
def test_grpo_and_drgrpo_match_reference(seed: int, stats: str) -> None:
    rows = random_rows(seed)
    inputs = to_inputs(rows)
    for by_std in (True, False):
        config = AdvantageConfig(grpo_stats=stats, norm_by_std=by_std)
        adv, ret = compute_advantages("grpo", inputs, config)
        assert adv.dtype == torch.float32
        assert_close(adv, expand(rows, reference_grpo(rows, stats, by_std)))
        assert torch.equal(adv, ret)
    adv, _ = compute_advantages("drgrpo", inputs, AdvantageConfig(grpo_stats=stats))
    assert_close(adv, expand(rows, reference_grpo(rows, stats, by_std=False)))


@SEEDS
@given(seed=st.integers(0, 2**32 - 1))
def test_rloo_matches_reference(seed: int) -> None:
    rows = random_rows(seed)
    adv, ret = compute_advantages("rloo", to_inputs(rows))
    assert_close(adv, expand(rows, reference_rloo(rows)))
    assert torch.equal(adv, ret)


@SEEDS
@given(seed=st.integers(0, 2**32 - 1))
def test_rloo_equals_verl_form_when_scores_are_constant_per_trajectory(seed: int) -> None:
    rows = random_rows(seed)
    per_traj = trajectory_scores(rows)
    rows = [replace(row, score=per_traj[row.traj]) for row in rows]
    samples = group_samples(rows, "trajectory")
    verl = []
    for row in rows:
        n = len(samples[row.group])
        verl.append(
            n / (n - 1) * (row.score - statistics.fmean(samples[row.group])) if n > 1 else 0
        )
    adv, _ = compute_advantages("rloo", to_inputs(rows))
    assert_close(adv, expand(rows, verl))


@SEEDS
@given(
    seed=st.integers(0, 2**32 - 1),
    gamma=st.sampled_from([1.0, 0.99, 0.5, 0.0]),
    lam=st.sampled_from([1.0, 0.95, 0.0]),
    whiten=st.booleans(),
)
def test_gae_matches_per_trajectory_reverse_loop(
    seed: int, gamma: float, lam: float, whiten: bool
) -> None:
    rows = random_rows(seed)
    config = AdvantageConfig(gamma=gamma, lam=lam, gae_whiten=whiten)
    adv, ret = compute_advantages("gae", to_inputs(rows), config)
    ref_adv, ref_ret = reference_gae(rows, gamma, lam, whiten)
    assert_close(adv, ref_adv)
    assert_close(ret, ref_ret)


@SEEDS
@given(
    seed=st.integers(0, 2**32 - 1),
    stats=st.sampled_from(["trajectory", "turn"]),
    by_std=st.booleans(),
    step_gamma=st.sampled_from([0.95, 1.0, 0.0]),
    weight=st.sampled_from([1.0, 0.5]),
)
def test_gigpo_matches_reference(
    seed: int, stats: str, by_std: bool, step_gamma: float, weight: float
) -> None:
    rows = random_rows(seed)
    config = AdvantageConfig(
        grpo_stats=stats, norm_by_std=by_std, gigpo_step_gamma=step_gamma, gigpo_step_weight=weight
    )
    adv, ret = compute_advantages("gigpo", to_inputs(rows), config)
    assert_close(adv, expand(rows, reference_gigpo(rows, config)))
    assert torch.equal(adv, ret)


# ----------------------------------------------------------------------------- hand-computed


def single_turn(scores: list[float], groups: list[int] | None = None) -> AdvantageInputs:
    n = len(scores)
    return AdvantageInputs(
        response_mask=torch.tensor([[1, 1, 0]] * n, dtype=torch.float32),
        group_id=torch.tensor(groups or [7] * n),
        traj_id=torch.arange(n),
        turn=torch.zeros(n, dtype=torch.int64),
        scores=torch.tensor(scores),
    )


def test_grpo_drgrpo_rloo_by_hand_on_scores_10_0_0_10() -> None:
    inputs = single_turn([10.0, 0.0, 0.0, 10.0])
    std = math.sqrt((4 * 5.0**2) / 3)  # Bessel: squared deviations 25 each, over n - 1 = 3
    a = 5.0 / (std + EPS)  # about 0.8660
    grpo, _ = compute_advantages("grpo", inputs)
    assert_close(grpo, [[a, a, 0], [-a, -a, 0], [-a, -a, 0], [a, a, 0]])
    drgrpo, _ = compute_advantages("drgrpo", inputs)
    assert_close(drgrpo, [[5, 5, 0], [-5, -5, 0], [-5, -5, 0], [5, 5, 0]])
    no_std, _ = compute_advantages("grpo", inputs, AdvantageConfig(norm_by_std=False))
    assert_close(no_std, drgrpo)
    rloo, _ = compute_advantages("rloo", inputs)
    hi, lo = 10 - 10 / 3, 0 - 20 / 3  # score minus the mean of the other three
    assert_close(rloo, [[hi, hi, 0], [lo, lo, 0], [lo, lo, 0], [hi, hi, 0]])


def test_singleton_group_gets_mean_0_std_1_and_rloo_0() -> None:
    inputs = single_turn([3.0, 1.0, 2.0], groups=[1, 2, 2])
    grpo, _ = compute_advantages("grpo", inputs)
    b = 0.5 / (math.sqrt(0.5) + EPS)
    assert_close(grpo[:, 0], [3.0 / (1.0 + EPS), -b, b])
    rloo, _ = compute_advantages("rloo", inputs)
    assert_close(rloo[:, 0], [0.0, -1.0, 1.0])


def test_grpo_multi_turn_penalty_by_hand() -> None:
    # trajectory 0: turns scored 1.0 then 0.9 (invalid-action penalty); trajectory 1: one turn, 0.
    inputs = AdvantageInputs(
        response_mask=torch.ones(3, 2, dtype=torch.bool),
        group_id=torch.tensor([5, 5, 5]),
        traj_id=torch.tensor([11, 11, 12]),
        turn=torch.tensor([1, 0, 0]),
        scores=torch.tensor([0.9, 1.0, 0.0]),
    )
    # trajectory stats: samples {1.0, 0.0}: mean 0.5, std sqrt(0.5)
    s = math.sqrt(0.5) + EPS
    adv, _ = compute_advantages("grpo", inputs, AdvantageConfig(grpo_stats="trajectory"))
    assert_close(adv[:, 0], [0.4 / s, 0.5 / s, -0.5 / s])
    # turn stats (the default): samples {0.9, 1.0, 0.0}
    mean = 1.9 / 3
    std = math.sqrt(((0.9 - mean) ** 2 + (1.0 - mean) ** 2 + mean**2) / 2)
    adv, _ = compute_advantages("grpo", inputs)
    assert_close(adv[:, 0], [(x - mean) / (std + EPS) for x in (0.9, 1.0, 0.0)])
    # rloo: each row minus the other trajectory's score
    adv, _ = compute_advantages("rloo", inputs)
    assert_close(adv[:, 0], [0.9, 1.0, -1.0])


def two_turn_trajectory() -> AdvantageInputs:
    # tokens in order: turn 0 -> values .5 .2 ; turn 1 -> values .4 .3 ; reward 1 after turn 1
    return AdvantageInputs(
        response_mask=torch.tensor([[0, 1, 1], [1, 1, 0]], dtype=torch.float32),  # rows: t1, t0
        group_id=torch.tensor([0, 0]),
        traj_id=torch.tensor([3, 3]),
        turn=torch.tensor([1, 0]),
        scores=torch.tensor([1.0, 1.0]),
        step_rewards=torch.tensor([1.0, 0.0]),
        values=torch.tensor([[9.0, 0.4, 0.3], [0.5, 0.2, 9.0]]),
    )


def test_gae_by_hand_across_turns() -> None:
    inputs = two_turn_trajectory()
    # gamma .5, lam 1: A = discounted return - V; returns 1, .5, .25, .125 backwards
    config = AdvantageConfig(gamma=0.5, lam=1.0, gae_whiten=False)
    adv, ret = compute_advantages("gae", inputs, config)
    assert_close(adv, [[0, 0.5 - 0.4, 1 - 0.3], [0.125 - 0.5, 0.25 - 0.2, 0]])
    assert_close(ret, [[0, 0.5, 1.0], [0.125, 0.25, 0]])
    # lam 0: one-step TD error r + gamma V(next token, crossing the turn boundary) - V
    config = AdvantageConfig(gamma=0.5, lam=0.0, gae_whiten=False)
    adv, _ = compute_advantages("gae", inputs, config)
    assert_close(adv, [[0, 0.5 * 0.3 - 0.4, 1 - 0.3], [0.5 * 0.2 - 0.5, 0.5 * 0.4 - 0.2, 0]])


def test_gae_whitening_is_verl_masked_whiten() -> None:
    inputs = two_turn_trajectory()
    raw, _ = compute_advantages("gae", inputs, AdvantageConfig(gae_whiten=False))
    white, _ = compute_advantages("gae", inputs)
    flat = [0.6, 0.7, 0.5, 0.8]  # gamma = lam = 1: A = 1 - V
    mean, std = statistics.fmean(flat), statistics.stdev(flat)
    assert_close(raw, [[0, 0.6, 0.7], [0.5, 0.8, 0]])
    w = [(x - mean) / math.sqrt(std**2 + 1e-8) for x in flat]
    assert_close(white, [[0, w[0], w[1]], [w[2], w[3], 0]])


def test_gigpo_by_hand() -> None:
    # traj a: anchors s0 -> s1, rewards 0 then 1; traj b: anchors s0 -> s2, rewards 0, 0
    inputs = AdvantageInputs(
        response_mask=torch.ones(4, 1, dtype=torch.bool),
        group_id=torch.tensor([0, 0, 0, 0]),
        traj_id=torch.tensor([1, 1, 2, 2]),
        turn=torch.tensor([0, 1, 0, 1]),
        scores=torch.tensor([1.0, 1.0, 0.0, 0.0]),
        step_rewards=torch.tensor([0.0, 1.0, 0.0, 0.0]),
        anchor_id=torch.tensor([100, 101, 100, 102]),
    )
    config = AdvantageConfig(gigpo_step_gamma=0.5, grpo_stats="trajectory")
    # episode (trajectory statistics): {1, 0} -> +-0.5 / sqrt(0.5). step returns a: .5, 1; b: 0, 0.
    episode = 0.5 / (math.sqrt(0.5) + EPS)
    # step group s0 = {0.5, 0}: mean .25, std sqrt(2 * .25**2) ; s1, s2 singletons -> 0
    step = 0.25 / (math.sqrt(2 * 0.25**2) + EPS)
    adv, _ = compute_advantages("gigpo", inputs, config)
    assert_close(adv[:, 0], [episode + step, episode, -episode - step, -episode])
    adv, _ = compute_advantages("gigpo", inputs, replace(config, gigpo_step_weight=0.0))
    assert_close(adv[:, 0], [episode, episode, -episode, -episode])


def test_gigpo_anchor_groups_do_not_cross_task_groups() -> None:
    inputs = AdvantageInputs(
        response_mask=torch.ones(2, 1, dtype=torch.bool),
        group_id=torch.tensor([0, 1]),
        traj_id=torch.tensor([1, 2]),
        turn=torch.tensor([0, 0]),
        scores=torch.tensor([0.0, 0.0]),
        step_rewards=torch.tensor([1.0, 0.0]),
        anchor_id=torch.tensor([5, 5]),
    )
    adv, _ = compute_advantages("gigpo", inputs)
    assert_close(adv[:, 0], [0.0, 0.0])


# ----------------------------------------------------------------------------- structure


@pytest.mark.parametrize("name", ["grpo", "drgrpo", "rloo", "gae", "gigpo"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_row_permutation_permutes_outputs_and_zeros_outside_mask(name: str, seed: int) -> None:
    rows = random_rows(seed + 100)
    inputs = to_inputs(rows)
    adv, ret = compute_advantages(name, inputs)
    perm = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
    shuffled = AdvantageInputs(**{k: getattr(inputs, k)[perm] for k in inputs.__dataclass_fields__})
    adv_p, ret_p = compute_advantages(name, shuffled)
    torch.testing.assert_close(adv_p, adv[perm], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ret_p, ret[perm], rtol=1e-5, atol=1e-6)
    outside = ~inputs.response_mask
    assert torch.all(adv[outside] == 0) and torch.all(ret[outside] == 0)


@pytest.mark.parametrize("name", ["grpo", "rloo", "gae", "gigpo"])
def test_float_mask_equals_bool_mask(name: str) -> None:
    rows = random_rows(7)
    bool_out = compute_advantages(name, to_inputs(rows))
    float_out = compute_advantages(name, to_inputs(rows, torch.float32))
    for a, b in zip(bool_out, float_out, strict=True):
        assert torch.equal(a, b)


def test_registry_lists_and_rejects() -> None:
    assert {"grpo", "drgrpo", "rloo", "gae", "gigpo"} <= set(advantage_estimators())
    assert advantage_estimators() == sorted(advantage_estimators())
    with pytest.raises(ValueError, match=r"one of \[.*'gigpo'.*'rloo'.*got 'nope'"):
        get_advantage_estimator("nope")
    with pytest.raises(ValueError) as info:
        compute_advantages("nope", single_turn([1.0]))
    assert "nope" in str(info.value) and "gigpo" in str(info.value)
    grpo = get_advantage_estimator("grpo")
    assert register_advantage_estimator("grpo")(grpo) is grpo  # same function: no-op
    with pytest.raises(ValueError, match="already registered"):
        register_advantage_estimator("grpo")(lambda inputs, config: (inputs.scores, inputs.scores))
    with pytest.raises(ValueError, match="name"):
        register_advantage_estimator("")


# ----------------------------------------------------------------------------- bad input


def base_inputs() -> AdvantageInputs:
    inputs = to_inputs(random_rows(3))
    assert bool((inputs.turn == 1).any()), "the base batch needs a multi-turn trajectory"
    return inputs


@pytest.mark.parametrize(
    ("name", "change", "field"),
    [
        ("grpo", {"scores": torch.zeros(1)}, "scores"),
        ("grpo", {"group_id": "FLOAT"}, "group_id"),
        ("grpo", {"traj_id": "FLOAT"}, "traj_id"),
        ("grpo", {"scores": "NAN"}, "scores"),
        ("grpo", {"turn": "NEGATIVE"}, "turn"),
        ("grpo", {"turn": "DUPLICATE"}, "turn"),
        ("grpo", {"group_id": "SPLIT"}, "traj_id"),
        ("grpo", {"response_mask": "TWO"}, "response_mask"),
        ("grpo", {"response_mask": torch.ones(3)}, "response_mask"),
        ("gae", {"values": None}, "values"),
        ("gae", {"step_rewards": None}, "step_rewards"),
        ("gae", {"values": torch.zeros(2, 2)}, "values"),
        ("gae", {"values": "NAN"}, "values"),
        ("gae", {"response_mask": "EMPTY_ROW"}, "response_mask"),
        ("gigpo", {"anchor_id": None}, "anchor_id"),
        ("gigpo", {"anchor_id": "FLOAT"}, "anchor_id"),
        ("gigpo", {"step_rewards": None}, "step_rewards"),
    ],
)
def test_bad_inputs_raise_naming_the_field(name: str, change: dict, field: str) -> None:
    inputs = base_inputs()
    ((key, value),) = change.items()
    current = getattr(inputs, key)
    if not isinstance(value, str):
        pass
    elif value == "FLOAT":
        value = current.float()
    elif value == "NAN":
        value = current.clone()
        value[inputs.response_mask if key == "values" else 0] = float("nan")
    elif value == "NEGATIVE":
        value = current.clone()
        value[0] = -1
    elif value == "DUPLICATE":
        value = torch.zeros_like(current)  # trajectories with several turns now repeat turn 0
    elif value == "SPLIT":
        value = current.clone()
        value[int((inputs.turn == 1).nonzero()[0, 0])] = int(current.max()) + 1
    elif value == "TWO":
        value = current.float()
        value[0, 0] = 2.0
    elif value == "EMPTY_ROW":
        value = current.clone()
        value[0] = False
    inputs = replace(inputs, **{key: value})
    with pytest.raises(ValueError, match=field):
        compute_advantages(name, inputs)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (AdvantageConfig(grpo_stats="episode"), "grpo_stats"),
        (AdvantageConfig(gamma=1.5), "gamma"),
        (AdvantageConfig(lam=-0.1), "lam"),
        (AdvantageConfig(epsilon=float("nan")), "epsilon"),
        (AdvantageConfig(gigpo_step_gamma=2.0), "gigpo_step_gamma"),
        (AdvantageConfig(gigpo_step_weight=-1.0), "gigpo_step_weight"),
    ],
)
@pytest.mark.parametrize("name", ["grpo", "gigpo"])
def test_bad_config_raises_naming_the_field(config: AdvantageConfig, field: str, name: str) -> None:
    with pytest.raises(ValueError, match=field):
        compute_advantages(name, base_inputs(), config)


def test_gae_whitening_needs_two_tokens() -> None:
    inputs = AdvantageInputs(
        response_mask=torch.tensor([[True, False]]),
        group_id=torch.tensor([0]),
        traj_id=torch.tensor([0]),
        turn=torch.tensor([0]),
        scores=torch.tensor([1.0]),
        step_rewards=torch.tensor([1.0]),
        values=torch.zeros(1, 2),
    )
    with pytest.raises(ValueError, match="response_mask"):
        compute_advantages("gae", inputs)
    adv, ret = compute_advantages("gae", inputs, AdvantageConfig(gae_whiten=False))
    assert_close(adv, [[1.0, 0.0]])
    assert_close(ret, [[1.0, 0.0]])
