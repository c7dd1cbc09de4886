"""End-to-end training on tiny configs: every preset, resume, bad configs, a raising env."""

from __future__ import annotations

import json
import math

import pytest
import torch

from aem.envs import register
from aem.envs.household import HouseholdEnv
from aem.trainer.config import PRESETS, ConfigError, load_config
from aem.trainer.loop import Trainer
from aem.trainer.metrics import read_metrics
from tiny_config import TINY as TINY_BASE

TINY = [*TINY_BASE, "eval.tasks=2", "trainer.threads=1"]

TIMING = ("time/", "throughput/", "warm_start/seconds")


class RaisingHousehold(HouseholdEnv):
    """A household env whose engine breaks on the second step of every episode."""

    def reset(self, seed=None, options=None):
        self.steps_taken = 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.steps_taken += 1
        if self.steps_taken == 2:
            raise RuntimeError("engine crashed")
        return super().step(action)


register("raising-household")(RaisingHousehold)


def train(tmp_path, *overrides: str, name: str = "run"):
    config = load_config(overrides=[*TINY, f"output_dir={tmp_path / name}", *overrides])
    trainer = Trainer(config, tmp_path / name)
    return trainer, trainer.train()


def comparable(records):
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in records]


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("aem_on", [True, False])
def test_every_preset_runs_with_and_without_aem(tmp_path, preset, aem_on):
    _, records = train(
        tmp_path,
        f"algorithm={preset}",
        f"aem.enabled={str(aem_on).lower()}",
        "optim.mini_batch_rows=5",  # several mini-batches per epoch
    )
    trained = [r for r in records if r["iteration"] >= 0]
    assert [r["iteration"] for r in trained] == [0, 1]
    for record in trained:
        assert 0.0 <= record["rollout/success"] <= 1.0
        if "actor/pg_loss" not in record:  # dynamic sampling kept no informative group
            assert PRESETS[preset]["dynamic_sampling"] and record["rollout/kept_groups"] == 0
            continue
        assert math.isfinite(record["actor/pg_loss"])
        assert ("aem/weight_max" in record) == aem_on
    assert "eval/success" in trained[-1]
    run = tmp_path / "run"
    assert (run / "final" / "config.json").exists() and (run / "curves.png").exists()
    assert len(read_metrics(run)) == len(records)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_learns_from_trajectory_rows(tmp_path, preset):
    """rollout.layout=trajectory: one model row per trajectory, every turn a span of it."""
    _, records = train(
        tmp_path, f"algorithm={preset}", "rollout.layout=trajectory", "optim.mini_batch_rows=1"
    )
    for record in (r for r in records if r["iteration"] >= 0 and "actor/pg_loss" in r):
        assert math.isfinite(record["actor/pg_loss"])
        if PRESETS[preset]["dynamic_sampling"]:
            assert record["rollout/rows"] == 2 * record["rollout/kept_groups"]
        else:
            assert record["rollout/rows"] == record["rollout/trajectories"]
        assert "aem/weight_max" in record and record["rollout/context_full"] == 0


@pytest.mark.parametrize("layout", ["turn", "trajectory"])
def test_fused_scoring_learns_in_one_step_per_batch(tmp_path, layout):
    """optim.fused_scoring: no separate scoring pass; AEM's weights and one step per batch."""
    _, records = train(
        tmp_path, "optim.fused_scoring=true", f"rollout.layout={layout}", "optim.mini_batch_rows=1"
    )
    trained = [r for r in records if r["iteration"] >= 0]
    assert len(trained) == 2
    for record in trained:
        assert math.isfinite(record["actor/pg_loss"]) and record["actor/clipfrac"] == 0.0
        assert "aem/weight_max" in record and record["time/scoring"] > 0


def test_dynamic_sampling_rolls_out_generation_tasks_in_one_batch(tmp_path):
    """generation_tasks=3 with rollout.tasks=2: every rollout batch is 3 tasks x group_size
    trajectories, at most rollout.tasks informative groups are kept."""
    _, records = train(
        tmp_path,
        "algorithm=dapo",
        "algorithm.generation_tasks=3",
        "algorithm.max_refills=1",
        "trainer.iterations=3",
    )
    group_size = load_config(overrides=TINY).rollout.group_size
    trained = [r for r in records if r["iteration"] >= 0]
    assert len(trained) == 3
    for record in trained:
        batches = record["rollout/refills"] + 1
        assert record["rollout/trajectories"] == batches * 3 * group_size
        assert 0 <= record["rollout/kept_groups"] <= 2
        assert record["rollout/informative_group_frac"] * 3 == pytest.approx(
            round(record["rollout/informative_group_frac"] * 3)
        )


def test_generation_tasks_equal_to_tasks_changes_nothing(tmp_path):
    _, default = train(tmp_path, "algorithm=dapo", name="default")
    config = load_config(overrides=TINY)
    _, same = train(
        tmp_path,
        "algorithm=dapo",
        f"algorithm.generation_tasks={config.rollout.tasks}",
        name="same",
    )
    assert comparable(same) == comparable(default)


def test_generation_tasks_without_dynamic_sampling_is_refused():
    with pytest.raises(ConfigError, match=r"algorithm\.generation_tasks=8 needs dynamic sampling"):
        load_config(overrides=[*TINY, "algorithm=grpo", "algorithm.generation_tasks=8"])


def test_interrupted_then_resumed_run_matches_uninterrupted(tmp_path):
    train(tmp_path, "trainer.iterations=3", name="full")
    full = read_metrics(tmp_path / "full")

    config = load_config(overrides=[*TINY, "trainer.iterations=3"])
    first = Trainer(config, tmp_path / "cut")
    first.train(progress=lambda it, _: setattr(first, "stop_requested", it == 1))
    assert [r["iteration"] for r in read_metrics(tmp_path / "cut")] == [-1, 0, 1]
    assert not (tmp_path / "cut" / "final").exists()
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(config, tmp_path / "cut").setup()
    Trainer(config, tmp_path / "cut", resume=True).train()
    resumed = read_metrics(tmp_path / "cut")
    assert comparable(resumed) == comparable(full)


def test_env_that_raises_mid_episode_fails_only_its_episodes(tmp_path):
    train(tmp_path, "trainer.iterations=1", name="base")
    _, records = train(
        tmp_path,
        "env.name=raising-household",
        "env.eval_split=valid_seen",
        f"model.path={tmp_path / 'base' / 'final'}",
        "trainer.iterations=1",
    )
    record = next(r for r in records if r["iteration"] == 0)
    assert record["rollout/errors"] == record["rollout/trajectories"] == 4
    assert record["rollout/success"] == 0.0


def test_bad_configs_are_refused_before_training():
    with pytest.raises(ConfigError, match=r"unknown config key 'trainer\.iteration'"):
        load_config(overrides=["trainer.iteration=2"])
    with pytest.raises(ConfigError, match=r"env\.name: .*must be one of \[.*'household'"):
        Trainer(load_config(overrides=[*TINY, "env.name=nowhere"]), "/tmp/never").setup()


def test_metrics_file_is_json_lines(tmp_path):
    train(tmp_path, "trainer.iterations=1")
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)


def test_swe_pipeline_runs_end_to_end(tmp_path):
    """The tiny model will not learn repository repair; the point is the pipeline (issue 7)."""
    _, records = train(
        tmp_path,
        "env.name=swe",
        "env.eval_split=valid",
        "model.tiny.tokenizer_episodes=4",
        "warm_start.episodes=4",
        "rollout.max_prompt_tokens=256",
        "rollout.max_response_tokens=16",
        "trainer.iterations=1",
    )
    record = next(r for r in records if r["iteration"] == 0)
    assert record["rollout/trajectories"] == 4 and "actor/pg_loss" in record
    assert "eval/success" in record


def test_env_kwargs_default_per_environment():
    assert "scene_config" in load_config().env.env_kwargs()
    assert load_config(overrides=["env.name=webshop"]).env.env_kwargs() == {}
    override = load_config(overrides=["env.kwargs={max_steps: 3}"]).env.env_kwargs()
    assert override == {"max_steps": 3}


def test_aem_sft_saves_a_policy_that_train_starts_from(tmp_path, capsys):
    from aem.cli import main

    out = tmp_path / "sft"
    assert main(["sft", "--out", str(out), *TINY]) == 0
    assert "warm_start/loss_last" in capsys.readouterr().out
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()
    _, records = train(tmp_path, f"model.path={out}", "trainer.iterations=1")
    assert records[0]["iteration"] == -1 and "warm_start/steps" not in records[0]
    assert main(["sft", "--out", str(out), *TINY]) == 2  # refuses to overwrite
    assert main(["sft", "--out", str(tmp_path / "x"), *TINY, "warm_start.steps=0"]) == 2


@pytest.mark.parametrize("layout", ["turn", "trajectory"])
def test_the_warm_start_warns_when_expert_responses_outgrow_the_response_budget(
    tmp_path, caplog, layout
):
    from aem.cli import main

    extra = [f"rollout.layout={layout}", "rollout.max_sequence_tokens=512"]
    with caplog.at_level("WARNING", logger="aem.trainer.initial_policy"):
        assert main(["sft", "--out", str(tmp_path / "short"), *TINY, *extra]) == 0
    warned = [r.getMessage() for r in caplog.records if "expert responses" in r.getMessage()]
    assert len(warned) == 1 and "rollout.max_response_tokens=8 tokens" in warned[0], warned
    caplog.clear()
    with caplog.at_level("WARNING", logger="aem.trainer.initial_policy"):
        budget = "rollout.max_response_tokens=64"
        assert main(["sft", "--out", str(tmp_path / "long"), *TINY, *extra, budget]) == 0
    assert not [r for r in caplog.records if "expert responses" in r.getMessage()]


def test_a_user_registered_estimator_and_modulation_train_from_the_cli(tmp_path, monkeypatch):
    from aem.algorithms import advantages, modulation
    from aem.algorithms.modulation import Modulation, register_modulation, response_entropy
    from aem.cli import main

    monkeypatch.setattr(advantages, "_ESTIMATORS", dict(advantages._ESTIMATORS))
    monkeypatch.setattr(modulation, "_MODULATIONS", dict(modulation._MODULATIONS))
    calls = []

    @advantages.register_advantage_estimator("grpo-again")
    def grpo_again(inputs, config):
        calls.append("estimator")
        return advantages.get_advantage_estimator("grpo")(inputs, config)

    @register_modulation("halve")
    def halve(adv, token_entropy, spans, config):
        calls.append("modulation")
        entropy = response_entropy(token_entropy, spans.response_mask)
        return Modulation(adv * 0.5, entropy, torch.full_like(entropy, 0.5), {"halve/on": 1.0})

    run = tmp_path / "run"
    overrides = ["algorithm.estimator=grpo-again", "modulation=halve", "trainer.iterations=1"]
    assert main(["train", *TINY, f"output_dir={run}", *overrides]) == 0
    record = read_metrics(run)[1]
    assert calls == ["estimator", "modulation"] and record["halve/on"] == 1.0
    assert record["aem/weight_span_std"] == 0.0 and "aem/weight_max" not in record


@pytest.mark.parametrize("layout", ["turn", "trajectory"])
def test_empg_with_same_batch_drift_runs_and_logs_both(tmp_path, layout):
    """``modulation=empg`` and ``analysis.same_batch_drift`` in a whole run, in both layouts:
    EMPG's statistics instead of AEM's, and the same-batch measurement beside its prediction."""
    _, records = train(
        tmp_path,
        "modulation=empg",
        "empg.zeta=0.2",
        "analysis.same_batch_drift=true",
        f"rollout.layout={layout}",
    )
    for record in (r for r in records if r["iteration"] >= 0):
        assert {"empg/scale_min", "empg/next_step_frac", "time/drift"} <= set(record)
        aem_keys = {key for key in record if key.startswith("aem/")}
        assert aem_keys == {"aem/weight_span_std"}  # the span weights' spread, any modulation
        assert math.isfinite(record["drift/same_batch_measured"])
        assert math.isfinite(record["drift/same_batch_token_prediction"])
