"""A sweep's runs read back from disk: records per run, final evaluation, curves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aem.compare.settings import RunSpec, SweepSettings
from aem.compare.sweep import run_status
from aem.trainer.metrics import read_metrics


def eval_prefix(split: str | None = None) -> str:
    """Where a run logs its evaluation of ``split``: ``eval/`` for the evaluation split (None),
    ``eval/<split>/`` for another held-out split (``eval.extra_splits``)."""
    return "eval/" if split is None else f"eval/{split}/"


@dataclass(frozen=True)
class RunResult:
    """One run's ``metrics.jsonl`` records (iteration -1 = the starting policy's evaluation)."""

    spec: RunSpec
    run_dir: Path
    records: list[dict[str, Any]]
    finished: bool

    @property
    def start_eval(self) -> dict[str, Any] | None:
        return next((r for r in self.records if r.get("iteration") == -1), None)

    @property
    def final_eval(self) -> dict[str, Any] | None:
        """The evaluation at the last iteration (None unless the run finished)."""
        if not self.finished:
            return None
        last = self.spec.iterations - 1
        return next(
            (
                r
                for r in reversed(self.records)
                if r.get("iteration") == last and r.get("eval/success") is not None
            ),
            None,
        )

    def final_success(self, split: str | None = None) -> dict[str, float]:
        """Final eval success on ``split`` (None: the evaluation split): ``overall`` and one entry
        per task type present; empty when the run did not evaluate that split."""
        record = self.final_eval
        prefix = eval_prefix(split)
        if record is None or record.get(prefix + "success") is None:
            return {}
        out = {
            key[len(prefix + "success_") :]: float(value)
            for key, value in record.items()
            if key.startswith(prefix + "success_") and value is not None
        }
        out["overall"] = float(record[prefix + "success"])
        return out

    def series(self, key: str) -> dict[int, float]:
        """``iteration -> value`` of ``key`` over training iterations where it is recorded."""
        return {
            int(r["iteration"]): float(r[key])
            for r in self.records
            if r.get("iteration", -1) >= 0 and r.get(key) is not None
        }


def evaluated_splits(env: str, config: dict[str, Any]) -> list[tuple[str, str | None]]:
    """``(name, key)`` of every held-out split a sweep's runs evaluate, the evaluation split
    first (key None, see :func:`eval_prefix`), from the sweep's resolved ``config``."""
    from aem.envs import spec

    primary = (config.get("env") or {}).get("eval_split") or spec(env).eval_split
    extra = (config.get("eval") or {}).get("extra_splits") or []
    return [(primary, None), *((split, split) for split in extra if split != primary)]


def load_results(settings: SweepSettings, sweep_dir: str | Path) -> list[RunResult]:
    """Every planned run of the sweep, finished or not (unstarted runs have no records)."""
    sweep_dir = Path(sweep_dir).resolve()
    out = []
    for spec in settings.runs():
        run_dir = spec.run_dir(sweep_dir)
        out.append(
            RunResult(
                spec,
                run_dir,
                read_metrics(run_dir),
                run_status(run_dir, spec.iterations) == "done",
            )
        )
    return out


def by_arm(results: list[RunResult]) -> dict[str, list[RunResult]]:
    """Results grouped by :attr:`RunSpec.arm`, seeds in order."""
    groups: dict[str, list[RunResult]] = {}
    for result in sorted(results, key=lambda r: (r.spec.arm, r.spec.seed)):
        groups.setdefault(result.spec.arm, []).append(result)
    return groups
