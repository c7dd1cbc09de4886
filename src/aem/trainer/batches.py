"""Selecting and joining turn batches by group (DAPO's dynamic sampling)."""

from __future__ import annotations

import dataclasses

import torch

from aem.rollout import TurnBatch

_ID_FIELDS = ("group_id", "traj_id", "anchor_id")


def informative_groups(batch: TurnBatch) -> list[int]:
    """Groups whose trajectories did not all get the same return (their advantages are not 0)."""
    returns: dict[int, set[float]] = {}
    for record in batch.trajectories:
        returns.setdefault(record.group_id, set()).add(record.episode_return)
    return sorted(group for group, values in returns.items() if len(values) > 1)


def select_groups(batch: TurnBatch, groups: list[int]) -> TurnBatch:
    """The rows and trajectory records of ``groups`` only."""
    wanted = set(groups)
    rows = [i for i, g in enumerate(batch.group_id.tolist()) if g in wanted]
    index = torch.tensor(rows, dtype=torch.long)
    values = {}
    for field in dataclasses.fields(batch):
        value = getattr(batch, field.name)
        if field.name == "trajectories":
            values[field.name] = [t for t in value if t.group_id in wanted]
        elif field.name == "layout":
            values[field.name] = value
        elif isinstance(value, torch.Tensor):
            values[field.name] = value[index]
        else:
            values[field.name] = [value[i] for i in rows]
    return TurnBatch(**values)


def concat_batches(batches: list[TurnBatch]) -> TurnBatch:
    """Rows of all ``batches`` (of one layout) in order; group, trajectory and anchor ids are
    shifted so they stay unique across batches."""
    layouts = {batch.layout for batch in batches}
    if len(layouts) != 1:
        raise ValueError(f"batches must share one layout, got {sorted(layouts)}")
    offsets = dict.fromkeys(_ID_FIELDS, 0)
    parts: dict[str, list] = {
        field.name: [] for field in dataclasses.fields(TurnBatch) if field.name != "layout"
    }
    for batch in batches:
        for field in dataclasses.fields(batch):
            if field.name == "layout":
                continue
            value = getattr(batch, field.name)
            if field.name in _ID_FIELDS:
                value = value + offsets[field.name]
            if field.name == "trajectories":
                value = [
                    dataclasses.replace(
                        t,
                        group_id=t.group_id + offsets["group_id"],
                        traj_id=t.traj_id + offsets["traj_id"],
                    )
                    for t in value
                ]
            parts[field.name].append(value)
        for name in _ID_FIELDS:
            ids = getattr(batch, name)
            if ids.numel():
                offsets[name] += int(ids.max()) + 1
    joined = {}
    for name, values in parts.items():
        if values and isinstance(values[0], torch.Tensor):
            joined[name] = torch.cat(values)
        else:
            joined[name] = [item for value in values for item in value]
    return TurnBatch(**joined, layout=layouts.pop())
