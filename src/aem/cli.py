"""``aem train | sft | eval | compare | lab | envs``: the command line."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from aem.trainer.config import ConfigError, load_config


def _progress_bar(console: Any, fields: tuple[str, ...], unit: str = "") -> Any:
    """A rich progress bar: description, bar, count, the task's ``fields``, elapsed time, ETA."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}" + unit),
        *(TextColumn(f"{{task.fields[{name}]}}") for name in fields),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from aem.trainer.loop import Trainer

    console = Console(stderr=True)
    if args.resume:
        run_dir = Path(args.resume)
        config_file = run_dir / "config.yaml"
        if not config_file.exists():
            raise ConfigError(f"--resume {run_dir}: no config.yaml there (not a run directory)")
        config = load_config(config_file, args.overrides)
    else:
        config = load_config(args.config, args.overrides)
        run_dir = Path(config.output_dir)
        _check_output_dir(run_dir)
    algo = config.algorithm.resolved()
    modulation = config.modulation_name()
    label = algo.name if modulation == "none" else f"{algo.name}+{modulation.upper()}"
    console.print(f"[bold]aem train[/bold] {label} on {config.env.name} -> {run_dir}")
    trainer = Trainer(config, run_dir, resume=bool(args.resume))
    if not console.is_terminal:  # a pipe or a log file: one flushed line per iteration
        records = trainer.train(progress=_iteration_lines(config.trainer.iterations))
        _summarise(console, records)
        return 0
    with _progress_bar(console, ("status",)) as progress:
        task = progress.add_task(label, total=config.trainer.iterations, status="setting up")

        def report(it: int, record: dict) -> None:
            status = (
                f"success {record.get('rollout/success', float('nan')):.2f} "
                f"entropy {record.get('entropy/response_mean', float('nan')):.3f}"
            )
            progress.update(task, completed=it + 1, status=status)

        records = trainer.train(progress=report)
    _summarise(console, records)
    return 0


def _iteration_lines(total: int) -> Any:
    """A ``progress(it, record)`` callback printing :func:`aem.progress.iteration_line`."""
    from aem.progress import iteration_line

    start, done = time.monotonic(), 0

    def report(it: int, record: dict) -> None:
        nonlocal done
        done += 1
        line = iteration_line(it, total, done, time.monotonic() - start, record)
        print(line, file=sys.stderr, flush=True)

    return report


def _check_output_dir(run_dir: Path) -> None:
    """``ConfigError`` if ``run_dir`` cannot be a run folder (a file, unwritable, ...)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"output_dir {run_dir}: {error.strerror or error}") from None


def _summarise(console, records: list[dict]) -> None:
    start = next((r for r in records if r["iteration"] == -1), None)
    final = next((r for r in reversed(records) if "eval/success" in r), None)
    if start is not None and "eval/success" in start:
        console.print(f"eval success of the starting policy: {start['eval/success']:.3f}")
    if final is not None:
        console.print(
            f"eval success at iteration {final['iteration']}: {final['eval/success']:.3f}"
        )


def _eval(args: argparse.Namespace) -> int:
    from aem.trainer.loop import Trainer

    run_dir = Path(args.run_dir)
    config = load_config(run_dir / "config.yaml", args.overrides)
    trainer = Trainer(config, run_dir, resume=True)
    trainer.setup()
    result: dict[str, float] = {}
    try:
        for split in (None, *config.eval.extra_splits):  # one flushed line per evaluated split
            start = time.monotonic()
            scores = trainer.evaluate(split)
            result.update(scores)
            success = next(value for key, value in scores.items() if key.endswith("/success"))
            name = split or config.env.evaluation_split()
            print(
                f"evaluated {name}: {config.eval.tasks} tasks, success {success:.3f} "
                f"({time.monotonic() - start:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    finally:
        trainer.close()
    for key, value in sorted(result.items()):
        print(f"{key}\t{value:.4f}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from aem.compare import SweepProgress, SweepSettings, run_sweep, write_report

    console = Console(stderr=True)
    if args.report_only:
        report = write_report(args.report_only)
        console.print(f"report regenerated: {report.files['report']}")
        return 0
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    if not args.no_analysis and args.analysis_iterations < 1:
        raise ConfigError(
            f"--analysis-iterations must be >= 1 (or --no-analysis), got {args.analysis_iterations}"
        )
    settings = SweepSettings(
        env=args.env,
        algos=tuple(a.strip() for a in args.algos.split(",") if a.strip()),
        seeds=args.seeds,
        analysis_iterations=0 if args.no_analysis else args.analysis_iterations,
        overrides=tuple(args.overrides),
        config_file=args.config,
        modulations=tuple(m.strip() for m in args.modulations.split(",") if m.strip()),
    )
    sweep_dir = Path(args.out or f"runs/compare-{settings.env}")
    console.print(f"[bold]{settings.command(sweep_dir)}[/bold]")
    try:
        with _progress_bar(console, ("runs", "status"), unit=" it") as progress:
            task = progress.add_task("sweep", total=None, runs="", status="planning")

            def show(state: SweepProgress) -> None:
                if state.finished_run is not None:
                    progress.console.print(state.run_line(), highlight=False)
                progress.update(
                    task,
                    completed=state.done_iterations,
                    total=state.total_iterations,
                    runs=f"{state.finished_runs}/{state.total_runs} runs",
                    status=state.message,
                )

            result = run_sweep(settings, sweep_dir, jobs=args.jobs, on_progress=show)
    except KeyboardInterrupt:
        console.print(f"interrupted: rerun `{settings.command(sweep_dir)}` to continue")
        return 130
    console.print(
        f"runs: {len(result.trained)} trained, {len(result.resumed)} resumed, "
        f"{len(result.reused)} reused, {len(result.failed)} failed"
    )
    report = write_report(sweep_dir)
    print(report.files["table_md"].read_text())
    console.print(f"report: {report.files['report']}")
    for name, error in result.failed.items():
        console.print(f"[red]failed[/red] {name}: {error}")
    return 1 if result.failed else 0


def _sft(args: argparse.Namespace) -> int:
    """The starting policy alone: tokenizer + tiny model + behaviour cloning (or a model path with
    ``warm_start.enabled=on``), saved where ``aem train model.path=OUT`` loads it."""
    from aem.trainer.initial_policy import initial_policy

    config = load_config(args.config, args.overrides)
    if config.warm_start.enabled == "auto" and config.model.path != "tiny":
        raise ConfigError("aem sft: a model path needs warm_start.enabled=on to be fine-tuned")
    if config.warm_start.enabled == "off" or config.warm_start.steps == 0:
        raise ConfigError("aem sft: warm_start is off (enabled=off or steps=0); nothing to train")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"aem sft: --out {out} exists and is not empty")
    _, _, metrics = initial_policy(config, out)
    for key, value in metrics.items():
        print(f"{key}: {value:.4g}")
    print(f"saved to {out}; train from it with `aem train model.path={out}`")
    return 0


def _lab(args: argparse.Namespace) -> int:
    """Every pre-registered lab experiment on seeds K..K+N-1, then the report in --out."""
    import json
    import shlex

    from rich.console import Console

    from aem.lab.plan import MAIN, pick_lr, tune_grpo
    from aem.lab.runner import run_lab, run_sensitivity

    if args.seeds < 2:
        raise ConfigError(f"--seeds must be >= 2 (95% intervals need two seeds), got {args.seeds}")
    if args.seed_offset < 0:
        raise ConfigError(f"--seed-offset must be >= 0, got {args.seed_offset}")
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    check = Path(args.check_against) if args.check_against else None
    if check is not None and not (check / "results.json").is_file():
        raise ConfigError(f"--check-against {check}: no results.json there (not a lab report)")
    out = Path(args.out)
    console = Console(stderr=True)
    if args.tune:
        import torch

        torch.set_num_threads(args.threads)
        tuning = {}
        for name, setting in MAIN.items():
            console.print(f"tuning {name} on GRPO alone")
            areas = tune_grpo(setting, progress=console.print)
            tuning[name] = {"areas": areas, "picked": pick_lr(areas)}
            console.print(f"{name}: picked lr {tuning[name]['picked']:g}")
        out.mkdir(parents=True, exist_ok=True)
        (out / "tuning.json").write_text(json.dumps(tuning, indent=1) + "\n")
        return 0
    command = "aem lab " + shlex.join(
        [f"--seeds={args.seeds}", f"--seed-offset={args.seed_offset}", f"--out={args.out}"]
        + ([f"--check-against={args.check_against}"] if check else [])
        + (["--sensitivity"] if args.sensitivity else [])
    )
    console.print(f"[bold]{command}[/bold]")
    with _progress_bar(console, ("status",)) as progress:
        task = progress.add_task("lab", total=None, status="")

        def show(name: str, step: int, total: int) -> None:
            progress.update(task, completed=step, total=total, status=name)

        if args.sensitivity:
            result = run_sensitivity(
                args.seeds, args.seed_offset, out, command, args.threads, progress=show
            )
            report = out / "sensitivity.md"
        else:
            result = run_lab(
                args.seeds, args.seed_offset, out, command, args.threads, check, progress=show
            )
            report = out / "report.md"
    meta = result["meta"]
    console.print(
        f"report: {report} (wall {meta['wall_seconds']:.0f} s, CPU {meta['cpu_seconds']:.0f} s)"
    )
    return 0


def _envs(args: argparse.Namespace) -> int:
    import aem.envs

    for name in aem.envs.names():
        print(name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aem", description=__doc__)
    parser.add_argument(
        "--verbose", action="store_true", help="keep third-party progress bars (transformers)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train an agent with multi-turn RL (+ AEM)")
    train.add_argument("--config", help="YAML file of settings")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    train.add_argument("overrides", nargs="*", help="dotted key=value settings")
    train.set_defaults(run=_train)
    sft = sub.add_parser("sft", help="warm start only: behaviour cloning of the noisy expert")
    sft.add_argument("--config", help="YAML file of settings")
    sft.add_argument("--out", required=True, metavar="DIR", help="where to save the policy")
    sft.add_argument("overrides", nargs="*", help="dotted key=value settings")
    sft.set_defaults(run=_sft)
    evaluate = sub.add_parser("eval", help="evaluate a run's latest checkpoint")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("overrides", nargs="*")
    evaluate.set_defaults(run=_eval)
    compare = sub.add_parser(
        "compare", help="every algorithm with and without AEM over seeds, and the paper's report"
    )
    compare.add_argument(
        "--modulations",
        default="aem",
        help="comma-separated modulations each algorithm also runs with, beside the base "
        "(aem; e.g. aem,empg)",
    )
    compare.add_argument("--env", default="household", help="environment name (aem envs)")
    compare.add_argument(
        "--algos", default="grpo,dapo,gspo", help="comma-separated algorithm presets"
    )
    compare.add_argument(
        "--seeds", type=int, default=10, help="seeds 0..N-1 per algorithm and arm (10)"
    )
    compare.add_argument("--out", metavar="SWEEP", help="sweep directory (runs/compare-<env>)")
    compare.add_argument("--config", help="YAML file of settings shared by every run")
    compare.add_argument("--jobs", type=int, default=1, help="trainer processes at once")
    compare.add_argument(
        "--analysis-iterations",
        type=int,
        default=5,
        help="iterations of the Analysis A (quadrant mask) runs for Figure 2",
    )
    compare.add_argument("--no-analysis", action="store_true", help="skip the Analysis A runs")
    compare.add_argument(
        "--report-only", metavar="SWEEP", help="regenerate SWEEP/report from existing runs"
    )
    compare.add_argument("overrides", nargs="*", help="dotted key=value settings for every run")
    compare.set_defaults(run=_compare)
    for command in (train, sft, evaluate, compare):
        command.add_argument(
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS,
            help="keep third-party progress bars (transformers' shard writing and the like)",
        )
    lab = sub.add_parser(
        "lab", help="the paper's mechanism on small exact policies, hundreds of seeds per arm"
    )
    lab.add_argument("--seeds", type=int, default=200, help="seeds per arm (>= 2)")
    lab.add_argument("--seed-offset", type=int, default=0, help="first seed (disjoint sets)")
    lab.add_argument("--out", default="docs/results/lab", metavar="DIR", help="report directory")
    lab.add_argument("--threads", type=int, default=1, help="torch threads (1 on shared CPUs)")
    lab.add_argument(
        "--check-against", metavar="DIR", help="an earlier report: compare its conclusions"
    )
    lab.add_argument(
        "--tune", action="store_true", help="only the GRPO learning-rate tuning (tuning.json)"
    )
    lab.add_argument(
        "--sensitivity",
        action="store_true",
        help="only the sensitivity grid over depth, decoys and tau (sensitivity.md)",
    )
    lab.set_defaults(run=_lab)
    envs = sub.add_parser("envs", help="list the registered environments")
    envs.set_defaults(run=_envs)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser``'s arguments, with ``key=value`` overrides allowed anywhere among the options
    (``aem compare x=1 --out D y=2``), in the order given."""
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if item.startswith("-") or "=" not in item]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    from aem.envs.swe.bwrap import SandboxUnavailableError
    from aem.progress import quiet_third_party_progress
    from aem.trainer.checkpoint import CheckpointError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(build_parser(), argv)
    quiet_third_party_progress(args.verbose)
    try:
        return args.run(args)
    except (ConfigError, CheckpointError, SandboxUnavailableError, FileExistsError) as error:
        print(f"aem: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
