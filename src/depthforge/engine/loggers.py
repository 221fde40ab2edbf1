"""The run's loggers, chosen in the config (``train.loggers``): CSV and TensorBoard by default, MLflow and Weights &
Biases through Lightning's own loggers (extras); the resolved config, and eval cards scored later, go to the
trackers as artefacts. The CSV logger appends on resume instead of deleting the run's earlier metrics."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    def __init__(self, log_dir: str):
        super().__init__(log_dir)
        # Start from the existing header, so appended rows keep every earlier column.
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])

    def _check_log_dir_exists(self) -> None:
        # Lightning deletes an existing metrics.csv here; a resumed run must keep it (rows are appended).
        return None


class AppendingCSVLogger(CSVLogger):
    """``RUN/metrics.csv`` that survives ``depthforge train --resume RUN``."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


LOGGERS = ("csv", "tensorboard", "mlflow", "wandb")
MLFLOW_RUN_FILE = "mlflow-run.txt"  # RUN/mlflow-run.txt: the tracking URI and run id, for cards scored later


def _tracking_uri(cfg: Any, out: Path) -> str:
    return cfg.train.tracking_uri or f"sqlite:///{(out / 'mlflow.db').resolve()}"


def check_loggers(cfg: Any) -> None:
    """An unknown name in ``cfg.train.loggers``, or a tracker whose extra is missing, is a `ConfigError` saying
    what to write or install: checked before a run folder is made."""
    import importlib

    from depthforge.config import ConfigError

    unknown = [n for n in cfg.train.loggers if n not in LOGGERS]
    if unknown:
        raise ConfigError(f"train.loggers: unknown {unknown}; choose from {list(LOGGERS)}, e.g. "
                          "train.loggers=[csv,mlflow]")
    for name, what in (("mlflow", "MLflow"), ("wandb", "wandb")):
        if name in cfg.train.loggers:
            try:
                importlib.import_module(name)
            except ImportError as err:
                raise ConfigError(f"train.loggers=[{name}] needs {what}: pip install 'depthforge[{name}]'") from err


def build_loggers(cfg: Any, out: Path, resume: bool = False) -> list:
    """Lightning loggers for ``cfg.train.loggers`` (`check_loggers` first). A resumed run continues its MLflow
    run."""
    check_loggers(cfg)
    loggers = []
    for name in cfg.train.loggers:
        if name == "csv":
            loggers.append(AppendingCSVLogger(save_dir=out, name="", version=""))
        elif name == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(save_dir=out, name="tb", version=""))
        elif name == "mlflow":
            from lightning.pytorch.loggers import MLFlowLogger

            noted = out / MLFLOW_RUN_FILE
            run_id = noted.read_text().split()[1] if resume and noted.is_file() else None
            loggers.append(MLFlowLogger(experiment_name=cfg.train.experiment, run_name=out.name, run_id=run_id,
                                        tracking_uri=_tracking_uri(cfg, out),
                                        artifact_location=str((out / "mlflow-artifacts").resolve())))
        else:
            from lightning.pytorch.loggers import WandbLogger

            loggers.append(WandbLogger(project=cfg.train.experiment, name=out.name, save_dir=str(out)))
    return loggers


def log_run_files(loggers: list, out: Path) -> None:
    """The resolved config to every tracker that keeps files; MLflow's run id noted in the run folder."""
    for logger in loggers:
        kind = type(logger).__name__
        if kind == "MLFlowLogger":
            logger.experiment.log_artifact(logger.run_id, str(out / "config.yaml"))
            (out / MLFLOW_RUN_FILE).write_text(f"{logger._tracking_uri}\n{logger.run_id}\n")
        elif kind == "WandbLogger":
            logger.experiment.save(str(out / "config.yaml"), base_path=str(out))


def finish_loggers(loggers: list) -> None:
    """End the trackers' runs with the training (a W&B run otherwise stays open, and unflushed, until the Python
    process exits)."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger" and logger._experiment is not None:
            logger.experiment.finish()


def log_card(card_path: str | Path, checkpoint: str | Path) -> str | None:
    """An eval card of ``checkpoint`` to the MLflow run that trained it (its run folder's ``mlflow-run.txt``), with
    its metrics as ``eval/<protocol>/<metric>``; returns the run id, or None when that run used no MLflow."""
    import json

    run_file = Path(checkpoint).resolve().parents[1] / MLFLOW_RUN_FILE
    if not run_file.is_file():
        return None
    from mlflow.tracking import MlflowClient

    uri, run_id = run_file.read_text().split()
    client = MlflowClient(uri)
    client.log_artifact(run_id, str(card_path))
    card = json.loads(Path(card_path).read_text())
    for key, value in card["metrics"].items():
        if value == value:  # NaN metrics (undefined) are left out
            client.log_metric(run_id, f"eval/{card['protocol']['name']}/{key}", float(value))
    return run_id
