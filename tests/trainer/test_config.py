"""Config: presets, overrides, YAML, and errors that name the key and the choices."""

from __future__ import annotations

import pytest

from aem.algorithms.modulation import ModulationConfig
from aem.trainer.config import PRESETS, ConfigError, load_config, parse_overrides


def test_defaults_are_grpo_with_aem_on_household():
    config = load_config()
    algo = config.algorithm.resolved()
    assert (config.env.name, algo.name, algo.estimator, config.aem.enabled) == (
        "household",
        "grpo",
        "grpo",
        True,
    )
    assert config.aem.temperature == 1.0 and algo.kl_coef == 0.01 and algo.kl_kind == "k3"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_resolves_to_complete_settings(name):
    algo = load_config(overrides=[f"algorithm={name}"]).algorithm.resolved()
    for key in ("estimator", "loss", "clip_low", "clip_high", "agg_mode", "kl_coef"):
        assert getattr(algo, key) is not None, key


def test_paper_settings_of_the_presets():
    dapo = load_config(overrides=["algorithm=dapo"]).algorithm.resolved()
    assert (dapo.clip_low, dapo.clip_high, dapo.agg_mode, dapo.dynamic_sampling) == (
        0.2,
        0.28,
        "token-mean",
        True,
    )
    gspo = load_config(overrides=["algorithm=gspo"]).algorithm.resolved()
    assert gspo.loss == "gspo" and gspo.clip_high < 1e-3
    rloo = load_config(overrides=["algorithm=rloo"]).algorithm.resolved()
    assert (rloo.estimator, rloo.kl_coef, rloo.agg_mode) == ("rloo", 0.0, "seq-mean-token-sum")


def test_overrides_beat_presets_and_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("seed: 4\nalgorithm:\n  name: dapo\n  clip_high: 0.3\naem:\n  enabled: false\n")
    config = load_config(path, ["seed=5", "algorithm.kl_coef=0"])
    algo = config.algorithm.resolved()
    assert (config.seed, algo.name, algo.clip_high, algo.kl_coef) == (5, "dapo", 0.3, 0.0)
    assert config.aem.enabled is False


def test_parse_overrides_values():
    assert parse_overrides(["a.b=1", "c=true", "d=x y", "e=0.5", "f="]) == {
        "a": {"b": 1},
        "c": True,
        "d": "x y",
        "e": 0.5,
        "f": "",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["aem.enable=false"], r"unknown config key 'aem.enable'; valid keys here: \['enabled'"),
        (["bogus=1"], "unknown config key 'bogus'"),
        (["algorithm=foo"], "algorithm.name.*'dapo'.*'grpo'.*got 'foo'"),
        (["algorithm.estimator=bogus"], r"algorithm.estimator.*\['drgrpo', 'gae', 'gigpo'"),
        (["algorithm.loss=dpo"], r"algorithm.loss.*\['gspo', 'ppo', 'vanilla'\]"),
        (["algorithm.agg_mode=mean"], "algorithm.agg_mode.*'seq-mean-token-mean'"),
        (["algorithm.kl_kind=k4"], r"algorithm.kl_kind.*'low_var_kl\+'"),
        (["algorithm.grpo_stats=episode"], "algorithm.grpo_stats.*'trajectory', 'turn'"),
        (["modulation=foo"], r"modulation.*\['aem', 'empg', 'none'\].*got 'foo'"),
        (["empg.zeta=-1"], "empg.zeta"),
        (["modulation=aem", "aem.enabled=false"], "modulation=aem contradicts aem.enabled"),
        (["analysis.mask_quadrant=up"], "analysis.mask_quadrant.*'decreasing'"),
        (["env.name=nowhere"], r"env.name.*\['alfworld', .*'household'.*got 'nowhere'"),
        (["rollout.tasks=0"], "rollout.tasks"),
        (["aem.temperature=-1"], "aem.temperature"),
        (["aem=1"], "config key 'aem' is a section"),
        (["nonsense"], "key=value"),
        (["model.tiny.heads=3"], "model.tiny"),
    ],
)
def test_bad_config_names_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(path)


def test_modulation_follows_aem_enabled_unless_set():
    assert load_config().modulation_name() == "aem"
    assert load_config(overrides=["aem.enabled=false"]).modulation_name() == "none"
    assert load_config(overrides=["modulation=none"]).modulation_name() == "none"
    assert load_config(overrides=["modulation=aem"]).modulation_name() == "aem"
    empg = load_config(overrides=["modulation=empg", "empg.zeta=0.05", "empg.k=2"])
    assert empg.modulation_name() == "empg"
    assert empg.modulation_config() == ModulationConfig(empg_k=2.0, empg_zeta=0.05)


@pytest.fixture
def own_registries(monkeypatch):
    """The algorithm registries as they are, restored after the test."""
    from aem.algorithms import advantages, losses, modulation

    for module, name in ((advantages, "_ESTIMATORS"), (losses, "_POLICY_LOSSES")):
        monkeypatch.setattr(module, name, dict(getattr(module, name)))
    monkeypatch.setattr(modulation, "_MODULATIONS", dict(modulation._MODULATIONS))


def test_a_registered_estimator_loss_and_modulation_are_selectable(own_registries):
    from aem.algorithms import register_advantage_estimator, register_policy_loss
    from aem.algorithms.modulation import register_modulation

    register_advantage_estimator("test-estimator")(lambda inputs, config: (None, None))
    register_policy_loss("test-loss")(lambda *args: (None, {}))
    register_modulation("test-modulation")(lambda *args: None)
    config = load_config(
        overrides=[
            "algorithm.estimator=test-estimator",
            "algorithm.loss=test-loss",
            "modulation=test-modulation",
        ]
    )
    algo = config.algorithm.resolved()
    assert (algo.estimator, algo.loss, config.modulation_name()) == (
        "test-estimator",
        "test-loss",
        "test-modulation",
    )
    with pytest.raises(ConfigError, match="'test-estimator'"):
        load_config(overrides=["algorithm.estimator=other"])
