"""Multi-turn task families with the structure of agent tasks, as exact tabular tables.

An instance is a small deterministic world: from an *observed* state the agent answers with a
response (one of the N = V**L token sequences); the response moves it to the next observed state,
ends the episode in failure, or reaches the goal. A hidden *doom* flag, set by decoy responses and
never shown to the agent, turns the goal into a failure: a decoy looks exactly like progress
(same next observation as the right answer) and fails only at the end. Reward is the terminal
success (1 or 0). Every family is layered: a state at turn k only leads to turn k + 1, so an
episode lasts at most ``depth`` turns and every exact quantity is a ``depth``-step recursion.

Families (instances drawn per seed; a group is all trajectories of one instance):

- ``lock`` (combination lock with decoys): turn k shows the lock at position k. One response is
  the code digit, ``decoys`` others click just like it (doom), the rest fail at once. Success
  needs all ``depth`` digits.
- ``keydoor`` (key-door): turn 0 picks a key: the true key, ``decoys`` fake keys that look the
  same (doom), or nothing (the agent sees it holds no key). Turns 1..depth-2 are a corridor where
  ``safe_moves`` responses advance and the rest fall into a pit (fail); ``decoys`` of the pits look
  as plausible as the safe moves. The last turn is the door: one response opens it (success iff
  the true key is held), ``decoys`` look plausible and fail, like every other response.

``plausible`` marks the responses a "pretrained" prior favours (the right ones and the decoys):
the lab's initial policy puts extra mass on them (:mod:`aem.lab.policies`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from aem.lab import rng

FAIL = -1
GOAL = -2
FAMILIES: tuple[str, ...] = ("lock", "keydoor")
_STREAM = 100  # rng stream of the task pool (policies and rollouts use others)


@dataclass(frozen=True)
class TaskFamily:
    """A family and its difficulty knobs (validated in :mod:`aem.lab.settings`)."""

    name: str = "lock"
    depth: int = 3
    decoys: int = 2
    safe_moves: int = 2  # keydoor corridor only

    @property
    def num_states(self) -> int:
        """Observed states per instance."""
        return self.depth if self.name == "lock" else 2 * self.depth - 1


@dataclass(frozen=True)
class TaskPool:
    """The instances of every run, ``[R, M, S, N]`` tables over observed states S and responses N.

    ``next_state`` holds the next observed state, :data:`FAIL` or :data:`GOAL`; ``doom`` the hidden
    flag a response sets; ``plausible`` the prior's favourites; ``turn`` is ``[S]``.
    """

    next_state: Tensor
    doom: Tensor
    plausible: Tensor
    turn: Tensor
    depth: int

    @property
    def num_instances(self) -> int:
        return int(self.next_state.shape[1])

    @property
    def num_states(self) -> int:
        return int(self.next_state.shape[2])


def build_pool(family: TaskFamily, seeds: Tensor, instances: int, responses: int) -> TaskPool:
    """Draw ``instances`` instances of ``family`` for every seed (``[R]``) over N responses."""
    depth = family.depth
    # rank[..., k, y]: position of response y in a random order of turn k; 0 is the right one.
    order = rng.permutations(seeds, _STREAM, 0, (instances, depth, responses))
    rank = torch.argsort(order, dim=-1)
    if family.name == "lock":
        return _lock(rank, family)
    return _keydoor(rank, family)


def _lock(rank: Tensor, family: TaskFamily) -> TaskPool:
    depth, decoys = family.depth, family.decoys
    plausible = rank <= decoys  # [R, M, K, N]: code digit and its decoys
    turns = torch.arange(depth)
    ahead = torch.where(turns == depth - 1, GOAL, turns + 1)[None, None, :, None]
    next_state = torch.where(plausible, ahead.expand_as(rank), FAIL)
    doom = plausible & (rank > 0)
    return TaskPool(next_state, doom, plausible, torch.arange(depth), depth)


def _keydoor(rank: Tensor, family: TaskFamily) -> TaskPool:
    depth, decoys, safe = family.depth, family.decoys, family.safe_moves
    runs, instances, _, responses = rank.shape
    states = family.num_states
    shape = (runs, instances, states, responses)
    next_state = torch.full(shape, FAIL, dtype=torch.long)
    doom = torch.zeros(shape, dtype=torch.bool)
    plausible = torch.zeros(shape, dtype=torch.bool)
    turn = torch.zeros(states, dtype=torch.long)

    key = rank[:, :, 0]  # turn 0: 0 = true key, 1..decoys = fake keys, others = no key
    next_state[:, :, 0] = torch.where(key <= decoys, 1, 2)  # holding (1) or empty (2) at turn 1
    doom[:, :, 0] = key > 0
    plausible[:, :, 0] = key <= decoys
    for k in range(1, depth):
        turn[2 * k - 1 : 2 * k + 1] = k
        choice = rank[:, :, k]
        for state, carried in ((2 * k - 1, 2 * k + 1), (2 * k, 2 * k + 2)):  # holding, empty
            if k == depth - 1:  # the door
                next_state[:, :, state] = torch.where(choice == 0, GOAL, FAIL)
                plausible[:, :, state] = choice <= decoys
            else:  # a corridor square
                next_state[:, :, state] = torch.where(choice < safe, carried, FAIL)
                plausible[:, :, state] = choice < safe + decoys
    return TaskPool(next_state, doom, plausible, turn, depth)


def success_probability(pool: TaskPool, response_probs: Tensor) -> Tensor:
    """Exact P(success) of every instance, ``[R, M]``, by backward recursion over the layers.

    ``response_probs``: ``[R, M, S, N]`` the policy's response distribution at each state.
    """
    value = torch.zeros(response_probs.shape[:3], dtype=response_probs.dtype)
    reached = pool.next_state.clamp(min=0)
    for _ in range(pool.depth):
        later = value.gather(2, reached.flatten(2)).view_as(response_probs)
        payoff = torch.where(
            pool.next_state == GOAL, 1.0, torch.where(pool.next_state >= 0, later, 0.0)
        )
        payoff = torch.where(pool.doom, 0.0, payoff)
        value = (response_probs * payoff).sum(-1)
    return value[:, :, 0]


def state_visitation(pool: TaskPool, response_probs: Tensor) -> Tensor:
    """Expected number of visits of every observed state per episode, ``[R, M, S]`` (exact)."""
    current = torch.zeros(response_probs.shape[:3], dtype=response_probs.dtype)
    current[:, :, 0] = 1.0
    total = current.clone()
    target = pool.next_state.clamp(min=0)
    for _ in range(pool.depth - 1):
        flow = torch.where(pool.next_state >= 0, current[..., None] * response_probs, 0.0)
        current = torch.zeros_like(current).scatter_add_(2, target.flatten(2), flow.flatten(2))
        total = total + current
    return total
