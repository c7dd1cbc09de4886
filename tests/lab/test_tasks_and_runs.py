"""Task families, exact success against hand-computed cases and sampled rollouts, arms against
the library, and reproducibility of runs."""

from __future__ import annotations

import math

import pytest
import torch

from aem.algorithms.advantages import AdvantageConfig, AdvantageInputs, compute_advantages
from aem.lab import rng
from aem.lab.arms import SpanBatch, arm_advantage, grpo_advantage, parse_arm
from aem.lab.experiment import _rollout, run_experiment
from aem.lab.policies import ResponseSpace, policy_tables
from aem.lab.settings import Setting
from aem.lab.tasks import FAIL, GOAL, TaskFamily, build_pool, state_visitation, success_probability


def uniform_probs(pool) -> torch.Tensor:
    shape = pool.next_state.shape
    return torch.full(shape, 1.0 / shape[-1], dtype=torch.float64)


def test_lock_structure_and_uniform_success():
    family = TaskFamily("lock", depth=3, decoys=2)
    pool = build_pool(family, torch.tensor([0, 1]), instances=4, responses=9)
    assert pool.next_state.shape == (2, 4, 3, 9)
    for k in range(3):
        moves = pool.next_state[:, :, k]
        advance = GOAL if k == 2 else k + 1
        assert bool(((moves == advance).sum(-1) == 3).all())  # code + 2 decoys
        assert bool(((moves == FAIL).sum(-1) == 6).all())
        assert bool((pool.doom[:, :, k].sum(-1) == 2).all())  # the decoys doom
    torch.testing.assert_close(
        success_probability(pool, uniform_probs(pool)),
        torch.full((2, 4), (1 / 9) ** 3, dtype=torch.float64),
    )


def test_keydoor_structure_and_uniform_success():
    family = TaskFamily("keydoor", depth=4, decoys=2, safe_moves=2)
    pool = build_pool(family, torch.tensor([3]), instances=5, responses=9)
    assert pool.num_states == 7
    key = pool.next_state[0, :, 0]
    assert bool(((key == 1).sum(-1) == 3).all()) and bool(((key == 2).sum(-1) == 6).all())
    assert bool((pool.doom[0, :, 0].sum(-1) == 8).all())  # every choice but the true key
    assert bool(((pool.next_state[0, :, 6] == GOAL).sum(-1) == 1).all())  # door from "empty"
    # success: true key (1/9), two corridor squares (2/9 each), the door (1/9)
    expected = (1 / 9) * (2 / 9) ** 2 * (1 / 9)
    torch.testing.assert_close(
        success_probability(pool, uniform_probs(pool)),
        torch.full((1, 5), expected, dtype=torch.float64),
    )
    visits = state_visitation(pool, uniform_probs(pool))[0, 0]
    torch.testing.assert_close(visits[0], torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(visits[1] + visits[2], torch.tensor(1.0, dtype=torch.float64))


@pytest.mark.parametrize("name", ["lock", "keydoor"])
def test_sampled_success_matches_the_exact_probability(name):
    setting = Setting(
        family=TaskFamily(name, depth=3, decoys=1),
        instances=2,
        groups=2,
        group_size=50,
        prior_boost=3.0,
        double=True,
    )
    seeds = torch.tensor([11])
    space = ResponseSpace(3, 2)
    pool = build_pool(setting.family, seeds, 2, 9)
    logits = 2.0 * rng.normal(seeds, 9, 0, (2 * pool.num_states, space.num_contexts, 3))
    tables = policy_tables(logits, space)
    probs = tables.response_log_probs.exp().view(1, 2, pool.num_states, 9)
    exact = success_probability(pool, probs)[0]
    hits = torch.zeros(2, dtype=torch.float64)
    draws = 200
    for step in range(draws):
        batch = _rollout(setting, pool, tables, seeds, step, space)
        instance = rng.permutations(seeds, 300, step, (2,))[0, :2]
        hits[instance] += batch.success[0].mean(-1)
    rate = hits / draws
    tolerance = 4 * torch.sqrt(exact * (1 - exact) / (draws * 50)) + 1e-3
    assert bool(((rate - exact).abs() < tolerance).all()), (rate, exact)


def test_grpo_advantage_equals_the_library_estimator():
    g = torch.Generator().manual_seed(0)
    success = (torch.rand(3, 6, generator=g) > 0.5).to(torch.float64)
    success[1] = 1.0  # a group with one outcome: advantage 0
    rows = success.numel()
    inputs = AdvantageInputs(
        response_mask=torch.ones(rows, 1, dtype=torch.bool),
        group_id=torch.arange(3).repeat_interleave(6),
        traj_id=torch.arange(rows),
        turn=torch.zeros(rows, dtype=torch.long),
        scores=success.flatten(),
    )
    library, _ = compute_advantages("grpo", inputs, AdvantageConfig())
    torch.testing.assert_close(grpo_advantage(success).flatten(), library[:, 0].double())


def spans_for(seed: int) -> SpanBatch:
    g = torch.Generator().manual_seed(seed)
    runs, groups, size, depth = 2, 2, 4, 3
    shape = (runs, groups, size, depth)
    success = (torch.rand(runs, groups, size, generator=g) > 0.5).double()
    run = torch.arange(runs)[:, None, None, None].expand(shape)
    group = run * groups + torch.arange(groups)[None, :, None, None]
    return SpanBatch(
        advantage=grpo_advantage(success)[..., None].expand(shape).reshape(-1),
        token_entropy=torch.rand(*shape, 2, generator=g, dtype=torch.float64).reshape(-1, 2),
        alive=(torch.rand(shape, generator=g) > 0.2).reshape(-1),
        group=group.reshape(-1),
        trajectory=(group * size + torch.arange(size)[None, None, :, None]).reshape(-1),
        turn=torch.arange(depth).expand(shape).reshape(-1),
        run=run.reshape(-1),
    )


def test_arms_apply_the_library_modulations():
    spans = spans_for(1)
    base, _ = arm_advantage(parse_arm("grpo"), spans)
    torch.testing.assert_close(base, torch.where(spans.alive, spans.advantage, 0.0))
    aem, weights = arm_advantage(parse_arm("aem@2"), spans)
    torch.testing.assert_close(aem, torch.where(spans.alive, weights * spans.advantage, 0.0))
    for group in spans.group.unique():  # AEM weights average 1 over a group's played turns
        members = (spans.group == group) & spans.alive
        entropy = spans.token_entropy[members].mean(-1)
        if float(entropy.max() - entropy.min()) > 1e-6:
            assert abs(float(weights[members].mean()) - 1.0) < 1e-9
    empg, _ = arm_advantage(parse_arm("empg"), spans)
    for run in (0, 1):  # EMPG's zero-mean shift (Eq. 7), per run
        members = (spans.run == run) & spans.alive
        assert abs(float(empg[members].mean())) < 1e-9
    up, _ = arm_advantage(parse_arm("mask_decreasing"), spans)
    down, _ = arm_advantage(parse_arm("mask_increasing"), spans)
    moving = spans.alive & (spans.advantage != 0)
    assert bool(((up != 0) ^ (down != 0))[moving].all())  # each moving turn kept by one mask


@pytest.mark.parametrize("name", ["aem", "aem@0", "aem@x", "ppo", ""])
def test_bad_arm_names(name):
    with pytest.raises(ValueError, match="arm"):
        parse_arm(name)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"policy": "mlp"}, "policy"),
        ({"update": "sgd"}, "update"),
        ({"lr": 0.0}, "lr"),
        ({"steps": 0}, "steps"),
        ({"group_size": 1}, "group_size"),
        ({"groups": 40}, "groups"),
        ({"arms": ()}, "arms"),
        ({"arms": ("grpo", "grpo")}, "arms"),
        ({"family": TaskFamily("lock", 3, 9)}, "family.decoys"),
        ({"family": TaskFamily("maze", 3, 1)}, "family.name"),
        ({"family": TaskFamily("keydoor", 1, 1)}, "family.depth"),
    ],
)
def test_setting_errors_name_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        Setting(**change)


def tiny(**change) -> Setting:
    values = {
        "family": TaskFamily("lock", 2, 1),
        "steps": 6,
        "eval_every": 2,
        "instances": 4,
        "groups": 2,
        "group_size": 4,
        "arms": ("grpo", "aem@1", "empg"),
        "double": True,
    }
    values.update(change)
    return Setting(**values)


def test_runs_are_reproducible_and_independent_of_their_neighbours():
    first = run_experiment(tiny(), torch.tensor([3, 5]))
    again = run_experiment(tiny(), torch.tensor([3, 5]))
    alone = run_experiment(tiny(), torch.tensor([5]))
    torch.testing.assert_close(first.success, again.success)
    torch.testing.assert_close(first.success[:, 1:], alone.success)
    torch.testing.assert_close(first.entropy[:, 1:], alone.entropy)
    # the arms of one seed start from the same policy
    assert bool((first.success[:, :, 0] == first.success[0:1, :, 0]).all())
    assert first.eval_steps.tolist() == [0, 2, 4, 6]
    assert not math.isnan(float(first.success.sum()))


@pytest.mark.parametrize(
    ("policy", "update"),
    [
        ("tabular", "ppo"),
        ("loglinear", "natural"),
        ("loglinear", "pg"),
        ("tabular", "natural_token"),
    ],
)
def test_every_policy_and_rule_runs(policy, update):
    records = run_experiment(
        tiny(policy=policy, update=update, lr=0.05, drift=True), torch.arange(2)
    )
    assert bool(torch.isfinite(records.success).all())
    assert set(records.drift) >= {"measured_response", "predicted_aem"}
