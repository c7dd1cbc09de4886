"""``aem lab``'s one command: every pre-registered experiment, then the report."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from aem.lab.experiment import Records, run_experiment
from aem.lab.plan import DRIFT, MAIN, SENSITIVITY
from aem.lab.report import write_report, write_sensitivity
from aem.lab.settings import Setting
from aem.lab.summary import summarize_main


def run_lab(
    seeds: int,
    seed_offset: int,
    out: Path,
    command: str,
    threads: int = 1,
    check_against: Path | None = None,
    main: dict[str, Setting] | None = None,
    drift: dict[str, Setting] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Run ``main`` (default :data:`aem.lab.plan.MAIN`) and ``drift`` (default
    :data:`aem.lab.plan.DRIFT`) on seeds ``seed_offset .. seed_offset + seeds - 1`` and write the
    report to ``out``; returns the results dict."""
    main = MAIN if main is None else main
    drift = DRIFT if drift is None else drift
    torch.set_num_threads(threads)
    seed_tensor = torch.arange(seed_offset, seed_offset + seeds)
    wall, cpu = time.perf_counter(), time.process_time()
    main_records: dict[str, Records] = {}
    drift_records: dict[str, Records] = {}
    for plan, records in ((main, main_records), (drift, drift_records)):
        for name, setting in plan.items():

            def report(step: int, name: str = name, total: int = setting.steps) -> None:
                if progress is not None:
                    progress(name, step, total)

            records[name] = run_experiment(setting, seed_tensor, report)
    meta = {
        "command": command,
        "seeds": [seed_offset, seed_offset + seeds - 1],
        "num_seeds": seeds,
        "threads": threads,
        "machine": f"{platform.machine()}, {torch.get_num_interop_threads()} interop threads, "
        f"torch {torch.__version__}",
    }
    meta["wall_seconds"] = time.perf_counter() - wall
    meta["cpu_seconds"] = time.process_time() - cpu
    return write_report(out, main_records, drift_records, main, drift, meta, check_against)


def run_sensitivity(
    seeds: int,
    seed_offset: int,
    out: Path,
    command: str,
    threads: int = 1,
    plan: dict[str, Setting] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Run :data:`aem.lab.plan.SENSITIVITY` and write ``sensitivity.md`` and
    ``sensitivity.json`` to ``out``."""
    plan = SENSITIVITY if plan is None else plan
    torch.set_num_threads(threads)
    seed_tensor = torch.arange(seed_offset, seed_offset + seeds)
    wall, cpu = time.perf_counter(), time.process_time()
    summaries = {}
    for name, setting in plan.items():

        def report(step: int, name: str = name, total: int = setting.steps) -> None:
            if progress is not None:
                progress(name, step, total)

        summaries[name] = summarize_main(run_experiment(setting, seed_tensor, report), setting)
    meta = {
        "command": command,
        "seeds": [seed_offset, seed_offset + seeds - 1],
        "num_seeds": seeds,
        "threads": threads,
        "wall_seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
    }
    return write_sensitivity(out, summaries, plan, meta)
