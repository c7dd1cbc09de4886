"""One experiment: every (arm, seed) run of a :class:`Setting`, vectorised in one tensor.

Per update step and run: the exact success probability and the exact response entropy of the
current policy (before the update), one batch of ``groups`` instances x ``group_size``
trajectories (turns sampled token by token from the exact tables), the GRPO advantage turned into
the arm's advantage (:mod:`aem.lab.arms`), and one update (:mod:`aem.lab.updates`). With
``Setting.drift`` the same-batch entropy drift is recorded too (:mod:`aem.lab.drift`).

Runs are arm-major (run ``a * R + i`` is arm a, seed i); the arms of one seed share the task
pool, the initial policy and their random numbers (:mod:`aem.lab.rng`), so arm differences are
paired.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from aem.lab import rng
from aem.lab.arms import SpanBatch, arm_advantage, grpo_advantage, parse_arm
from aem.lab.drift import DRIFT_FIELDS, drift_after, drift_before
from aem.lab.policies import (
    LogLinearPolicy,
    PolicyTables,
    ResponseSpace,
    TabularPolicy,
    policy_tables,
    prior_logits,
    state_features,
)
from aem.lab.settings import Setting
from aem.lab.tasks import GOAL, TaskPool, build_pool, state_visitation, success_probability
from aem.lab.updates import BatchTurns, Optimizer, logit_gradient

_INSTANCE_STREAM = 300
_SAMPLE_STREAM = 310


@dataclass
class Records:
    """Per arm, seed and step (``[A, R, T]``); success and entropy ``[A, R, E]`` at the
    ``eval_steps`` (the number of updates done before each evaluation: 0, every
    ``Setting.eval_every`` steps, and the last)."""

    arms: tuple[str, ...]
    seeds: Tensor
    eval_steps: Tensor
    success: Tensor
    entropy: Tensor
    batch_success: Tensor
    positive_share: Tensor
    drift: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Rollout:
    """One batch per run: ``[R', B, G, K]`` turn slots (R' = all runs) and ``[R', B, G]``
    outcomes."""

    state: Tensor  # global observed-state id of each turn
    response: Tensor  # response index
    alive: Tensor  # the turn was played
    success: Tensor  # float 1/0 per trajectory


def run_experiment(
    setting: Setting, seeds: Tensor, progress: Callable[[int], None] | None = None
) -> Records:
    """Train every arm of ``setting`` from every seed in ``seeds`` (``[R]`` int)."""
    arms = [parse_arm(name) for name in setting.arms]
    runs_per_arm = seeds.numel()
    run_seeds = seeds.to(torch.long).repeat(len(arms))
    dtype = torch.float64 if setting.double else torch.float32
    space = ResponseSpace(setting.vocab, setting.length)
    pool = build_pool(setting.family, run_seeds, setting.instances, space.num_responses)
    policy = _initial_policy(setting, pool, space, run_seeds, dtype)
    optimizer = Optimizer(setting.update, setting.lr, policy.params, setting.trust_region)

    shape = (len(arms), runs_per_arm, setting.steps)
    eval_steps = sorted({*range(0, setting.steps, setting.eval_every), setting.steps})
    success = torch.zeros(len(arms), runs_per_arm, len(eval_steps), dtype=torch.float64)
    entropy = torch.zeros_like(success)
    batch_success = torch.zeros(shape, dtype=torch.float64)
    positive_share = torch.zeros(shape, dtype=torch.float64)
    drift = {name: torch.zeros(shape, dtype=torch.float64) for name in DRIFT_FIELDS}

    def per_arm(values: Tensor) -> Tensor:
        return values.detach().to(torch.float64).view(len(arms), runs_per_arm)

    tables = policy_tables(policy.logits(), space)

    def evaluate(step: int) -> None:
        if step in eval_steps:
            done, mean_entropy = _exact_metrics(pool, tables)
            point = eval_steps.index(step)
            success[:, :, point], entropy[:, :, point] = per_arm(done), per_arm(mean_entropy)

    for step in range(setting.steps):
        evaluate(step)
        batch = _rollout(setting, pool, tables, run_seeds, step, space)
        spans = _spans(batch, tables, space, runs_per_arm)
        advantage = torch.cat(
            [
                arm_advantage(arm, spans[a])[0].view(runs_per_arm, *batch.alive.shape[1:])
                for a, arm in enumerate(arms)
            ]
        )
        batch_success[:, :, step] = per_arm(batch.success.mean((1, 2)))
        positive_share[:, :, step] = per_arm(_positive_share(spans, batch))
        turns = BatchTurns(batch.state, batch.response, batch.alive, advantage, space)
        if setting.drift:
            before = drift_before(turns, tables)
        clip = setting.clip if setting.update == "ppo" else None
        for epoch in range(setting.ppo_epochs if setting.update == "ppo" else 1):
            current = tables if epoch == 0 else policy_tables(policy.logits(), space)
            gradient = logit_gradient(
                turns, tables, current, clip, token_fisher=setting.update == "natural_token"
            )
            optimizer.step(policy, gradient, current)
        tables = policy_tables(policy.logits(), space)
        if setting.drift:
            for name, values in drift_after(turns, before, tables).items():
                drift[name][:, :, step] = per_arm(values)
        if progress is not None:
            progress(step + 1)
    evaluate(setting.steps)
    return Records(
        tuple(arm.name for arm in arms),
        seeds.clone(),
        torch.tensor(eval_steps),
        success,
        entropy,
        batch_success,
        positive_share,
        drift if setting.drift else {},
    )


def _initial_policy(
    setting: Setting, pool: TaskPool, space: ResponseSpace, seeds: Tensor, dtype
) -> TabularPolicy | LogLinearPolicy:
    runs, instances, states, responses = pool.plausible.shape
    plausible = pool.plausible.reshape(runs, instances * states, responses)
    base = prior_logits(plausible, space, setting.prior_boost, setting.prior_noise, seeds, dtype)
    if setting.policy == "tabular":
        return TabularPolicy(base)
    features = state_features(seeds, instances, states, setting.embed_dim, dtype)
    return LogLinearPolicy(base, features)


def _exact_metrics(pool: TaskPool, tables: PolicyTables) -> tuple[Tensor, Tensor]:
    """Exact success over the instance pool and the visitation-weighted response entropy."""
    runs, instances, states, responses = pool.next_state.shape
    probs = tables.response_log_probs.exp().view(runs, instances, states, responses)
    done = success_probability(pool, probs).mean(-1)
    visits = state_visitation(pool, probs)
    per_state = tables.response_entropy.view(runs, instances, states)
    mean_entropy = (visits * per_state).sum((1, 2)) / visits.sum((1, 2))
    return done, mean_entropy


def _rollout(
    setting: Setting,
    pool: TaskPool,
    tables: PolicyTables,
    seeds: Tensor,
    step: int,
    space: ResponseSpace,
) -> Rollout:
    """Sample ``groups`` instances x ``group_size`` trajectories per run from the exact tables
    (inverse CDF over the whole response = token-by-token autoregressive sampling)."""
    runs, instances, states, responses = pool.next_state.shape
    groups, size, depth = setting.groups, setting.group_size, pool.depth
    instance = rng.permutations(seeds, _INSTANCE_STREAM, step, (instances,))[:, :groups]
    draws = rng.uniform(seeds, _SAMPLE_STREAM, step, (groups, size, depth))
    cdf = tables.response_log_probs.exp().cumsum(-1).to(torch.float64)
    next_flat = pool.next_state.view(runs, -1)
    doom_flat = pool.doom.view(runs, -1)
    local = torch.zeros(runs, groups, size, dtype=torch.long)
    alive = torch.ones(runs, groups, size, dtype=torch.bool)
    doomed = torch.zeros_like(alive)
    reached = torch.zeros_like(alive)
    records = []
    for turn in range(depth):
        state = instance[:, :, None] * states + local
        flat = state.view(runs, -1, 1).expand(-1, -1, responses)
        chosen = cdf.gather(1, flat).view(runs, groups, size, responses)
        response = (chosen < draws[..., turn, None]).sum(-1).clamp(max=responses - 1)
        records.append((state, response, alive.clone()))
        where = (state * responses + response).view(runs, -1)
        following = next_flat.gather(1, where).view_as(local)
        doomed |= alive & doom_flat.gather(1, where).view_as(local)
        reached |= alive & (following == GOAL)
        alive = alive & (following >= 0)
        local = following.clamp(min=0)
    state, response, played = (torch.stack(parts, dim=-1) for parts in zip(*records, strict=True))
    outcome = (reached & ~doomed).to(tables.response_entropy.dtype)
    return Rollout(state, response, played, outcome)


def _spans(
    batch: Rollout, tables: PolicyTables, space: ResponseSpace, per_arm: int
) -> list[SpanBatch]:
    """One :class:`SpanBatch` per arm (rows = turn slots, tokens = the response's L tokens)."""
    runs, groups, size, depth = batch.alive.shape
    where, _ = space.token_index(batch.state, batch.response)  # [R', B, G, K, L]
    token_entropy = tables.context_entropy.reshape(runs, -1).gather(1, where.view(runs, -1))
    token_entropy = token_entropy.view(runs, groups, size, depth, space.length)
    advantage = grpo_advantage(batch.success)[..., None].expand(-1, -1, -1, depth)
    run = torch.arange(per_arm)[:, None, None, None].expand(-1, groups, size, depth)
    group = run * groups + torch.arange(groups)[None, :, None, None]
    trajectory = group * size + torch.arange(size)[None, None, :, None]
    turn = torch.arange(depth).expand(per_arm, groups, size, depth)
    spans = []
    for a in range(runs // per_arm):
        rows = slice(a * per_arm, (a + 1) * per_arm)
        spans.append(
            SpanBatch(
                advantage[rows].reshape(-1),
                token_entropy[rows].reshape(-1, space.length),
                batch.alive[rows].reshape(-1),
                group.reshape(-1),
                trajectory.reshape(-1),
                turn.reshape(-1),
                run.reshape(-1),
            )
        )
    return spans


def _positive_share(spans: list[SpanBatch], batch: Rollout) -> Tensor:
    """Per run: the share of positive among the non-zero base advantages of played turns."""
    runs = batch.alive.shape[0]
    advantage = torch.cat([s.advantage for s in spans]).view(runs, -1)
    alive = batch.alive.view(runs, -1)
    positive = (alive & (advantage > 0)).sum(-1)
    nonzero = (alive & (advantage != 0)).sum(-1)
    return torch.where(nonzero > 0, positive / nonzero.clamp(min=1), float("nan"))
