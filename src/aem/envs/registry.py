"""Environments by name: ``aem.envs.make("household", split="train")``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from aem.envs.base import TextEnv

EnvFactory = Callable[..., TextEnv]

_REGISTRY: dict[str, EnvFactory] = {}


def register(name: str) -> Callable[[EnvFactory], EnvFactory]:
    """Decorator: register ``factory`` (a TextEnv class or a function returning one) as ``name``."""

    def wrap(factory: EnvFactory) -> EnvFactory:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"environment name {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return wrap


def names() -> list[str]:
    """Registered environment names, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def make(name: str, **kwargs: Any) -> TextEnv:
    """Build the environment registered as ``name`` with ``kwargs`` (e.g. ``split="train"``)."""
    _load_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"env name must be one of {sorted(_REGISTRY)}, got {name!r}")
    return _REGISTRY[name](**kwargs)


def check_arguments(name: str, keywords: Sequence[str], label: str = "kwargs") -> None:
    """``ValueError`` naming ``label`` if the environment ``name`` takes no argument among
    ``keywords`` (checked against its signature; unknown names are left to :func:`make`)."""
    _load_builtins()
    factory = _REGISTRY.get(name)
    if factory is None:
        return
    parameters = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(set(keywords) - set(parameters))
    if unknown:
        raise ValueError(
            f"{label}: environment {name!r} takes no argument {', '.join(map(repr, unknown))} "
            f"(its arguments: {', '.join(parameters)})"
        )


def _load_builtins() -> None:
    """Import the built-in environment modules so their ``@register`` lines run."""
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
