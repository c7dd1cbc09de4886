"""Environments by name, each with its :class:`EnvSpec`: ``aem.envs.make("household", split=...)``.

Adding an environment is one package and one :func:`register` call; the trainer, its config, the
warm start and the prompts read everything they need about it from the spec.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aem.envs.base import AgentView, TextEnv

EnvFactory = Callable[..., TextEnv]

ObservationExpert = Callable[[AgentView, int], str]
"""An expert that acts on what the agent's prompt shows: ``act(view, history_length) ->
action``, a function of the turn's view and the prompt's history window."""

EpisodeExpert = Callable[[TextEnv], Callable[[dict[str, Any]], str]]
"""An expert that reads an episode's hidden state: given an environment just reset to the
episode (a private shadow of the one played), ``act(info) -> action`` for each turn."""

GENERIC_ROLE = "You are an expert agent acting in a text environment."


@dataclass(frozen=True)
class EnvSpec:
    """What the trainer needs to know about one environment.

    ``factory(**kwargs)`` builds it; ``eval_split`` is the split held-out evaluation plays and
    ``extra_eval_splits`` the other held-out splits a comparison reports beside it (e.g.
    household's unseen room layouts);
    ``default_kwargs`` are the constructor arguments the trainer passes when the config gives
    none (``env.kwargs``); ``role`` opens the full-style prompt; the warm start imitates
    ``observation_expert`` (preferred: its labels are a function of the prompt) or
    ``episode_expert`` (played through a shadow environment), and cannot run without either.
    """

    name: str
    factory: EnvFactory
    eval_split: str = "valid"
    extra_eval_splits: tuple[str, ...] = ()
    default_kwargs: Mapping[str, Any] = field(default_factory=dict)
    role: str = GENERIC_ROLE
    observation_expert: ObservationExpert | None = None
    episode_expert: EpisodeExpert | None = None

    @property
    def has_expert(self) -> bool:
        return self.observation_expert is not None or self.episode_expert is not None


_REGISTRY: dict[str, EnvSpec] = {}


def register(
    name: str,
    factory: EnvFactory | None = None,
    *,
    eval_split: str = "valid",
    extra_eval_splits: Sequence[str] = (),
    default_kwargs: Mapping[str, Any] | None = None,
    role: str = GENERIC_ROLE,
    observation_expert: ObservationExpert | None = None,
    episode_expert: EpisodeExpert | None = None,
) -> Any:
    """Register ``factory`` (a :class:`TextEnv` class or a function returning one) as ``name``
    with the :class:`EnvSpec` fields given. Without ``factory`` it is a class decorator:
    ``@register("name", ...)``. A name can hold one factory."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"environment name must be a non-empty str, got {name!r}")

    def wrap(factory: EnvFactory) -> EnvFactory:
        taken = _REGISTRY.get(name)
        if taken is not None and taken.factory is not factory:
            raise ValueError(f"environment name {name!r} is already registered")
        _REGISTRY[name] = EnvSpec(
            name=name,
            factory=factory,
            eval_split=eval_split,
            extra_eval_splits=tuple(extra_eval_splits),
            default_kwargs=dict(default_kwargs or {}),
            role=role,
            observation_expert=observation_expert,
            episode_expert=episode_expert,
        )
        return factory

    return wrap if factory is None else wrap(factory)


def names() -> list[str]:
    """Registered environment names, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def spec(name: str) -> EnvSpec:
    """The :class:`EnvSpec` registered as ``name``; unknown names raise listing the valid ones."""
    _load_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"env name must be one of {sorted(_REGISTRY)}, got {name!r}")
    return _REGISTRY[name]


def make(name: str, **kwargs: Any) -> TextEnv:
    """Build the environment registered as ``name`` with ``kwargs`` (e.g. ``split="train"``)."""
    return spec(name).factory(**kwargs)


def check_arguments(name: str, keywords: Sequence[str], label: str = "kwargs") -> None:
    """``ValueError`` naming ``label`` if the environment ``name`` takes no argument among
    ``keywords`` (checked against its signature; unknown names are left to :func:`make`)."""
    _load_builtins()
    registered = _REGISTRY.get(name)
    if registered is None:
        return
    parameters = inspect.signature(registered.factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(set(keywords) - set(parameters))
    if unknown:
        raise ValueError(
            f"{label}: environment {name!r} takes no argument {', '.join(map(repr, unknown))} "
            f"(its arguments: {', '.join(parameters)})"
        )


def _load_builtins() -> None:
    """Import the built-in environment modules so their :func:`register` calls run."""
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


_BUILTIN_MODULES: tuple[str, ...] = (
    "aem.envs.household",
    "aem.envs.webshop",
    "aem.envs.textworld_env",
    "aem.envs.swe",
    "aem.envs.alfworld",
)
