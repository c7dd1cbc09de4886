"""``aem compare`` end to end on a tiny 2-iteration x 2-seed GRPO sweep: files, tables recomputed
from metrics.jsonl, figures, pairing, reuse on a second invocation, an interrupted sweep that
continues (resuming the cut run), and clear errors for bad arguments."""

from __future__ import annotations

import csv
import json
import re

import matplotlib.image
import pytest
import yaml

from aem.cli import main
from aem.compare import SweepSettings, run_sweep, write_report
from aem.compare.report import FILES
from aem.compare.settings import SWEEP_FILE
from aem.trainer.config import ConfigError
from tiny_config import TINY as TINY_BASE

TINY = (*TINY_BASE, "eval.tasks=4")
MAIN_ARMS = ("grpo", "grpo+aem")
ANALYSIS_ARMS = ("analysis/unmasked", "analysis/decreasing", "analysis/increasing")


def _settings(**changes) -> SweepSettings:
    values = dict(env="household", algos=("grpo",), seeds=2, analysis_iterations=2, overrides=TINY)
    values.update(changes)
    return SweepSettings(**values)


def _final_mtimes(root) -> dict[str, float]:
    return {
        str(path.relative_to(root)): path.stat().st_mtime_ns
        for path in root.glob("runs/**/final/model.safetensors")
    }


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    events = []
    result = run_sweep(_settings(), root, on_progress=events.append)
    return root, result, events, write_report(root)


def test_every_run_trains_once_from_its_seeds_shared_start(sweep):
    root, result, events, _ = sweep
    names = {f"{arm}/seed{seed}" for arm in MAIN_ARMS + ANALYSIS_ARMS for seed in (0, 1)}
    assert set(result.trained) == names and not result.reused and not result.failed
    assert events[-1].done_iterations == events[-1].total_iterations == 2 * len(names)
    assert events[-1].finished_runs == events[-1].total_runs == len(names)
    lines = [event.run_line() for event in events if event.finished_run is not None]
    assert len(lines) == len(names)
    assert re.fullmatch(rf"run 1/{len(names)} \S+ done \(sweep elapsed \S+, ETA \S+\)", lines[0])
    assert lines[-1].startswith(f"run {len(names)}/{len(names)} ") and lines[-1].endswith("ETA 0s)")
    for name in names:
        run = root / "runs" / name
        config = yaml.safe_load((run / "config.yaml").read_text())
        seed = int(name.rsplit("seed", 1)[1])
        assert config["model"]["path"] == str(root / "init" / f"seed{seed}")
        assert config["warm_start"]["enabled"] == "off" and config["seed"] == seed
        assert config["aem"]["enabled"] == name.startswith("grpo+aem")
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["iteration"] for r in records] == [-1, 0, 1]
        assert (run / "final").is_dir()
        # the user's eval.tasks wins over the sweep's 256; household's unseen split is added,
        # evaluated with the first and the last evaluation
        assert config["eval"]["tasks"] == 4 and config["eval"]["extra_splits"] == ["valid_unseen"]
        unseen = ["eval/valid_unseen/success" in r for r in records]
        assert unseen == [True, False, True]
    masks = {
        arm: yaml.safe_load((root / "runs" / arm / "seed0" / "config.yaml").read_text())
        for arm in ANALYSIS_ARMS
    }
    assert [m["analysis"]["mask_quadrant"] for m in masks.values()] == [
        None,
        "decreasing",
        "increasing",
    ]
    document = yaml.safe_load((root / SWEEP_FILE).read_text())
    assert document["command"].startswith("aem compare --env household --algos grpo --seeds 2")
    assert document["resolved_config"]["rollout"]["tasks"] == 2


def test_pairs_start_from_identical_weights(sweep):
    root, *_ = sweep
    for seed in (0, 1):
        base = root / "runs" / "grpo" / f"seed{seed}" / "init" / "model.safetensors"
        aem = root / "runs" / "grpo+aem" / f"seed{seed}" / "init" / "model.safetensors"
        shared = root / "init" / f"seed{seed}" / "model.safetensors"
        assert base.read_bytes() == aem.read_bytes() == shared.read_bytes()
    seed0 = (root / "init" / "seed0" / "model.safetensors").read_bytes()
    assert seed0 != (root / "init" / "seed1" / "model.safetensors").read_bytes()


def test_table_numbers_equal_means_recomputed_from_metrics(sweep):
    root, _, _, report = sweep
    with report.files["table_csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[-1]["task_type"] == "overall" and len(rows) >= 2
    for row in rows:
        key = (
            "eval/success" if row["task_type"] == "overall" else f"eval/success_{row['task_type']}"
        )
        for arm, column in (("grpo", "base_mean"), ("grpo+aem", "arm_mean")):
            finals = []
            for seed in (0, 1):
                lines = (root / "runs" / arm / f"seed{seed}" / "metrics.jsonl").read_text()
                finals.append(json.loads(lines.splitlines()[-1])[key])
            assert float(row[column]) == pytest.approx(sum(finals) / 2, abs=1e-12)
        assert row["n_seeds"] == "2"
    table = [line for line in report.files["table_md"].read_text().splitlines() if line[:1] == "|"]
    assert len(table) == 2 + len(rows)
    assert all(line.count("|") == table[0].count("|") for line in table)


def test_report_files_exist_and_figures_render(sweep):
    _, _, _, report = sweep
    for key in ("table_md", "table_csv", "fig3", "fig3_overlay", "fig2", "fig4", "drift"):
        assert report.files[key].name == FILES[key]
    for key in ("fig3", "fig3_overlay", "fig2", "fig4", "drift"):
        image = matplotlib.image.imread(report.files[key])
        assert image.ndim == 3 and min(image.shape[:2]) > 200
    text = report.files["report"].read_text()
    assert "Runs finished: 10 of 10." in text and "identical within every seed" in text


def test_second_invocation_reuses_every_finished_run(sweep, capsys):
    root, first, *_ = sweep
    before = _final_mtimes(root)
    assert len(before) == 10
    again = run_sweep(_settings(), root)
    assert sorted(again.reused) == sorted(first.trained)
    assert not again.trained and not again.resumed
    assert _final_mtimes(root) == before
    assert main(["compare", "--report-only", str(root)]) == 0


def test_sweep_dir_made_with_other_settings_is_refused(sweep):
    root, *_ = sweep
    with pytest.raises(ConfigError, match=r"other settings \(seeds: 2 -> 3\)"):
        run_sweep(_settings(seeds=3), root)
    with pytest.raises(ConfigError, match=r"config\.rollout\.tasks: 2 -> 3"):
        run_sweep(_settings(overrides=(*TINY, "rollout.tasks=3")), root)
    assert not (root / "runs" / "grpo" / "seed2").exists()


class StopAfter:
    """Raises KeyboardInterrupt (as Ctrl-C would) once the sweep has done ``limit`` iterations."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __call__(self, state) -> None:
        if state.done_iterations >= self.limit:
            raise KeyboardInterrupt


def test_interrupted_sweep_continues_and_resumes_the_cut_run(tmp_path):
    settings = _settings(
        seeds=1, analysis_iterations=0, overrides=(*TINY, "trainer.checkpoint_every=1")
    )
    with pytest.raises(KeyboardInterrupt):
        run_sweep(settings, tmp_path, on_progress=StopAfter(4))  # run 2 stopped after iteration 1
    first = tmp_path / "runs" / "grpo" / "seed0" / "final" / "model.safetensors"
    assert first.exists() and not (tmp_path / "runs" / "grpo+aem" / "seed0" / "final").exists()
    stamp = first.stat().st_mtime_ns
    result = run_sweep(settings, tmp_path, jobs=2)
    assert result.reused == ["grpo/seed0"] and result.resumed == ["grpo+aem/seed0"]
    assert first.stat().st_mtime_ns == stamp
    lines = (tmp_path / "runs" / "grpo+aem" / "seed0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [-1, 0, 1]


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_seeds_starting_policy_is_built_when_its_runs_are_due(tmp_path, jobs):
    """A sweep cut during seed 0 has built seed 0's policy only (seed 1's waits for its runs);
    continued, it builds seed 1's and finishes every run."""
    settings = _settings(analysis_iterations=0)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(settings, tmp_path, on_progress=StopAfter(1))
    assert (tmp_path / "init" / "seed0").is_dir() and not (tmp_path / "init" / "seed1").exists()
    result = run_sweep(settings, tmp_path, jobs=jobs)
    assert not result.failed and (tmp_path / "init" / "seed1").is_dir()
    assert all(
        (tmp_path / "runs" / arm / f"seed{s}" / "final").is_dir()
        for arm in MAIN_ARMS
        for s in (0, 1)
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--algos", "grpo,nope"], "unknown algorithm(s) ['nope']"),
        (["--seeds", "0"], "--seeds must be an integer >= 1, got 0"),
        (["--algos", "grpo,grpo"], "names an algorithm twice"),
        (["--jobs", "0"], "--jobs must be >= 1"),
        (["--analysis-iterations", "0"], "--analysis-iterations must be >= 1"),
        (["--env", "moon"], "--env must be one of"),
        (["seed=3"], "use --seeds"),
        (["aem.enabled=false"], "sets 'aem.enabled' itself"),
        (["modulation=empg"], "sets 'modulation' itself; use --modulations"),
        (["--modulations", "aem,gigpo"], "--modulations must name one or more of ['aem', 'empg']"),
        (["--modulations", "none"], "got ['none']"),
        (["--modulations", "aem,aem"], "names one twice"),
    ],
)
def test_bad_arguments_give_clear_errors(tmp_path, capsys, argv, message):
    assert main(["compare", "--out", str(tmp_path / "sweep"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


def test_report_only_on_a_plain_directory_is_an_error(tmp_path, capsys):
    assert main(["compare", "--report-only", str(tmp_path)]) == 2
    assert "not a sweep directory" in capsys.readouterr().err


def test_modulation_arms_and_their_run_settings(tmp_path):
    """--modulations aem,empg: base, +AEM and +EMPG per algorithm and seed; AEM and the base keep
    the aem.enabled switch of sweeps made before --modulations (their runs stay reusable)."""
    settings = SweepSettings("household", ("grpo",), 2, 0, modulations=("aem", "empg"))
    assert [spec.name for spec in settings.runs()] == [
        f"{arm}/seed{seed}" for seed in (0, 1) for arm in ("grpo", "grpo+aem", "grpo+empg")
    ]
    names = {spec.modulation: settings.run_config(spec, tmp_path) for spec in settings.runs()}
    assert {name: config.modulation_name() for name, config in names.items()} == {
        "none": "none",
        "aem": "aem",
        "empg": "empg",
    }
    assert names["empg"].trainer.run_name == "grpo+empg/seed1"  # one tracker run per arm, seed
    assert names["empg"].trainer.group == tmp_path.resolve().name  # grouped by sweep
    assert "--modulations aem,empg" in settings.command(tmp_path)
    assert SweepSettings.from_dict(settings.to_dict()) == settings
    default = SweepSettings("household", ("grpo",), 2, 0)
    assert "modulations" not in default.identity() and "--modulations" not in default.command()
