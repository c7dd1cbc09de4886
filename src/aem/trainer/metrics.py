"""Per-iteration metrics: ``metrics.jsonl`` (one JSON object per line), mirrored to trackers."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aem.trainer.trackers import Tracker

METRICS_FILE = "metrics.jsonl"


class PhaseTimer:
    """Wall-clock seconds per named phase (the paper's Fig. 4 breakdown)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def as_metrics(self) -> dict[str, float]:
        total = sum(self.seconds.values())
        out = {f"time/{name}": value for name, value in self.seconds.items()}
        out["time/total"] = total
        return out


class MetricsWriter:
    """Appends one record per iteration to ``metrics.jsonl`` and mirrors its numbers to the
    attached trackers (:mod:`aem.trainer.trackers`: TensorBoard, W&B, MLflow)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / METRICS_FILE
        self.trackers: list[Tracker] = []

    def attach(self, trackers: list[Tracker]) -> None:
        self.trackers = list(trackers)

    def write(self, record: dict[str, Any]) -> None:
        clean = {key: _jsonable(value) for key, value in record.items()}
        with self.path.open("a") as handle:
            handle.write(json.dumps(clean, sort_keys=True) + "\n")
        numbers = {
            key: float(value)
            for key, value in clean.items()
            if isinstance(value, int | float) and not isinstance(value, bool) and key != "iteration"
        }
        for tracker in self.trackers:
            tracker.log_metrics(numbers, int(record["iteration"]))

    def log_artifact(self, path: Path | None) -> None:
        if path is not None and Path(path).exists():
            for tracker in self.trackers:
                tracker.log_artifact(Path(path))

    def truncate_after(self, iteration: int) -> None:
        """Drop records of iterations > ``iteration`` (they came after the checkpoint we resume)."""
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if line.strip()]
        kept = [line for line in kept if json.loads(line).get("iteration", -1) <= iteration]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(self.path)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
        self.trackers = []


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
