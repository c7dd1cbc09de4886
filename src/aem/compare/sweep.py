"""Run a sweep: one shared starting policy per seed, built when the seed's first run is due (so
a cut sweep holds whole seeds, not ten starting policies and no run), then every run, resumably.

A run whose ``final/`` exists and whose metrics reach its last iteration is reused; one with a
checkpoint is resumed; anything else starts (again) from scratch. ``jobs > 1`` trains that many
runs at once in spawned processes (one torch thread each).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aem.compare.settings import RunSpec, SweepSettings, init_dir, write_sweep_file
from aem.progress import format_duration
from aem.trainer.checkpoint import latest_checkpoint
from aem.trainer.config import TrainConfig
from aem.trainer.metrics import read_metrics

logger = logging.getLogger(__name__)

RunStatus = Literal["done", "resume", "fresh"]


@dataclass(frozen=True)
class SweepProgress:
    """Where the sweep stands: iterations over all runs (reused ones count in full)."""

    done_iterations: int
    total_iterations: int
    finished_runs: int
    total_runs: int
    message: str
    finished_run: str | None = None  # set once, when that run has just finished
    elapsed_seconds: float = 0.0
    eta_seconds: float | None = None  # None until an iteration was trained in this invocation

    def run_line(self) -> str:
        """``run k/N <name> done (elapsed ..., ETA ...)``: one line per finished run."""
        eta = "unknown" if self.eta_seconds is None else format_duration(self.eta_seconds)
        return (
            f"run {self.finished_runs}/{self.total_runs} {self.finished_run} done "
            f"(sweep elapsed {format_duration(self.elapsed_seconds)}, ETA {eta})"
        )


@dataclass
class SweepResult:
    """What one invocation did with each run (by :attr:`RunSpec.name`)."""

    reused: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def completed_iterations(run_dir: Path) -> int:
    """Training iterations recorded in ``run_dir/metrics.jsonl``."""
    return sum(1 for r in read_metrics(run_dir) if r.get("iteration", -1) >= 0)


def run_status(run_dir: Path, iterations: int) -> RunStatus:
    """``done`` (reuse), ``resume`` (has a checkpoint) or ``fresh`` (start from scratch)."""
    run_dir = Path(run_dir)
    if (run_dir / "final").is_dir():
        last = max((r.get("iteration", -1) for r in read_metrics(run_dir)), default=-2)
        if last >= iterations - 1:
            return "done"
    return "resume" if latest_checkpoint(run_dir) is not None else "fresh"


def build_init(config: dict[str, Any], directory: str, threads: int) -> None:
    """Build one seed's starting policy into ``directory`` (a worker-process entry point)."""
    import torch

    from aem.trainer.initial_policy import initial_policy

    torch.set_num_threads(threads)
    initial_policy(TrainConfig(**config), Path(directory))


def train_run(
    config: dict[str, Any],
    run_dir: str,
    resume: bool,
    progress: Callable[[int, dict], None] | None = None,
) -> bool:
    """Train (or resume) one run; returns True when a signal stopped it early (checkpointed)."""
    from aem.trainer.loop import Trainer

    trainer = Trainer(TrainConfig(**config), Path(run_dir), resume=resume)
    trainer.train(progress=progress)
    return trainer.stop_requested


class _Tracker:
    """Counts iterations done over the whole sweep and reports them."""

    def __init__(
        self,
        sweep_dir: Path,
        runs: list[RunSpec],
        on_progress: Callable[[SweepProgress], None] | None,
    ) -> None:
        self.sweep_dir = sweep_dir
        self.runs = runs
        self.on_progress = on_progress
        self.done = {spec.name: 0 for spec in runs}
        self.finished: set[str] = set()
        self.total = sum(spec.iterations for spec in runs)
        self.started = time.monotonic()
        self.done_before: int | None = None  # iterations done when training began

    def refresh(self, spec: RunSpec) -> None:
        done = completed_iterations(spec.run_dir(self.sweep_dir))
        self.done[spec.name] = min(done, spec.iterations)

    def finish(self, spec: RunSpec) -> None:
        self.done[spec.name] = spec.iterations
        self.finished.add(spec.name)

    def start_training(self) -> None:
        """From now on, time counts towards the ETA (reused runs and their iterations do not)."""
        self.started = time.monotonic()
        self.done_before = sum(self.done.values())

    def report(self, message: str, finished_run: str | None = None) -> None:
        if self.on_progress is None:
            return
        done = sum(self.done.values())
        elapsed = time.monotonic() - self.started
        trained = 0 if self.done_before is None else done - self.done_before
        eta = elapsed / trained * (self.total - done) if trained > 0 else None
        self.on_progress(
            SweepProgress(
                done,
                self.total,
                len(self.finished),
                len(self.runs),
                message,
                finished_run,
                elapsed,
                eta,
            )
        )

    def run_finished(self, spec: RunSpec) -> None:
        self.finish(spec)
        self.report(f"{spec.name} finished", finished_run=spec.name)


def run_sweep(
    settings: SweepSettings,
    sweep_dir: str | Path,
    jobs: int = 1,
    on_progress: Callable[[SweepProgress], None] | None = None,
) -> SweepResult:
    """Train every run of ``settings`` under ``sweep_dir`` that is not finished yet.

    Writes (or checks) ``sweep.yaml`` first: a directory made with other settings is refused.
    ``jobs == 1`` trains in this process; more spawn worker processes. A run that raises is
    recorded in :attr:`SweepResult.failed` and the others go on. A signal (Ctrl-C) checkpoints
    the run(s) in progress and raises ``KeyboardInterrupt``; the same command continues."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    sweep_dir = Path(sweep_dir).resolve()
    write_sweep_file(settings, sweep_dir)
    runs = settings.runs()
    tracker = _Tracker(sweep_dir, runs, on_progress)
    result = SweepResult()
    pending: list[tuple[RunSpec, RunStatus]] = []
    for spec in runs:
        status = run_status(spec.run_dir(sweep_dir), spec.iterations)
        if status == "done":
            tracker.finish(spec)
            result.reused.append(spec.name)
        else:
            if status == "resume":
                tracker.refresh(spec)
            pending.append((spec, status))
    tracker.report(f"{len(result.reused)} finished run(s) reused")
    tracker.start_training()
    if jobs == 1:
        _run_here(settings, sweep_dir, pending, tracker, result)
    else:
        _run_pool(settings, sweep_dir, pending, tracker, result, jobs)
    return result


def _record(result: SweepResult, spec: RunSpec, status: RunStatus) -> None:
    (result.resumed if status == "resume" else result.trained).append(spec.name)


def _run_here(
    settings: SweepSettings,
    sweep_dir: Path,
    pending: list[tuple[RunSpec, RunStatus]],
    tracker: _Tracker,
    result: SweepResult,
) -> None:
    for spec, status in pending:
        if not init_dir(sweep_dir, spec.seed).is_dir():  # built when its seed's turn comes
            tracker.report(f"building the starting policy of seed {spec.seed}")
            config = settings.init_config(spec.seed)
            directory = str(init_dir(sweep_dir, spec.seed))
            build_init(config.model_dump(), directory, config.trainer.threads)
        config = settings.run_config(spec, sweep_dir).model_dump()
        tracker.report(f"{spec.name}: {'resuming' if status == 'resume' else 'training'}")

        def progress(it: int, record: dict, spec: RunSpec = spec) -> None:
            tracker.done[spec.name] = min(it + 1, spec.iterations)
            tracker.report(
                f"{spec.name} it {it + 1}/{spec.iterations} "
                f"success {record.get('rollout/success', float('nan')):.2f}"
            )

        try:
            stopped = train_run(config, str(spec.run_dir(sweep_dir)), status == "resume", progress)
        except Exception as error:  # one broken run must not sink the sweep
            logger.exception("run %s failed", spec.name)
            result.failed[spec.name] = f"{type(error).__name__}: {error}"
            continue
        if stopped:
            raise KeyboardInterrupt(f"stopped during {spec.name} (checkpointed)")
        _record(result, spec, status)
        tracker.run_finished(spec)


def _run_pool(
    settings: SweepSettings,
    sweep_dir: Path,
    pending: list[tuple[RunSpec, RunStatus]],
    tracker: _Tracker,
    result: SweepResult,
    jobs: int,
) -> None:
    """``jobs`` worker processes, kept busy in the plan's order (seed by seed): a run starts
    once its seed's starting policy exists, which a free worker builds when no run can start."""
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context)
    queue = list(pending)
    building: dict[Future, int] = {}
    training: dict[Future, tuple[RunSpec, RunStatus]] = {}
    try:
        while queue or building or training:
            while len(building) + len(training) < jobs and queue:
                ready = next(
                    (item for item in queue if init_dir(sweep_dir, item[0].seed).is_dir()), None
                )
                if ready is not None:
                    queue.remove(ready)
                    spec, status = ready
                    config = settings.run_config(spec, sweep_dir, threads=1).model_dump()
                    future = pool.submit(
                        train_run, config, str(spec.run_dir(sweep_dir)), status == "resume"
                    )
                    training[future] = ready
                    continue
                unbuilt = [spec.seed for spec, _ in queue if spec.seed not in building.values()]
                if not unbuilt:
                    break  # every queued run waits for a policy being built
                seed = unbuilt[0]
                tracker.report(f"building the starting policy of seed {seed}")
                config = settings.init_config(seed).model_dump()
                future = pool.submit(build_init, config, str(init_dir(sweep_dir, seed)), 1)
                building[future] = seed
            finished, _ = wait([*building, *training], timeout=1.0, return_when=FIRST_COMPLETED)
            for future in finished:
                if future in building:
                    seed = building.pop(future)
                    error = future.exception()
                    if error is not None:  # the seed's runs cannot start: record them as failed
                        logger.error("starting policy of seed %d failed: %s", seed, error)
                        for spec, _ in [item for item in queue if item[0].seed == seed]:
                            result.failed[spec.name] = f"{type(error).__name__}: {error}"
                        queue = [item for item in queue if item[0].seed != seed]
                    continue
                spec, status = training.pop(future)
                error = future.exception()
                if error is not None:
                    logger.error("run %s failed: %s", spec.name, error)
                    result.failed[spec.name] = f"{type(error).__name__}: {error}"
                    continue
                if future.result():
                    raise KeyboardInterrupt(f"stopped during {spec.name} (checkpointed)")
                _record(result, spec, status)
                tracker.run_finished(spec)
            running = [spec for spec, _ in training.values()]
            for spec in running:
                tracker.refresh(spec)
            tracker.report(f"{len(running)} run(s) in progress")
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
