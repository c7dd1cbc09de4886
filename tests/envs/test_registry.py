"""Environment specs: one ``register`` call tells the trainer, its config, the warm start and the
prompts everything about an environment."""

from __future__ import annotations

import pytest

from aem.agent import PromptConfig, build_prompt
from aem.envs import make, names, register, registry, spec
from aem.envs.household import HouseholdEnv
from aem.envs.registry import GENERIC_ROLE
from aem.trainer.config import load_config
from aem.trainer.warmstart import NoisyExpert


class TinyHousehold(HouseholdEnv):
    """The household with two turns per episode by default."""

    def __init__(self, **kwargs):
        super().__init__(**{"max_steps": 2, **kwargs})


def always_look(view, history_length: int) -> str:
    return "look"


@pytest.fixture(autouse=True)
def tiny_household(monkeypatch):
    """``tiny-household`` registered, in a copy of the registry restored after each test."""
    names()  # the built-in environments first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register(
        "tiny-household",
        TinyHousehold,
        eval_split="valid_unseen",
        default_kwargs={"scene_config": {"distractors": [0, 0]}},
        role="You tidy a tiny house.",
        observation_expert=always_look,
    )


def test_builtin_specs():
    assert {"household", "webshop", "textworld", "swe", "alfworld"} <= set(names())
    household = spec("household")
    assert household.factory is HouseholdEnv and household.eval_split == "valid_seen"
    assert household.observation_expert is not None and household.episode_expert is None
    assert spec("webshop").episode_expert is not None and spec("webshop").eval_split == "valid"
    assert spec("textworld").has_expert is False
    with pytest.raises(ValueError, match=r"env name must be one of \[.*'household'.*'nowhere'"):
        spec("nowhere")


def test_one_register_call_reaches_config_prompts_and_warm_start():
    assert isinstance(make("tiny-household", split="train"), TinyHousehold)
    config = load_config(overrides=["env.name=tiny-household"])
    assert config.env.env_kwargs() == {"scene_config": {"distractors": [0, 0]}}
    assert config.env.evaluation_split() == "valid_unseen"
    assert (
        load_config(
            overrides=["env.name=tiny-household", "env.eval_split=train"]
        ).env.evaluation_split()
        == "train"
    )
    full = PromptConfig(style="full")
    assert build_prompt("tiny-household", "t", "o", [], [], full).startswith(
        "You tidy a tiny house."
    )
    assert build_prompt("unregistered", "t", "o", [], [], full).startswith(GENERIC_ROLE)
    actor = NoisyExpert("tiny-household", noise=0.0)
    assert actor.spec.observation_expert is always_look


def test_a_name_holds_one_factory_and_the_decorator_form_registers_defaults():
    with pytest.raises(ValueError, match="'tiny-household' is already registered"):
        register("tiny-household", HouseholdEnv)

    @register("decorated-household")
    class Decorated(HouseholdEnv):
        pass

    decorated = spec("decorated-household")
    assert decorated.factory is Decorated and decorated.eval_split == "valid"
    assert decorated.role == GENERIC_ROLE and not decorated.has_expert
    with pytest.raises(ValueError, match="no expert to imitate"):
        NoisyExpert("decorated-household")
