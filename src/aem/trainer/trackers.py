"""Experiment trackers a run reports to, chosen like verl's ``trainer.logger``.

``console`` is the progress display (the CLI's), ``tensorboard`` the event files in
``RUN/tensorboard``; ``wandb`` and ``mlflow`` go through their own libraries (extra
``aem[trackers]``). Every tracker gets the resolved config as the run's parameters once, every
``metrics.jsonl`` record under the same names at its iteration, and ``curves.png`` as an artifact
when the run ends.

- Weights & Biases runs offline unless an API key is configured (``WANDB_API_KEY`` or a
  ``wandb login``) or ``WANDB_MODE`` says otherwise; its files land in ``RUN/wandb`` ready for
  ``wandb sync``. The run id is derived from the run folder, so ``--resume`` continues it.
- MLflow writes to a SQLite store and an artifact folder in ``RUN/mlflow`` unless
  ``MLFLOW_TRACKING_URI`` is set (``mlflow ui --backend-store-uri sqlite:///RUN/mlflow/mlflow.db``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import netrc
import os
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

TRACKERS = ("console", "tensorboard", "wandb", "mlflow")
"""Valid ``trainer.logger`` entries."""

EXTRA = "trackers"
"""The optional dependency group that installs wandb and MLflow."""


class Tracker(Protocol):
    """What a run reports to besides ``metrics.jsonl``."""

    def log_metrics(self, record: dict[str, float], step: int) -> None: ...

    def log_artifact(self, path: Path) -> None: ...

    def close(self) -> None: ...


class TensorBoardTracker:
    """Scalars to ``RUN/tensorboard`` (torch's ``SummaryWriter``)."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log_metrics(self, record: dict[str, float], step: int) -> None:
        for key, value in record.items():
            self._writer.add_scalar(key, value, step)
        self._writer.flush()

    def log_artifact(self, path: Path) -> None:
        """TensorBoard shows the scalars themselves; the figure stays in the run folder."""

    def close(self) -> None:
        self._writer.close()


class WandbTracker:
    """One Weights & Biases run per run folder (offline without credentials)."""

    def __init__(self, run_dir: Path, params: dict[str, Any], naming: RunNaming) -> None:
        wandb = _import("wandb", "wandb")
        mode = os.environ.get("WANDB_MODE") or ("online" if _wandb_has_key(wandb) else "offline")
        self._wandb = wandb
        self._run = wandb.init(
            project=naming.experiment,
            name=naming.name,
            group=naming.group,
            id=naming.run_id,
            resume="allow",
            dir=str(run_dir),
            config=params,
            mode=mode,
            settings=wandb.Settings(silent=True, console="off"),
        )
        self._run.define_metric("iteration")
        self._run.define_metric("*", step_metric="iteration")  # -1: the starting policy

    def log_metrics(self, record: dict[str, float], step: int) -> None:
        self._run.log({"iteration": step, **record})

    def log_artifact(self, path: Path) -> None:
        self._run.log({path.stem: self._wandb.Image(str(path))})
        self._run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self) -> None:
        self._run.finish()


class MlflowTracker:
    """One MLflow run per run folder, in ``RUN/mlflow`` unless ``MLFLOW_TRACKING_URI`` is set."""

    def __init__(self, run_dir: Path, params: dict[str, Any], naming: RunNaming) -> None:
        mlflow = _import("mlflow", "mlflow")
        self._mlflow = mlflow
        local = Path(run_dir).resolve() / "mlflow"
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        artifacts = None
        if not uri:  # a SQLite store and artifact folder of the run's own
            local.mkdir(parents=True, exist_ok=True)
            uri, artifacts = f"sqlite:///{local / 'mlflow.db'}", (local / "artifacts").as_uri()
        self._client = mlflow.MlflowClient(tracking_uri=uri)
        experiment = self._client.get_experiment_by_name(naming.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self._client.create_experiment(naming.experiment, artifact_location=artifacts)
        )
        tags = {"mlflow.runName": naming.name, "aem.run_id": naming.run_id}
        if naming.group:
            tags["aem.group"] = naming.group
        found = self._client.search_runs(
            [experiment_id], filter_string=f"tags.`aem.run_id` = '{naming.run_id}'"
        )
        if found:  # --resume continues the run
            self._run_id = found[0].info.run_id
            self._client.update_run(self._run_id, status="RUNNING")
        else:
            self._run_id = self._client.create_run(experiment_id, tags=tags).info.run_id
            flat = _flatten(params)
            for key, value in flat.items():
                self._client.log_param(self._run_id, key, value)

    def log_metrics(self, record: dict[str, float], step: int) -> None:
        for key, value in record.items():
            self._client.log_metric(self._run_id, _mlflow_key(key), value, step=step)

    def log_artifact(self, path: Path) -> None:
        self._client.log_artifact(self._run_id, str(path))

    def close(self) -> None:
        self._client.set_terminated(self._run_id)


class RunNaming:
    """How a run is named in the trackers: ``experiment`` (W&B project / MLflow experiment),
    ``name``, optional ``group`` (``aem compare``: the sweep), and a stable id from the folder."""

    def __init__(self, run_dir: Path, experiment: str, name: str | None, group: str | None):
        self.experiment = experiment
        self.name = name or Path(run_dir).resolve().name
        self.group = group
        digest = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()
        self.run_id = digest[:16]


def make_trackers(
    names: list[str], run_dir: Path, params: dict[str, Any], naming: RunNaming
) -> list[Tracker]:
    """The trackers of ``trainer.logger`` besides ``console`` (shown by the CLI)."""
    out: list[Tracker] = []
    for name in names:
        if name == "tensorboard":
            out.append(TensorBoardTracker(run_dir))
        elif name == "wandb":
            out.append(WandbTracker(run_dir, params, naming))
        elif name == "mlflow":
            out.append(MlflowTracker(run_dir, params, naming))
    return out


LIBRARIES = {"wandb": "wandb", "mlflow": "mlflow"}
"""The module each tracker needs (installed by the ``trackers`` extra)."""


def _missing_message(logger_name: str) -> str:
    module = LIBRARIES[logger_name]
    return (
        f"trainer.logger={logger_name} needs the '{EXTRA}' extra: "
        f"pip install 'aem[{EXTRA}]' (or pip install {module})"
    )


def missing_tracker_library(logger_name: str) -> str | None:
    """The error message when ``logger_name``'s library is not installed, else None."""
    if logger_name not in LIBRARIES:
        return None
    try:
        found = importlib.util.find_spec(LIBRARIES[logger_name]) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else _missing_message(logger_name)


def _import(module: str, logger_name: str) -> Any:
    """Import a tracker's library, or explain which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(_missing_message(logger_name)) from None


def _wandb_has_key(wandb: Any) -> bool:
    """An API key in the environment or in the netrc entry ``wandb login`` writes."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):  # no netrc file: offline
        return False


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a nested config, values as MLflow parameters (strings)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)[:6000]
    return out


def _mlflow_key(key: str) -> str:
    """MLflow metric names allow ``/``, ``.``, ``-``, ``_``, space and alphanumerics."""
    return "".join(c if c.isalnum() or c in "/._- " else "_" for c in key)
