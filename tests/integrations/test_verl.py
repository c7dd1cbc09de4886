"""AEM inside verl 0.9.1 on CPU, with verl itself: real ``DataProto``, verl's own
``compute_advantage``, the V1 trainer built from verl's default Hydra config, and the legacy
``RayPPOTrainer``.

Two stand-ins mark where verl needs Ray / GPUs: an in-memory TransferQueue (the two functions the
V1 advantage step calls, ``kv_batch_get`` / ``kv_batch_put``, storing rows in the nested layout
verl writes), and the actor worker group of the legacy trainer (token entropy and log-probs are
fixed functions of the input tokens). Every expected value comes from a float64 loop over rows
and groups or from :func:`aem.modulate_advantages` on the same tensors.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from typing import Any

import pytest

import verl_required  # noqa: F401  isort: skip  (skips this module without verl)

import numpy as np
import torch
import transfer_queue
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from tensordict import TensorDict
from torch import Tensor
from transfer_queue import KVBatchMeta
from verl import DataProto
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.trainer.ppo.utils import Role
from verl.trainer.ppo.v1 import PPOTrainerSync, get_trainer_cls
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync
from verl.utils import tensordict_utils as tu
from verl.utils.dataset.rl_dataset import collate_fn

import aem
from aem.algorithms import empg_modulate, spans_from_mask
from aem.integrations.verl import (
    AEMConfig,
    apply_aem,
    dense_group_ids,
    first_occurrence_mask,
    trainer_aem_config,
)
from aem.integrations.verl.legacy import AEMRayPPOTrainer
from aem.integrations.verl.v1 import AEMPPOTrainerSync

VERL_CONFIG_DIR = os.path.join(os.path.dirname(sys.modules["verl"].__file__), "trainer", "config")


# ---------------------------------------------------------------- references and builders


def reference_spans(mask: Tensor, span: str = "turn") -> list[tuple[int, list[int]]]:
    """(row, token columns) of every response by plain loops: each maximal run of a row's mask
    (``turn``) or all masked tokens of a row (``row``, rows with no token included)."""
    spans = []
    for row, values in enumerate(mask.tolist()):
        columns = [column for column, value in enumerate(values) if value]
        if span == "row":
            spans.append((row, columns))
            continue
        for column in columns:
            if column == 0 or not values[column - 1]:
                spans.append((row, []))
            spans[-1][1].append(column)
    return spans


def reference_aem(
    advantages: Tensor,
    entropy: Tensor,
    mask: Tensor,
    labels: list[Any],
    temperature: float,
    eps: float = 1e-6,
    counted: list[bool] | None = None,
    span: str = "turn",
) -> Tensor:
    """Eq. 13-15 by plain loops in float64 over the responses of :func:`reference_spans`: h_j,
    group (the row's label) min/max/mean over counted responses, w_j."""
    out = advantages.double().clone()
    spans = reference_spans(mask, span)
    h = [sum(float(entropy[row, t]) for t in cols) / max(len(cols), 1) for row, cols in spans]
    for label in set(labels):
        members = [j for j, (row, cols) in enumerate(spans) if labels[row] == label and cols]
        stats = [j for j in members if counted is None or counted[spans[j][0]]]
        if not stats:
            continue
        low, high = min(h[j] for j in stats), max(h[j] for j in stats)
        if high - low <= eps:
            continue
        scale = sum(math.exp(-temperature * (h[j] - low) / (high - low)) for j in stats) / len(
            stats
        )
        for j in members:
            u = min(max((h[j] - low) / (high - low), 0.0), 1.0)
            weight = math.exp(-temperature * u) / scale
            row, cols = spans[j]
            for t in cols:
                out[row, t] *= weight
    return out


def per_turn(
    advantages: Tensor,
    entropy: Tensor,
    mask: Tensor,
    labels: Any,
    row_stat_mask: Tensor | None = None,
    **options: Any,
) -> tuple[Tensor, dict[str, Tensor]]:
    """:func:`aem.modulate_advantages` with one span per run of each row's mask, grouped by the
    row's label (and kept out of the statistics with its row)."""
    spans = spans_from_mask(mask)
    return aem.modulate_advantages(
        advantages,
        entropy,
        mask,
        dense_group_ids(labels)[spans.span_row],
        span_index=spans.span_index,
        stat_mask=None if row_stat_mask is None else row_stat_mask[spans.span_row],
        **options,
    )


def group_labels(generator: torch.Generator, groups: int, per_group: int) -> list[str]:
    """uuid-like string uids, ``per_group`` consecutive rows per group (verl's layout)."""
    names = [
        f"{int(torch.randint(0, 2**31, (), generator=generator)):08x}-task" for _ in range(groups)
    ]
    return [name for name in names for _ in range(per_group)]


def rollout_rows(seed: int, groups: int = 3, per_group: int = 4, width: int = 6) -> DataProto:
    """One response per row: ragged lengths, some tool tokens (mask 0) inside responses, a 0/1
    outcome reward on the last token, per-token entropy in [0, 3)."""
    generator = torch.Generator().manual_seed(seed)
    rows = groups * per_group
    lengths = torch.randint(1, width + 1, (rows,), generator=generator)
    valid = torch.arange(width)[None, :] < lengths[:, None]
    tool = torch.rand(rows, width, generator=generator) < 0.2
    tool[:, 0] = False
    scores = torch.randint(0, 2, (rows,), generator=generator).float()
    rewards = torch.zeros(rows, width)
    rewards[torch.arange(rows), lengths - 1] = scores
    data = DataProto.from_dict(
        tensors={
            "response_mask": (valid & ~tool).long(),
            "token_level_rewards": rewards,
            "entropy": 3.0 * torch.rand(rows, width, generator=generator),
            "input_ids": torch.randint(3, 50, (rows, width), generator=generator),
        },
        non_tensors={"uid": np.array(group_labels(generator, groups, per_group), dtype=object)},
    )
    return data


def grpo(data: DataProto) -> DataProto:
    return compute_advantage(data, adv_estimator="grpo", norm_adv_by_std_in_grpo=True)


def verl_config(*overrides: str) -> DictConfig:
    """verl's own default ``ppo_trainer`` config with Hydra overrides."""
    with initialize_config_dir(config_dir=VERL_CONFIG_DIR, version_base=None):
        return compose(config_name="ppo_trainer", overrides=list(overrides))


# ---------------------------------------------------------------- apply_aem on a DataProto


def test_apply_aem_equals_modulate_advantages_after_verl_grpo() -> None:
    data = grpo(rollout_rows(seed=0))
    base = data.batch["advantages"].clone()
    returns = data.batch["returns"].clone()
    config = AEMConfig(enable=True, temperature=1.5)

    metrics = apply_aem(data, config)

    labels = list(data.non_tensor_batch["uid"])
    mask = data.batch["response_mask"]
    assert len(spans_from_mask(mask).span_row) > len(data), "rows must hold several turns"
    expected, stats = per_turn(base, data.batch["entropy"], mask, labels, temperature=1.5)
    assert torch.equal(data.batch["advantages"], expected)
    assert torch.equal(data.batch["returns"], returns)
    reference = reference_aem(base, data.batch["entropy"], mask, labels, 1.5)
    torch.testing.assert_close(data.batch["advantages"].double(), reference, rtol=1e-5, atol=1e-6)
    assert metrics.keys() == stats.keys()
    assert all(isinstance(value, float) for value in metrics.values())
    assert not torch.equal(data.batch["advantages"], base)  # AEM did change something


def test_string_uids_in_any_row_order_map_to_their_groups() -> None:
    assert dense_group_ids(np.array(["b", "a", "b", "c", "a"], dtype=object)).tolist() == [
        0,
        1,
        0,
        2,
        1,
    ]
    data = grpo(rollout_rows(seed=1, groups=4, per_group=3))
    shuffled = data.select_idxs(
        torch.randperm(len(data), generator=torch.Generator().manual_seed(1))
    )
    base = shuffled.batch["advantages"].clone()
    apply_aem(shuffled, AEMConfig(enable=True, temperature=2.0))

    labels = list(shuffled.non_tensor_batch["uid"])
    reference = reference_aem(
        base, shuffled.batch["entropy"], shuffled.batch["response_mask"], labels, 2.0
    )
    torch.testing.assert_close(
        shuffled.batch["advantages"].double(), reference, rtol=1e-5, atol=1e-6
    )


def adjust_batch_copy(data: DataProto, extra: int, seed: int) -> DataProto:
    """verl-agent's ``adjust_batch(mode="copy")``: append ``extra`` copies of random rows."""
    rng = np.random.default_rng(seed)
    duplicates = rng.choice(len(data), extra, replace=False)
    return DataProto.concat([data, data.select_idxs(duplicates)])


def test_duplicated_padding_rows_count_once_in_the_group_statistics() -> None:
    # Base advantages first (verl-agent's GRPO de-duplicates by traj_uid itself), so that the
    # only difference between the two batches below is the copies AEM sees.
    data = grpo(rollout_rows(seed=2, groups=2, per_group=5))
    rows = len(data)
    data.non_tensor_batch["traj_uid"] = np.array([f"traj-{i}" for i in range(rows)], dtype=object)
    original = data.select_idxs(torch.arange(rows))
    padded = adjust_batch_copy(data, extra=3, seed=0)
    # verl-agent balances the batch after padding: copies are no longer at the end.
    order = torch.randperm(len(padded), generator=torch.Generator().manual_seed(3))
    padded = padded.select_idxs(order)
    keep = first_occurrence_mask(padded)

    assert int(keep.sum()) == rows
    source = np.asarray(padded.non_tensor_batch["traj_uid"])
    assert sorted(source[keep.numpy()].tolist()) == sorted(f"traj-{i}" for i in range(rows))

    counted = padded.select_idxs(torch.arange(len(padded)))  # a separate copy for the check below
    apply_aem(padded, AEMConfig(enable=True, temperature=3.0), stat_mask=keep)
    apply_aem(original, AEMConfig(enable=True, temperature=3.0))
    by_trajectory = {f"traj-{i}": original.batch["advantages"][i] for i in range(rows)}
    for row, name in enumerate(source):
        torch.testing.assert_close(padded.batch["advantages"][row], by_trajectory[name])

    # Without the mask the copies shift the group statistics, so the mask matters here.
    apply_aem(counted, AEMConfig(enable=True, temperature=3.0))
    assert not torch.allclose(counted.batch["advantages"], padded.batch["advantages"])


def test_degenerate_group_keeps_weight_one() -> None:
    data = grpo(rollout_rows(seed=4, groups=2, per_group=4))
    labels = list(data.non_tensor_batch["uid"])
    flat = torch.tensor([label == labels[0] for label in labels])
    data.batch["entropy"][flat] = 0.7  # every token of the first group has the same entropy
    base = data.batch["advantages"].clone()
    metrics = apply_aem(data, AEMConfig(enable=True, temperature=5.0))

    assert torch.equal(data.batch["advantages"][flat], base[flat])
    assert not torch.equal(data.batch["advantages"][~flat], base[~flat])
    assert metrics["aem/degenerate_group_frac"] == pytest.approx(0.5)


def test_aem_off_leaves_verl_advantages_bit_identical() -> None:
    data = grpo(rollout_rows(seed=5))
    untouched = grpo(rollout_rows(seed=5))
    assert apply_aem(data, AEMConfig(enable=False, temperature=9.0)) == {}
    assert torch.equal(data.batch["advantages"], untouched.batch["advantages"])
    assert torch.equal(data.batch["returns"], untouched.batch["returns"])


def test_apply_aem_rejects_bad_input() -> None:
    data = rollout_rows(seed=6)
    with pytest.raises(ValueError, match="advantages"):
        apply_aem(data, AEMConfig(enable=True))
    data = grpo(data)
    with pytest.raises(ValueError, match="token_entropy"):
        apply_aem(data, AEMConfig(enable=True), token_entropy=torch.zeros(2, 2))
    without_entropy = data.select_idxs(torch.arange(len(data)))
    without_entropy.batch.pop("entropy")
    with pytest.raises(ValueError, match="'entropy'"):
        apply_aem(without_entropy, AEMConfig(enable=True))
    narrow = data.select_idxs(torch.arange(len(data)))
    narrow.batch["response_mask"] = narrow.batch["response_mask"][:, :-1].clone()
    with pytest.raises(ValueError, match="response_mask"):
        apply_aem(narrow, AEMConfig(enable=True))
    stat_mask = torch.ones(len(data) - 1, dtype=torch.bool)
    with pytest.raises(ValueError, match="stat_mask"):
        apply_aem(data, AEMConfig(enable=True), stat_mask=stat_mask)
    # A row whose response mask has no token is refused, unless it is left out of the statistics.
    data.batch["response_mask"][3] = 0
    for span in ("turn", "row"):
        with pytest.raises(ValueError, match="response_mask has no token in row 3"):
            apply_aem(data, AEMConfig(enable=True, span=span))
    keep = torch.ones(len(data), dtype=torch.bool)
    keep[3] = False
    base = data.batch["advantages"].clone()
    apply_aem(data, AEMConfig(enable=True), stat_mask=keep)
    assert torch.equal(data.batch["advantages"][3], base[3])


# ---------------------------------------------------------------- multi-turn rows: weight per turn


def multi_turn_rows(seed: int, groups: int = 3, per_group: int = 4) -> DataProto:
    """Rows as verl's agent loop makes them: one row per session, 1-4 assistant turns with
    observation tokens (mask 0) between them, ragged lengths with right padding, per-token
    entropy in [0, 3), a 0/1 outcome reward on the last response token."""
    generator = torch.Generator().manual_seed(seed)
    rows = groups * per_group
    layouts = []
    for _ in range(rows):
        layout: list[int] = []
        for turn in range(int(torch.randint(1, 5, (), generator=generator))):
            if turn:
                layout += [0] * int(torch.randint(1, 5, (), generator=generator))
            layout += [1] * int(torch.randint(1, 6, (), generator=generator))
        layouts.append(layout)
    width = max(len(layout) for layout in layouts)
    mask = torch.tensor([layout + [0] * (width - len(layout)) for layout in layouts])
    rewards = torch.zeros(rows, width)
    last = torch.tensor([len(layout) - 1 for layout in layouts])
    rewards[torch.arange(rows), last] = torch.randint(0, 2, (rows,), generator=generator).float()
    return DataProto.from_dict(
        tensors={
            "response_mask": mask,
            "token_level_rewards": rewards,
            "entropy": 3.0 * torch.rand(rows, width, generator=generator),
        },
        non_tensors={"uid": np.array(group_labels(generator, groups, per_group), dtype=object)},
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multi_turn_rows_get_one_weight_per_turn(seed: int) -> None:
    data = grpo(multi_turn_rows(seed))
    base = data.batch["advantages"].clone()
    entropy, mask = data.batch["entropy"], data.batch["response_mask"]
    labels = list(data.non_tensor_batch["uid"])
    spans = spans_from_mask(mask)
    assert (spans.span_row.bincount() > 1).sum() >= 3, "several rows must hold several turns"

    per_row = data.select_idxs(torch.arange(len(data)))
    metrics = apply_aem(data, AEMConfig(enable=True, temperature=1.5))
    apply_aem(per_row, AEMConfig(enable=True, temperature=1.5, span="row"))

    expected, stats = per_turn(base, entropy, mask, labels, temperature=1.5)
    assert torch.equal(data.batch["advantages"], expected)
    assert metrics == pytest.approx({k: float(v) for k, v in stats.items()}, nan_ok=True)
    reference = reference_aem(base, entropy, mask, labels, 1.5)
    torch.testing.assert_close(data.batch["advantages"].double(), reference, rtol=1e-5, atol=1e-6)
    row_reference = reference_aem(base, entropy, mask, labels, 1.5, span="row")
    torch.testing.assert_close(
        per_row.batch["advantages"].double(), row_reference, rtol=1e-5, atol=1e-6
    )
    assert not torch.allclose(data.batch["advantages"], per_row.batch["advantages"])
    # Observation and padding tokens keep verl's advantage.
    off = mask == 0
    assert torch.equal(data.batch["advantages"][off], base[off])


@pytest.mark.parametrize("seed", [0, 1])
def test_empg_treats_each_row_as_one_trajectory_of_turns(seed: int) -> None:
    """``modulation="empg"``: EMPG over the batch, each row one trajectory whose mask runs are
    its steps in order (turn numbers counted here by a plain loop over the rows)."""
    data = grpo(multi_turn_rows(seed))
    base = data.batch["advantages"].clone()
    entropy, mask = data.batch["entropy"], data.batch["response_mask"]
    spans = spans_from_mask(mask)
    turns, seen = [], {}
    for row in spans.span_row.tolist():
        turns.append(seen.get(row, 0))
        seen[row] = turns[-1] + 1
    config = AEMConfig(enable=True, modulation="empg", empg_k=1.5, empg_zeta=0.2)
    metrics = apply_aem(data, config)
    expected = empg_modulate(
        base,
        entropy,
        mask,
        dense_group_ids(data.non_tensor_batch["uid"])[spans.span_row],
        spans.span_index,
        trajectory_index=spans.span_row,
        turn_index=torch.tensor(turns),
        k=1.5,
        zeta=0.2,
    )
    assert torch.equal(data.batch["advantages"], expected.advantages)
    assert metrics["empg/next_step_frac"] > 0
    assert not torch.equal(data.batch["advantages"], base)


def test_per_turn_weights_can_invert_per_row_weights() -> None:
    """The issue's example: three rows of two turns in one group, turn entropies 0.1 / 2.0,
    1.0 / 1.0, 0.5 / 0.5, advantage 1. Per row, the turn with the lowest entropy of the group
    gets w = 0.62; per turn it gets w = 1.42."""
    turns = [(0.1, 2.0), (1.0, 1.0), (0.5, 0.5)]
    data = DataProto.from_dict(
        tensors={
            "response_mask": torch.tensor([[1, 1, 0, 1, 1, 0]] * 3),
            "entropy": torch.tensor([[a, a, 5.0, b, b, 5.0] for a, b in turns]),
            "advantages": torch.ones(3, 6),
        },
        non_tensors={"uid": np.array(["task"] * 3, dtype=object)},
    )
    per_row = data.select_idxs(torch.arange(3))
    apply_aem(data, AEMConfig(enable=True))
    apply_aem(per_row, AEMConfig(enable=True, span="row"))
    assert data.batch["advantages"][0, 0].item() == pytest.approx(1.42, abs=0.005)
    assert per_row.batch["advantages"][0, 0].item() == pytest.approx(0.62, abs=0.005)
    assert data.batch["advantages"][0, 3] < 1.0 < data.batch["advantages"][0, 0]


def test_rows_with_one_contiguous_response_are_unchanged_by_the_span_option() -> None:
    """Single-turn rows (one run of the mask each): per turn is per row, bit for bit, and equal
    to the core's one-span-per-row call."""
    data = grpo(rollout_rows(seed=12))
    lengths = torch.randint(1, 7, (len(data),), generator=torch.Generator().manual_seed(12))
    width = data.batch["response_mask"].shape[1]
    data.batch["response_mask"] = (torch.arange(width)[None, :] < lengths[:, None]).long()
    base = data.batch["advantages"].clone()
    per_row = data.select_idxs(torch.arange(len(data)))
    apply_aem(data, AEMConfig(enable=True, temperature=2.0))
    apply_aem(per_row, AEMConfig(enable=True, temperature=2.0, span="row"))
    assert torch.equal(data.batch["advantages"], per_row.batch["advantages"])
    expected, _ = aem.modulate_advantages(
        base,
        data.batch["entropy"],
        data.batch["response_mask"],
        dense_group_ids(data.non_tensor_batch["uid"]),
        temperature=2.0,
    )
    assert torch.equal(data.batch["advantages"], expected)


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"enable": "yes"}, "algorithm.aem.enable"),
        ({"enable": True, "temperature": -1.0}, "algorithm.aem.temperature"),
        ({"enable": True, "temperature": float("inf")}, "algorithm.aem.temperature"),
        ({"enable": True, "temperature": "hot"}, "algorithm.aem.temperature"),
        ({"enable": True, "eps": -1e-3}, "algorithm.aem.eps"),
        ({"enable": True, "eps": float("nan")}, "algorithm.aem.eps"),
        ({"enable": True, "temprature": 1.0}, "temprature"),
        ({"enable": True, "span": "episode"}, "algorithm.aem.span"),
        ({"enable": True, "modulation": "gigpo"}, "algorithm.aem.modulation"),
        ({"enable": True, "empg_zeta": -0.1}, "algorithm.aem.empg_zeta"),
    ],
)
def test_bad_aem_config_names_the_field(section: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AEMConfig.from_algorithm_config({"aem": section})


def test_config_read_from_verl_hydra_config() -> None:
    config = verl_config("+algorithm.aem.enable=True", "+algorithm.aem.temperature=2")
    assert trainer_aem_config(config) == AEMConfig(enable=True, temperature=2.0, eps=1e-6)
    assert trainer_aem_config(verl_config()) == AEMConfig(enable=False)
    assert trainer_aem_config(verl_config("+algorithm.aem.span=row")).span == "row"
    assert trainer_aem_config(verl_config()).span == "turn"
    bypass = verl_config(
        "+algorithm.aem.enable=True", "algorithm.rollout_correction.bypass_mode=True"
    )
    with pytest.raises(ValueError, match="bypass_mode"):
        trainer_aem_config(bypass)


# ---------------------------------------------------------------- V1 trainer (aem_sync)


class InMemoryTransferQueue:
    """Stand-in for the two TransferQueue calls of the V1 advantage step (the real queue runs as
    Ray actors). Rows are kept per key; per-token fields are returned as jagged nested tensors
    and string fields as a NonTensorStack, as verl reads them."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.tags: dict[str, dict[str, Any]] = {}

    def kv_batch_put(
        self,
        keys: list[str],
        partition_id: str,
        fields: TensorDict | None = None,
        tags: list[dict[str, Any]] | None = None,
    ) -> KVBatchMeta:
        for name in [] if fields is None else list(fields.keys()):
            value = fields.get(name)
            values = value.unbind(0) if isinstance(value, Tensor) else value.tolist()
            for key, row in zip(keys, values, strict=True):
                self.rows.setdefault(key, {})[name] = row
        for key, tag in zip(keys, tags or [{}] * len(keys), strict=True):
            self.tags.setdefault(key, {}).update(tag)
        return KVBatchMeta(
            keys=list(keys), tags=[self.tags[key] for key in keys], partition_id=partition_id
        )

    def kv_batch_get(
        self, keys: list[str], partition_id: str, select_fields: list[str]
    ) -> TensorDict:
        out = TensorDict({}, batch_size=len(keys))
        for name in select_fields:
            if not all(name in self.rows[key] for key in keys):
                continue
            values = [self.rows[key][name] for key in keys]
            if isinstance(values[0], Tensor):
                out[name] = torch.nested.as_nested_tensor(values, layout=torch.jagged)
            else:
                out[name] = values
        return out


def agent_loop_outputs(seed: int, groups: int = 3, sessions: int = 4) -> tuple[list, list, dict]:
    """Rows as verl's agent loop stores them: key ``{uid}_{session}_{index}``, one or two outputs
    per session (multi-turn), reward on the last token of the session's final output, and one
    padding row built like verl's ``upsample_batch_to_divisible_size``."""
    generator = torch.Generator().manual_seed(seed)
    keys, tags, rows = [], [], {}
    for uid in group_labels(generator, groups, 1):
        for session in range(sessions):
            outputs = int(torch.randint(1, 3, (), generator=generator))
            score = float(torch.randint(0, 2, (), generator=generator))
            for index in range(outputs):
                length = int(torch.randint(1, 7, (), generator=generator))
                mask = (torch.rand(length, generator=generator) > 0.2).long()
                mask[0] = 1
                reward = torch.zeros(length)
                if index == outputs - 1:
                    reward[-1] = score
                key = f"{uid}_{session}_{index}"
                keys.append(key)
                tags.append({})
                rows[key] = {
                    "uid": uid,
                    "response_mask": mask,
                    "rm_scores": reward,
                    "old_log_probs": -torch.rand(length, generator=generator),
                    "entropy": 3.0 * torch.rand(length, generator=generator),
                }
    pad_key = "pad0123456789abcdef_0_0"
    keys.append(pad_key)
    tags.append({"is_padding": True})
    rows[pad_key] = {
        "uid": "pad0123456789abcdef",
        "response_mask": torch.zeros(1, dtype=torch.long),
        "rm_scores": torch.zeros(1),
        "old_log_probs": torch.zeros(1),
        "entropy": torch.full((1,), 2.0),
    }
    return keys, tags, rows


def run_v1_advantage_step(
    trainer: Any, seed: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[TensorDict, dict[str, Any], list[str], list[dict[str, Any]]]:
    """Fill an in-memory queue, run the trainer's real ``_compute_advantage``, read it back."""
    store = InMemoryTransferQueue()
    keys, tags, rows = agent_loop_outputs(seed)
    for key, tag in zip(keys, tags, strict=True):
        store.rows[key] = dict(rows[key])
        store.tags[key] = dict(tag)
    monkeypatch.setattr(transfer_queue, "kv_batch_get", store.kv_batch_get)
    monkeypatch.setattr(transfer_queue, "kv_batch_put", store.kv_batch_put)
    metrics: dict[str, Any] = {}
    meta = trainer._compute_advantage(
        KVBatchMeta(keys=keys, tags=tags, partition_id="train"), metrics
    )
    assert meta.keys == keys
    assert [tag.get("is_padding", False) for tag in meta.tags] == [
        tag.get("is_padding", False) for tag in tags
    ]
    fields = ["uid", "response_mask", "entropy", "advantages", "returns"]
    stored = store.kv_batch_get(keys, "train", fields).to_padded_tensor()
    return stored, metrics, keys, tags


V1_OVERRIDES = (
    "algorithm.adv_estimator=grpo",
    "actor_rollout_ref.rollout.n=4",
    "data.train_batch_size=3",
)


def test_aem_sync_is_registered_in_verls_trainer_registry() -> None:
    assert get_trainer_cls("aem_sync") is AEMPPOTrainerSync
    assert issubclass(AEMPPOTrainerSync, PPOTrainerSync)


def test_aem_sync_registers_through_verls_external_module_hook() -> None:
    """What verl's Ray processes do with VERL_USE_EXTERNAL_MODULES: ``import verl`` imports the
    listed modules, so the registry lookup in the task runner finds ``aem_sync``."""
    code = (
        "import verl\n"
        "from verl.trainer.ppo.v1 import get_trainer_cls\n"
        "print(get_trainer_cls('aem_sync').__qualname__)\n"
    )
    env = {**os.environ, "VERL_USE_EXTERNAL_MODULES": "aem.integrations.verl.v1"}
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "AEMPPOTrainerSync"


def test_aem_sync_trainer_runs_as_verls_sync_mode() -> None:
    config = verl_config("trainer.v1.trainer_mode=aem_sync", "+algorithm.aem.enable=True")
    trainer = AEMPPOTrainerSync(config)
    assert trainer.trainer_mode == "sync"
    assert type(trainer.replay_buffer) is ReplayBuffer
    assert not isinstance(trainer.replay_buffer, ReplayBufferAsync)
    assert config.trainer.v1.trainer_mode == "aem_sync"  # the caller's config is not changed
    with pytest.raises(ValueError, match=r"algorithm\.aem\.temperature"):
        AEMPPOTrainerSync(
            verl_config("+algorithm.aem.enable=True", "+algorithm.aem.temperature=-2")
        )


def test_aem_sync_advantage_step_equals_modulate_advantages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base_trainer = PPOTrainerSync(verl_config(*V1_OVERRIDES))
    base, _, keys, tags = run_v1_advantage_step(base_trainer, seed=7, monkeypatch=monkeypatch)
    config = verl_config(
        *V1_OVERRIDES,
        "trainer.v1.trainer_mode=aem_sync",
        "+algorithm.aem.enable=True",
        "+algorithm.aem.temperature=1.5",
    )
    stored, metrics, _, _ = run_v1_advantage_step(
        AEMPPOTrainerSync(config), seed=7, monkeypatch=monkeypatch
    )

    labels = base.get("uid").tolist()
    not_padding = torch.tensor([not tag.get("is_padding", False) for tag in tags])
    expected, stats = per_turn(
        base["advantages"],
        base["entropy"],
        base["response_mask"],
        labels,
        row_stat_mask=not_padding,
        temperature=1.5,
    )
    assert torch.equal(stored["advantages"], expected)
    assert torch.equal(stored["returns"], base["returns"])
    reference = reference_aem(
        base["advantages"],
        base["entropy"],
        base["response_mask"],
        labels,
        1.5,
        counted=not_padding.tolist(),
    )
    torch.testing.assert_close(stored["advantages"].double(), reference, rtol=1e-5, atol=1e-6)
    assert {name: metrics[name] for name in stats} == pytest.approx(
        {name: float(value) for name, value in stats.items()}, nan_ok=True
    )
    assert len(keys) == stored["advantages"].shape[0]


def test_aem_sync_with_aem_off_writes_verls_advantages(monkeypatch: pytest.MonkeyPatch) -> None:
    base, base_metrics, _, _ = run_v1_advantage_step(
        PPOTrainerSync(verl_config(*V1_OVERRIDES)), seed=8, monkeypatch=monkeypatch
    )
    off = AEMPPOTrainerSync(verl_config(*V1_OVERRIDES, "trainer.v1.trainer_mode=aem_sync"))
    stored, metrics, _, _ = run_v1_advantage_step(off, seed=8, monkeypatch=monkeypatch)
    assert torch.equal(stored["advantages"], base["advantages"])
    assert torch.equal(stored["returns"], base["returns"])
    assert metrics == base_metrics


# ---------------------------------------------------------------- legacy RayPPOTrainer


def token_entropy_of(token: Tensor) -> Tensor:
    """The stand-in policy's entropy of the distribution that follows ``token``."""
    return (token.to(torch.float32) % 7.0) / 2.0 + 0.1


class ActorWorkerStandIn:
    """Stands in for the Ray actor worker group (GPU processes): ``compute_log_prob`` returns, in
    verl's no-padding layout, entropy and log-probs that are fixed functions of each input
    token; ``update_actor`` keeps the batch it was sent."""

    def __init__(self) -> None:
        self.updates: list[TensorDict] = []

    def compute_log_prob(self, data: TensorDict) -> TensorDict:
        input_ids = data["input_ids"]
        tokens = input_ids.values()
        entropy = torch.nested.nested_tensor_from_jagged(
            token_entropy_of(tokens), offsets=input_ids.offsets()
        )
        log_probs = torch.nested.nested_tensor_from_jagged(
            -tokens.to(torch.float32) / 100.0, offsets=input_ids.offsets()
        )
        return tu.get_tensordict(
            {"entropy": entropy, "log_probs": log_probs}, non_tensor_dict={"metrics": {"mfu": 0.0}}
        )

    def update_actor(self, data: TensorDict) -> TensorDict:
        self.updates.append(data)
        return tu.get_tensordict(
            {"dummy": torch.zeros(len(data))},
            non_tensor_dict={"metrics": {"mfu": 0.5, "pg_loss": [0.1, 0.2]}},
        )


def legacy_trainer(*overrides: str) -> AEMRayPPOTrainer:
    config = verl_config(
        "trainer.use_v1=False",
        "algorithm.adv_estimator=grpo",
        "data.train_batch_size=2",
        "data.dataloader_num_workers=0",
        "trainer.device=cpu",
        *overrides,
    )
    dataset = [{"input_ids": torch.zeros(3, dtype=torch.long)} for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # verl deprecates its legacy trainer
        trainer = AEMRayPPOTrainer(
            config,
            tokenizer=None,
            role_worker_mapping={Role.ActorRollout: object},
            resource_pool_manager=None,
            train_dataset=dataset,
            val_dataset=dataset,
            collate_fn=collate_fn,
        )
    trainer.actor_rollout_wg = ActorWorkerStandIn()
    return trainer


def legacy_batch(
    seed: int, groups: int = 2, per_group: int = 4, observations: bool = False
) -> DataProto:
    """Left-padded prompts, right-padded responses, outcome reward on the last response token.
    With ``observations``, responses of 4+ tokens hold two assistant turns: tokens 2-3 are an
    observation (attended, 0 in ``response_mask``), as in verl's multi-turn agent loop."""
    generator = torch.Generator().manual_seed(seed)
    rows, prompt_width, response_width = groups * per_group, 4, 7 if observations else 5
    prompt_lengths = torch.randint(1, prompt_width + 1, (rows,), generator=generator)
    response_lengths = torch.randint(1, response_width + 1, (rows,), generator=generator)
    prompt_mask = torch.arange(prompt_width)[None, :] >= prompt_width - prompt_lengths[:, None]
    response_mask = torch.arange(response_width)[None, :] < response_lengths[:, None]
    prompts = torch.randint(3, 60, (rows, prompt_width), generator=generator) * prompt_mask
    responses = torch.randint(3, 60, (rows, response_width), generator=generator) * response_mask
    attention_mask = torch.cat([prompt_mask, response_mask], dim=1).long()
    observation = torch.zeros(rows, response_width, dtype=torch.bool)
    if observations:
        observation[:, 2:4] = (response_lengths >= 5)[:, None]
    rewards = torch.zeros(rows, response_width)
    rewards[torch.arange(rows), response_lengths - 1] = torch.randint(
        0, 2, (rows,), generator=generator
    ).float()
    return DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": responses,
            "input_ids": torch.cat([prompts, responses], dim=1),
            "attention_mask": attention_mask,
            "position_ids": (attention_mask.cumsum(dim=1) - 1).clamp(min=0),
            "response_mask": (response_mask & ~observation).long(),
            "token_level_rewards": rewards,
        },
        non_tensors={"uid": np.array(group_labels(generator, groups, per_group), dtype=object)},
    )


def fit_until_actor_update(trainer: AEMRayPPOTrainer, batch: DataProto) -> tuple[Tensor, DataProto]:
    """The legacy ``fit`` steps around the advantage: old-log-prob pass, pop of ``entropys``,
    union, verl's ``compute_advantage``, actor update. Returns the base advantages and output."""
    old_log_prob, _ = trainer._compute_old_log_prob(batch)
    old_log_prob.batch.pop("entropys")  # exactly what RayPPOTrainer.fit does
    batch = grpo(batch.union(old_log_prob))
    base = batch.batch["advantages"].clone()
    return base, trainer._update_actor(batch)


@pytest.mark.parametrize("observations", [False, True], ids=["single-turn", "multi-turn"])
def test_legacy_trainer_keeps_entropies_through_the_pop(observations: bool) -> None:
    trainer = legacy_trainer("+algorithm.aem.enable=True", "+algorithm.aem.temperature=2.0")
    batch = legacy_batch(seed=9, observations=observations)
    base, output = fit_until_actor_update(trainer, batch)

    # The policy's entropy for response token j follows the token before it.
    previous = torch.cat([batch.batch["prompts"][:, -1:], batch.batch["responses"][:, :-1]], dim=1)
    entropy = token_entropy_of(previous)
    mask = batch.batch["response_mask"]
    labels = list(batch.non_tensor_batch["uid"])
    turns = spans_from_mask(mask).num_spans
    assert (turns > len(batch)) == observations
    expected, _ = per_turn(base, entropy, mask, labels, temperature=2.0)
    sent = trainer.actor_rollout_wg.updates[-1]["advantages"]
    torch.testing.assert_close(sent, expected)
    reference = reference_aem(base, entropy, mask, labels, 2.0)
    torch.testing.assert_close(sent.double(), reference, rtol=1e-5, atol=1e-6)
    assert not torch.equal(sent, base)
    metrics = output.meta_info["metrics"]
    assert {"aem/weight_min", "aem/weight_max", "actor/pg_loss"} <= metrics.keys()


def test_legacy_trainer_with_aem_off_sends_verls_advantages() -> None:
    trainer = legacy_trainer()
    base, output = fit_until_actor_update(trainer, legacy_batch(seed=10))
    assert torch.equal(trainer.actor_rollout_wg.updates[-1]["advantages"], base)
    assert not any(name.startswith("aem/") for name in output.meta_info["metrics"])


def test_legacy_trainer_refuses_reordered_rows() -> None:
    trainer = legacy_trainer("+algorithm.aem.enable=True")
    batch = legacy_batch(seed=11)
    old_log_prob, _ = trainer._compute_old_log_prob(batch)
    old_log_prob.batch.pop("entropys")
    batch = grpo(batch.union(old_log_prob))
    batch.reorder(torch.arange(len(batch) - 1, -1, -1))
    with pytest.raises(RuntimeError, match="reordered"):
        trainer._update_actor(batch)
    with pytest.raises(RuntimeError, match="no token entropies"):
        trainer._update_actor(batch)
