"""Text environments behind one protocol (:class:`TextEnv`) and a registry of :class:`EnvSpec` by
name."""

from aem.envs.base import AgentView, StepResult, TextEnv
from aem.envs.registry import EnvSpec, make, names, register, spec

__all__ = ["AgentView", "EnvSpec", "StepResult", "TextEnv", "make", "names", "register", "spec"]
