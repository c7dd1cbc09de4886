"""The built-in household: an ALFWorld-faithful text simulator in pure Python.

``aem.envs.make("household", split="train")`` builds a :class:`HouseholdEnv`; see
:mod:`aem.envs.household.tasks` for the split rule and :class:`SceneConfig` for the knobs.
"""

from aem.envs.household.engine import NOTHING_HAPPENS, Engine
from aem.envs.household.env import HouseholdEnv
from aem.envs.household.expert import HouseholdExpert, expert_plan, next_action
from aem.envs.household.goals import TASK_TYPES, Goal
from aem.envs.household.scene import Scene, SceneConfig, WorldState
from aem.envs.household.search_expert import act_on_view
from aem.envs.household.tasks import SPLIT_SIZES, SPLITS, Task, build_task
from aem.envs.registry import register

ROLE = "You are an expert agent acting in a household (the ALFRED embodied environment)."

register(
    "household",
    HouseholdEnv,
    eval_split="valid_seen",
    extra_eval_splits=("valid_unseen",),  # room layouts never seen in training
    # small scenes (a quarter of the repeated receptacles, 1-3 distractors): the tiny model's
    default_kwargs={"scene_config": {"receptacle_scale": 0.25, "distractors": [1, 3]}},
    role=ROLE,
    observation_expert=act_on_view,
)

__all__ = [
    "NOTHING_HAPPENS",
    "ROLE",
    "SPLITS",
    "SPLIT_SIZES",
    "TASK_TYPES",
    "Engine",
    "Goal",
    "HouseholdEnv",
    "HouseholdExpert",
    "Scene",
    "SceneConfig",
    "Task",
    "WorldState",
    "build_task",
    "expert_plan",
    "next_action",
]
