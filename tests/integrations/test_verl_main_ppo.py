"""verl 0.9.1's own trainer, end to end on this CPU: ``python -m verl.trainer.main_ppo`` (and the
project's legacy runner) as a subprocess, 2 GRPO steps each, with the CPU plugin
(``aem.integrations.verl.cpu``: cpu platform, Hugging Face rollout standing in for vLLM), a tiny
local Qwen2 model, a parquet data set in verl's schema and a reward function, all built here
(``verl_cpu_run``). Each run takes about 1-1.5 minutes on 2 cores.

What verl runs is verl's code: Hydra config, local Ray, the task runner, TransferQueue (V1), the
FSDP2 engine over gloo, the agent loop, the old-log-prob pass with entropy, GRPO, the actor
update and the weight sync to the rollout. ``verl_cpu_plugins`` adds a multi-turn agent loop
(observation tokens masked between assistant turns) and records the batches of the ``aem_sync``
advantage step.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import verl_required  # noqa: F401  isort: skip  (skips this module without verl)

import torch
import verl_cpu_run as cpu_run
from verl_cpu_plugins import MULTI_TURN_AGENT

import aem
from aem.algorithms import spans_from_mask
from aem.integrations.verl import dense_group_ids

pytestmark = pytest.mark.slow

AEM_METRICS = {
    "aem/weight_min",
    "aem/weight_max",
    "aem/weight_std",
    "aem/degenerate_group_frac",
    "aem/entropy_mean",
    "aem/entropy_pos",
    "aem/entropy_neg",
}
MIXED_AGENTS = ("single_turn_agent", MULTI_TURN_AGENT)


def run_two_steps(root: Path, *extra: str, module: str = "verl.trainer.main_ppo", agents=()):
    space = cpu_run.build_workspace(root, prompts=4, agents=agents)
    result = cpu_run.run(space, *extra, module=module)
    log = (space.root / "log.txt").read_text()
    assert result.returncode == 0, log[-6000:]
    steps = cpu_run.logged_steps(space)
    assert len(steps) == 2, log[-3000:]
    for step in steps:
        assert math.isfinite(step["actor/pg_loss"])
        assert 0.0 <= step["critic/score/mean"] <= 1.0
        assert step["actor/entropy"] > 0.0
    return space, steps


def recorded_batches(space: cpu_run.Workspace) -> list[dict]:
    files = sorted(space.dumps.glob("batch_*.pt"), key=lambda path: int(path.stem.split("_")[1]))
    return [torch.load(path, weights_only=False) for path in files]


def per_turn_core(record: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """aem.modulate_advantages on the recorded batch: one span per run of each row's mask,
    grouped by the row's uid, padding rows out of the statistics."""
    mask = record["response_mask"].bool()
    spans = spans_from_mask(mask)
    counted = torch.tensor([not padding for padding in record["is_padding"]])
    return aem.modulate_advantages(
        record["advantages"],
        record["entropy"],
        mask,
        dense_group_ids(record["uid"])[spans.span_row],
        span_index=spans.span_index,
        temperature=record["config"].temperature,
        eps=record["config"].eps,
        stat_mask=counted[spans.span_row],
    )


def test_plain_grpo_runs_in_verls_main_ppo(tmp_path: Path) -> None:
    _, steps = run_two_steps(tmp_path / "plain")
    assert not any(name.startswith("aem/") for step in steps for name in step)


def test_aem_sync_in_verls_main_ppo_weighs_each_turn(tmp_path: Path) -> None:
    """``trainer.v1.trainer_mode=aem_sync`` on prompts of verl's single-turn agent loop and of a
    multi-turn one: the advantages stored after the AEM step equal aem.modulate_advantages with
    one span per assistant turn on the same batch, and the logged aem/* metrics are its stats."""
    space, steps = run_two_steps(
        tmp_path / "aem_sync",
        "trainer.v1.trainer_mode=aem_sync",
        "+algorithm.aem.enable=True",
        "+algorithm.aem.temperature=1.5",
        "data.max_response_length=24",
        "actor_rollout_ref.rollout.response_length=24",
        agents=MIXED_AGENTS,
    )
    records = recorded_batches(space)
    assert len(records) == 2
    single_turn_rows = multi_turn_rows = 0
    for record, logged in zip(records, steps, strict=True):
        assert record["config"].temperature == 1.5 and record["config"].span == "turn"
        expected, stats = per_turn_core(record)
        assert torch.equal(record["advantages_after"], expected)
        assert logged.keys() >= AEM_METRICS
        for name, value in stats.items():
            # verl's file logger writes NaN (no span of that sign in the batch) as null
            logged_value = math.nan if logged[name] is None else logged[name]
            assert logged_value == pytest.approx(float(value), nan_ok=True), name
        turns = spans_from_mask(record["response_mask"].bool()).span_row.bincount()
        single_turn_rows += int((turns == 1).sum())
        multi_turn_rows += int((turns >= 2).sum())
        # Tokens outside the responses (observations, padding) keep verl's advantage.
        outside = record["response_mask"] == 0
        assert torch.equal(record["advantages_after"][outside], record["advantages"][outside])
    assert single_turn_rows > 0 and multi_turn_rows > 0
    # Two turns of one row got two different weights somewhere: per turn, not per row.
    assert any(
        len(set(weights_per_turn(record, row))) > 1
        for record in records
        for row in range(record["response_mask"].shape[0])
    )


def weights_per_turn(record: dict, row: int) -> list[float]:
    """w = modulated / base advantage of each turn of ``row`` (turns with A = 0 left out)."""
    spans = spans_from_mask(record["response_mask"].bool())
    weights = []
    for span in (spans.span_row == row).nonzero()[:, 0].tolist():
        tokens = spans.span_index[row] == span
        base = record["advantages"][row][tokens][0]
        if base != 0:
            weights.append(round(float(record["advantages_after"][row][tokens][0] / base), 5))
    return weights


def test_legacy_trainer_through_the_runner(tmp_path: Path) -> None:
    """``python -m aem.integrations.verl.main_ppo trainer.use_v1=False``: verl's legacy task
    runner with AEMRayPPOTrainer, on single- and multi-turn rows."""
    _, steps = run_two_steps(
        tmp_path / "legacy",
        "trainer.use_v1=False",
        "+algorithm.aem.enable=True",
        "data.max_response_length=24",
        "actor_rollout_ref.rollout.response_length=24",
        module="aem.integrations.verl.main_ppo",
        agents=MIXED_AGENTS,
    )
    for step in steps:
        assert step.keys() >= AEM_METRICS
        assert 0.0 < step["aem/weight_min"] <= 1.0 <= step["aem/weight_max"]
