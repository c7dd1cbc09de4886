"""Repository repair in the shape of the paper's SWE setting (DeepSWE / R2E-Gym tools, hidden
test verdict, binary reward), offline and in pure Python.

``aem.envs.make("swe", split="train")`` builds a :class:`SweEnv`; tasks come from
:func:`build_task` (see :mod:`aem.envs.swe.repos` for the split rule), actions follow
:mod:`aem.envs.swe.tools`, test runs are confined by :class:`Sandbox` (bubblewrap by default) and
the hidden verdict is decided outside them (:mod:`aem.envs.swe.verdict`).
"""

from aem.envs.registry import register
from aem.envs.swe.bugs import BUG_DESCRIPTIONS, BUG_KINDS, Site
from aem.envs.swe.bwrap import SandboxUnavailableError
from aem.envs.swe.catalog import TEMPLATES, FunctionTemplate
from aem.envs.swe.env import SweEnv
from aem.envs.swe.expert import RandomAgent, SweExpert, expert_plan, plan_step
from aem.envs.swe.repos import SPLIT_SIZES, SPLITS, Fix, HiddenCase, Task, build_task
from aem.envs.swe.sandbox import ISOLATIONS, Limits, Sandbox, TestReport
from aem.envs.swe.tools import TOOL_TEMPLATES, ToolCall, ToolError, edit_action, parse_action

register(
    "swe",
    SweEnv,
    eval_split="valid",
    role="You are an expert software engineer repairing a Python repository.",
    observation_expert=plan_step,
)

__all__ = [
    "BUG_DESCRIPTIONS",
    "BUG_KINDS",
    "ISOLATIONS",
    "SPLITS",
    "SPLIT_SIZES",
    "TEMPLATES",
    "TOOL_TEMPLATES",
    "Fix",
    "FunctionTemplate",
    "HiddenCase",
    "Limits",
    "RandomAgent",
    "Sandbox",
    "SandboxUnavailableError",
    "Site",
    "SweEnv",
    "SweExpert",
    "Task",
    "TestReport",
    "ToolCall",
    "ToolError",
    "build_task",
    "edit_action",
    "expert_plan",
    "parse_action",
]
