"""ALFWorld's real text engine behind the :class:`~aem.envs.base.TextEnv` protocol.

``aem.envs.make("alfworld", split="train")`` plays household task ``k`` exported as an ALFWorld
game (PDDL problem + ``traj_data.json`` + ``game.tw-pddl``, :mod:`aem.envs.alfworld.export`)
in ALFWorld's engine; ``source="data"`` plays the user's ALFWorld games under ``$ALFWORLD_DATA``.
:mod:`aem.envs.alfworld.differential` plays the same tasks in both engines and compares them.

ALFWorld is an optional dependency (``pip install 'aem[alfworld]'``): it is imported only when an
environment is built or a game is exported.
"""

from aem.envs.alfworld.env import AlfWorldEnv, collect_games, default_data_dir, default_games_dir
from aem.envs.alfworld.export import (
    ALFWORLD_TASK_TYPES,
    PAPER_TASK_TYPES,
    entity_id,
    export_task,
    game_data,
    goal_pddl,
    problem_pddl,
    task_folder,
    traj_data,
)
from aem.envs.household import ROLE as HOUSEHOLD_ROLE
from aem.envs.registry import register

register(
    "alfworld",
    AlfWorldEnv,
    eval_split="valid_seen",
    extra_eval_splits=("valid_unseen",),
    role=HOUSEHOLD_ROLE,
)

__all__ = [
    "ALFWORLD_TASK_TYPES",
    "PAPER_TASK_TYPES",
    "AlfWorldEnv",
    "collect_games",
    "default_data_dir",
    "default_games_dir",
    "entity_id",
    "export_task",
    "game_data",
    "goal_pddl",
    "problem_pddl",
    "task_folder",
    "traj_data",
]
