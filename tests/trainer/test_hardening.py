"""Issue 17, the trainer's side: no code runs from a run folder on resume, damaged checkpoints,
non-finite settings, misplaced env arguments, bad paths and overrides among the options."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from aem.cli import build_parser, main, parse_args
from aem.trainer.checkpoint import CHECKPOINTS, LATEST, CheckpointError, latest_checkpoint
from aem.trainer.config import ConfigError, load_config
from aem.trainer.loop import Trainer
from aem.trainer.metrics import read_metrics
from tiny_config import TINY


def run(tmp_path: Path, *overrides: str) -> Path:
    """A finished tiny run with a checkpoint after each of its 3 iterations (2 kept)."""
    run_dir = tmp_path / "run"
    config = load_config(
        overrides=[*TINY, "trainer.iterations=3", "trainer.checkpoint_every=1", "eval.tasks=2",
                   *overrides]
    )  # fmt: skip
    Trainer(config, run_dir).train()
    return run_dir


class _Payload:
    """Pickles as a call of ``os.system`` (what a crafted ``state.pt`` would hold)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run(tmp_path_factory.mktemp("finished"))


def test_checkpoints_load_with_weights_only(finished: Path) -> None:
    state = torch.load(latest_checkpoint(finished) / "state.pt", weights_only=True)
    assert set(state) == {"optimizers", "generators", "py_random", "torch_rng"}


def test_a_crafted_state_file_is_refused_without_running_it(
    tmp_path: Path, finished: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    marker = tmp_path / "pwned"
    for folder in (run_dir / CHECKPOINTS).glob("iter_*"):  # every checkpoint: nothing to fall to
        torch.save({"optimizers": _Payload(marker)}, folder / "state.pt")
    config = load_config(run_dir / "config.yaml", ["trainer.iterations=4"])
    with pytest.raises(CheckpointError, match="not written by aem or was altered"):
        Trainer(config, run_dir, resume=True).setup()
    assert not marker.exists()
    assert main(["train", "--resume", str(run_dir), "trainer.iterations=4"]) == 2
    assert not marker.exists()


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = run(tmp_path)
    latest = latest_checkpoint(run_dir)
    assert latest.name == "iter_000002"
    weights = latest / "policy.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    config = load_config(run_dir / "config.yaml", ["trainer.iterations=4"])
    trainer = Trainer(config, run_dir, resume=True)
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert "iter_000002" in caplog.text and "resuming from iter_000001" in caplog.text
    assert trainer.start_iteration == 2
    iterations = [r["iteration"] for r in read_metrics(run_dir) if r["iteration"] >= 0]
    assert iterations == [0, 1, 2, 3]  # iteration 2 again, from the intact checkpoint
    assert (run_dir / CHECKPOINTS / "damaged_iter_000002").is_dir()
    assert latest_checkpoint(run_dir).name == "iter_000003"


def test_a_dangling_latest_is_an_error(tmp_path: Path, finished: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    (run_dir / CHECKPOINTS / LATEST).write_text("iter_000042")
    config = load_config(run_dir / "config.yaml", ["trainer.iterations=4"])
    with pytest.raises(CheckpointError, match="iter_000042"):
        Trainer(config, run_dir, resume=True).setup()
    assert main(["train", "--resume", str(run_dir), "trainer.iterations=4"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("aem: ") and "iter_000042" in error


@pytest.mark.parametrize(
    ("override", "key"),
    [("optim.lr=.inf", "optim.lr"), ("aem.temperature=.nan", "aem.temperature"),
     ("env.success_reward=-.inf", "env.success_reward")],
)  # fmt: skip
def test_non_finite_numbers_are_refused(override: str, key: str, capsys) -> None:
    with pytest.raises(ConfigError, match=rf"{key}: Input should be a finite number"):
        load_config(overrides=[override])
    assert main(["train", override]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("aem: ") and key in message and "\n" not in message


def test_config_and_path_errors_are_one_line(tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1\n")
    commands = {
        "takes no argument 'scene_config'": [
            "train", "env.name=swe", "env.kwargs={scene_config: {receptacle_scale: 0.5}}"],
        "output_dir": ["train", *TINY, f"output_dir={a_file}/run"],
        "No such file": ["train", "--config", str(tmp_path / "missing.yaml")],
        "not valid YAML": ["train", "--config", str(bad)],
    }  # fmt: skip
    for expected, argv in commands.items():
        assert main(argv) == 2, argv
        message = capsys.readouterr().err.strip().splitlines()
        assert len(message) == 1 and message[0].startswith("aem: ") and expected in message[0]


def test_overrides_may_come_anywhere_among_the_options() -> None:
    parser = build_parser()
    args = parse_args(parser, ["compare", "x=1", "--out", "D", "y=2", "--jobs", "2", "z=3"])
    assert (args.overrides, args.out, args.jobs) == (["x=1", "y=2", "z=3"], "D", 2)
    args = parse_args(parser, ["train", "a=1", "--config", "c.yaml", "b=2"])
    assert (args.overrides, args.config) == (["a=1", "b=2"], "c.yaml")
    for argv in (["compare", "x=1", "--bogus", "y=2"], ["envs", "x=1"]):
        with pytest.raises(SystemExit):
            parse_args(parser, argv)
