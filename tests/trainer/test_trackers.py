"""Trackers (``trainer.logger``): a tiny run reported to Weights & Biases (offline, no network)
and MLflow (file store in the run folder) through their own libraries, progress lines in a pipe,
and the errors a user sees when a tracker's library is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aem.trainer import trackers
from aem.trainer.config import ConfigError, load_config
from aem.trainer.loop import Trainer
from aem.trainer.metrics import read_metrics
from tiny_config import TINY as TINY_BASE

pytest.importorskip("wandb", reason="the trackers extra: pip install 'aem[trackers]'")
pytest.importorskip("mlflow", reason="the trackers extra: pip install 'aem[trackers]'")

TINY = [*TINY_BASE, "eval.tasks=2", "trainer.threads=1"]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No W&B credentials and no MLflow server: both must fall back to files in the run."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "MLFLOW_TRACKING_URI", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_a_run_reports_every_metric_to_wandb_offline_and_mlflow(offline, tmp_path):
    run_dir = tmp_path / "run"
    config = load_config(
        overrides=[
            *TINY,
            f"output_dir={run_dir}",
            "trainer.logger=console,tensorboard,wandb,mlflow",
            "trainer.group=sweep-a",
        ]
    )
    Trainer(config, run_dir).train()
    records = read_metrics(run_dir)
    numeric = {
        key
        for record in records
        for key, value in record.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and key != "iteration"
    }

    # W&B: an offline run folder in the run, ready for `wandb sync`.
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    assert list(offline_runs[0].glob("run-*.wandb"))
    assert (offline_runs[0] / "files" / "curves.png").exists()

    # MLflow: the run's params, every metric of metrics.jsonl at its iterations, curves.png.
    import mlflow

    store = f"sqlite:///{run_dir.resolve() / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("aem")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["mlflow.runName"] == "run" and run.data.tags["aem.group"] == "sweep-a"
    assert run.data.params["seed"] == "0" and run.data.params["algorithm.name"] == "grpo"
    assert set(run.data.metrics) == {trackers._mlflow_key(key) for key in numeric}
    history = client.get_metric_history(run.info.run_id, "rollout/success")
    expected = [(r["iteration"], r["rollout/success"]) for r in records if "rollout/success" in r]
    assert [m.step for m in history] == [step for step, _ in expected]
    assert [m.value for m in history] == pytest.approx([value for _, value in expected])
    artifacts = [item.path for item in client.list_artifacts(run.info.run_id)]
    assert "curves.png" in artifacts
    assert run.info.status == "FINISHED"


def test_a_missing_tracker_library_is_a_one_line_config_error(monkeypatch):
    real = trackers.importlib.util.find_spec
    monkeypatch.setattr(
        trackers.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "mlflow" else real(name, *args),
    )
    with pytest.raises(ConfigError, match=r"trainer.logger=mlflow needs the 'trackers' extra"):
        load_config(overrides=["trainer.logger=[console, mlflow]"])
    load_config(overrides=["trainer.logger=console,wandb"])  # the other one is installed


@pytest.mark.parametrize(
    ("value", "message"),
    [("console,neptune", "trainer.logger"), ("[wandb, wandb]", "names a tracker twice")],
)
def test_bad_logger_names_the_key(value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[f"trainer.logger={value}"])


def test_train_in_a_pipe_prints_one_flushed_line_per_iteration(tmp_path):
    """stdout/stderr are pipes (a CI job, nohup): no progress bar, one line per iteration with
    elapsed time, ETA, success and entropy; no third-party progress bars."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "aem.cli", "train", *TINY, f"output_dir={run_dir}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("iteration ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    for line, record in zip(lines, read_metrics(run_dir)[1:], strict=True):
        assert "elapsed " in line and "ETA " in line
        assert f"success {record['rollout/success']:.3f}" in line
        assert f"entropy {record['entropy/response_mean']:.3f}" in line
        assert f"AEM weight {record['aem/weight_min']:.2f}-" in line
    assert "eval/success" in json.dumps(read_metrics(run_dir)[-1])
    assert "held-out " in lines[-1]
    assert "\r" not in done.stderr and "Writing model shards" not in done.stderr
