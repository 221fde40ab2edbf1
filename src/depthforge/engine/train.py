"""``train(config)``: build data, model and Lightning trainer from a resolved config and fit."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from depthforge.config import Config, save_config
from depthforge.data import build_dataset, build_loader
from depthforge.engine.callbacks import AtomicCheckpointIO, BudgetSchedule, CheckpointMetadata, PreviewCallback
from depthforge.engine.module import DepthModule

log = logging.getLogger(__name__)


def _accelerator(device: str) -> str:
    return {"auto": "auto", "cpu": "cpu", "cuda": "gpu", "gpu": "gpu"}.get(device, device)


def run_dir(cfg: Config) -> Path:
    """``cfg.out`` or ``runs/<time>-<model>``."""
    if cfg.out:
        return Path(cfg.out)
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.model.name}"


def train(cfg: Config) -> Path:
    """Fit ``cfg`` and return the run folder (config.yaml, checkpoints/, previews/, metrics.csv, tb/)."""
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    out = run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    cfg.out = str(out)
    save_config(cfg, out / "config.yaml")

    train_set = build_dataset(cfg.data, cfg.data.train_split, train=True)
    val_set = build_dataset(cfg.data, cfg.data.val_split, train=False)
    train_loader = build_loader(train_set, cfg.data.batch_size, shuffle=True, num_workers=cfg.data.num_workers,
                                drop_last=len(train_set) > cfg.data.batch_size)
    val_loader = build_loader(val_set, cfg.data.val_batch_size, shuffle=False, num_workers=cfg.data.num_workers)

    t = cfg.train
    steps_per_epoch = len(train_loader)
    # A run shorter than one epoch still ends with a validation and checkpoints: make the epoch that short.
    limit_batches = t.max_steps if 0 < t.max_steps < steps_per_epoch else None
    total_steps = t.max_steps if t.max_steps > 0 else t.epochs * steps_per_epoch
    module = DepthModule(cfg.to_dict(), total_steps=total_steps)

    callbacks = [BudgetSchedule(t.max_minutes)] if t.max_minutes else []
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val/rmse", mode="min",
                                 save_top_k=1, save_last=True, every_n_epochs=t.ckpt_every,
                                 auto_insert_metric_name=False)
    trainer = L.Trainer(
        default_root_dir=out,
        accelerator=_accelerator(t.device),
        devices=1,
        precision=t.precision,
        max_epochs=t.epochs,
        max_steps=t.max_steps,
        max_time={"minutes": t.max_minutes} if t.max_minutes else None,
        limit_train_batches=limit_batches,
        check_val_every_n_epoch=t.val_every,
        log_every_n_steps=min(t.log_every, max(1, limit_batches or steps_per_epoch)),
        callbacks=[*callbacks, checkpoint, CheckpointMetadata(),
                   PreviewCallback(out / "previews", val_set, t.num_previews), LearningRateMonitor("step")],
        logger=[CSVLogger(save_dir=out, name="", version=""), TensorBoardLogger(save_dir=out, name="tb", version="")],
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=t.progress_bar,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, train_loader, val_loader)
    # A time limit can stop mid-epoch; last.ckpt always holds the final weights.
    trainer.save_checkpoint(out / "checkpoints" / "last.ckpt")
    return out
