"""``train(config)``: build data, model and Lightning trainer from a resolved config and fit (or resume)."""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from torch.utils.data import DataLoader, DistributedSampler

from depthforge.config import Config, ConfigError, load_config, save_config
from depthforge.data import build_dataset, build_loader
from depthforge.engine.callbacks import (AtomicCheckpointIO, BudgetSchedule, CheckpointMetadata, EpochLine,
                                         FaultCheckpoint, LastCheckpoint, PreviewCallback, ema_with_warmup,
                                         remove_stale_temps)
from depthforge.engine.loggers import build_loggers, finish_loggers, log_run_files
from depthforge.engine.module import DepthModule
from depthforge.engine.optim import ScheduleLength, ema_decay, warmup_steps
from depthforge.sources.checkpoint import init_weights_from

log = logging.getLogger(__name__)


def _accelerator(device: str) -> str:
    return {"auto": "auto", "cpu": "cpu", "cuda": "gpu", "gpu": "gpu"}.get(device, device)


def run_dir(cfg: Config) -> Path:
    """``cfg.out`` or ``runs/<time>-<model>``."""
    if cfg.out:
        return Path(cfg.out)
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.model.name}"


def _decay_text(decay: float | None) -> str:
    return "off" if not decay else f"{decay:.5g} (horizon {1 / (1 - decay):.0f} steps)"


def resume_config(run: str | Path, overrides: list[str] | None = None) -> Config:
    """The run's saved config with ``overrides`` (e.g. more epochs); ``out`` stays the run folder."""
    run = Path(run)
    if not (run / "config.yaml").is_file() or not (run / "checkpoints" / "last.ckpt").is_file():
        raise ConfigError(f"{run}: not a resumable run (needs config.yaml and checkpoints/last.ckpt)")
    cfg = load_config(run / "config.yaml", overrides)
    cfg.out = str(run)
    return cfg


def train(cfg: Config, resume: bool = False, callbacks: list[L.Callback] | None = None) -> Path:
    """Fit ``cfg`` and return the run folder (config.yaml, checkpoints/, previews/, metrics.csv, tb/).

    ``callbacks``: extra Lightning callbacks (timers, custom logging). With ``resume``, continue ``cfg.out`` from
    ``checkpoints/last.ckpt``: weights, optimiser, scheduler, EMA,
    epoch and step, RNG states; logs are appended. A resume from an epoch boundary is exact; one from a mid-epoch
    checkpoint (Ctrl-C, SIGTERM, ``train.ckpt_every_steps``) restarts that epoch's data order.
    """
    from depthforge.sources.license_sources import of_run
    from depthforge.sources.licenses import check

    from depthforge.engine.loggers import check_loggers

    check_loggers(cfg)  # a missing tracker's extra: said before a folder is made
    licenses = of_run(cfg, resume)  # refused before a folder is made or a weight is read
    check(licenses, cfg.model.license_policy, f"model {cfg.model.name}")
    out = run_dir(cfg)
    created = not out.exists()
    try:
        return _fit(cfg, out, resume, callbacks, licenses)
    except Exception:
        # A run that failed before its first checkpoint (bad data, missing weights) leaves no folder behind
        # that looks like a run; one this call did not create is never touched.
        if created and out.is_dir() and not any((out / "checkpoints").glob("*.ckpt")):
            shutil.rmtree(out, ignore_errors=True)
            log.warning("removed %s: the run failed before writing a checkpoint", out)
        raise


def _qat_model(model, cfg: Config, resume_from: Path | None):
    """The model with NNCF's fake quantisers: calibrated on the first ``train.qat_calibration`` training images, or
    (resuming) placed as the checkpoint's QAT state says, for its weights and ranges to load into."""
    import torch

    from depthforge.data.transforms import model_input
    from depthforge.export.qat import prepare_qat, qat_example, restore_qat
    from depthforge.sources.checkpoint import qat_state_of

    if resume_from is not None:
        return restore_qat(model, qat_state_of(resume_from), qat_example(cfg.data))
    if not cfg.model.init_from:
        log.warning("train.qat=true without model.init_from: quantisation-aware training of an untrained model; "
                    "start it from a trained one (model.init_from=RUN/checkpoints/last.ckpt)")
    images = build_dataset(cfg.data, cfg.data.train_split, train=False)
    batches = [model_input(images[i]["image"][None], cfg.data) for i in range(min(cfg.train.qat_calibration,
                                                                                 len(images)))]
    with torch.no_grad():
        return prepare_qat(model, batches, batches[0])


def _fit(cfg: Config, out: Path, resume: bool, callbacks: list[L.Callback] | None, licenses: list[dict]) -> Path:
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    out.mkdir(parents=True, exist_ok=True)
    cfg.out = str(out)
    ckpt_dir = out / "checkpoints"
    for stale in remove_stale_temps(ckpt_dir):
        log.warning("removed %s, left by a checkpoint write that was killed", stale)
    if not resume:
        save_config(cfg, out / "config.yaml")

    t = cfg.train
    trainer_callbacks = [BudgetSchedule(t.max_minutes)] if t.max_minutes else []
    # Progress bars only on a terminal: in a log file their carriage returns are noise; a line per epoch instead.
    progress_bar = t.progress_bar and sys.stderr.isatty()
    if not progress_bar:
        trainer_callbacks.append(EpochLine())
    trainer_callbacks.append(LastCheckpoint(ckpt_dir / "last.ckpt", t.ckpt_every_steps))
    length: dict[str, ScheduleLength] = {}  # the module's, once it exists: a budget re-fits it during the run
    if t.ema_decay and t.qat:
        log.info("QAT: no weight averaging (train.ema_decay is ignored): the fake quantisers' ranges are trained "
                 "with the weights, and an average of them is not a model they were calibrated for")
    if t.ema_decay and not t.qat:
        from lightning.pytorch.callbacks import WeightAveraging

        def decay() -> float:
            return ema_decay(t.ema_decay, t.ema_fraction, length["schedule"].steps)

        trainer_callbacks.append(WeightAveraging(multi_avg_fn=ema_with_warmup(decay)))
    if t.early_stop_patience:
        trainer_callbacks.append(EarlyStopping("val/rmse", patience=t.early_stop_patience, mode="min"))

    train_set = build_dataset(cfg.data, cfg.data.train_split, train=True)
    val_set = build_dataset(cfg.data, cfg.data.val_split, train=False)
    # best.ckpt can only be judged where validation runs: with val_every > 1 an epoch without val/rmse is skipped.
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/rmse", mode="min", save_top_k=1,
                                 every_n_epochs=math.lcm(t.ckpt_every, t.val_every), auto_insert_metric_name=False)
    loggers = build_loggers(cfg, out, resume)
    trainer = L.Trainer(
        default_root_dir=out,
        accelerator=_accelerator(t.device),
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        max_epochs=t.epochs,
        max_steps=t.max_steps,
        max_time={"minutes": t.max_minutes} if t.max_minutes else None,
        check_val_every_n_epoch=t.val_every,
        # at most the batches of an epoch: a small data set would log nothing and Lightning would warn
        log_every_n_steps=max(1, min(t.log_every, len(train_set) // max(1, cfg.data.batch_size))),
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.grad_clip,
        deterministic=t.deterministic,
        callbacks=[*trainer_callbacks, checkpoint, CheckpointMetadata(), FaultCheckpoint(ckpt_dir / "last.ckpt"),
                   PreviewCallback(out / "previews", val_set, t.num_previews), LearningRateMonitor("step"),
                   *(callbacks or [])],
        logger=loggers,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=progress_bar,
        enable_model_summary=False,  # its FLOPs column reads 0 without an example input; one line below instead
        num_sanity_val_steps=0,
        # Training data is sharded below; validation runs whole on every rank so metrics equal a 1-process run.
        use_distributed_sampler=False,
        limit_train_batches=None,
    )
    if trainer.world_size > 1:
        sampler = DistributedSampler(train_set, num_replicas=trainer.world_size, rank=trainer.global_rank,
                                     shuffle=True, seed=t.seed, drop_last=True)
        train_loader = DataLoader(train_set, batch_size=cfg.data.batch_size, sampler=sampler,
                                  num_workers=cfg.data.num_workers, drop_last=True)
    else:
        train_loader = build_loader(train_set, cfg.data.batch_size, shuffle=True, num_workers=cfg.data.num_workers,
                                    drop_last=len(train_set) > cfg.data.batch_size)
    val_loader = build_loader(val_set, cfg.data.val_batch_size, shuffle=False, num_workers=cfg.data.num_workers)

    steps_per_epoch = max(1, len(train_loader) // t.accumulate_grad_batches)
    # A run shorter than one epoch still ends with a validation and checkpoints: make the epoch that short.
    if 0 < t.max_steps < steps_per_epoch:
        trainer.limit_train_batches = t.max_steps * t.accumulate_grad_batches
    total_steps = t.max_steps if t.max_steps > 0 else t.epochs * steps_per_epoch
    module = DepthModule(cfg.to_dict(), total_steps=total_steps)
    module.licenses = licenses  # every checkpoint records what the model derives from
    length["schedule"] = module.schedule_length
    params = [p for p in module.model.parameters()]
    log.info("model: %s, %.2f M parameters (%.2f M trainable); training on %s", cfg.model.name,
             sum(p.numel() for p in params) / 1e6, sum(p.numel() for p in params if p.requires_grad) / 1e6,
             "the GPU" if trainer.accelerator.__class__.__name__.startswith("CUDA") else "the CPU")
    log.info("schedule: %d steps planned%s; warm-up %d steps; EMA decay %s", total_steps,
             f" (re-fitted to the {t.max_minutes:g}-minute budget as the run goes)" if t.max_minutes else "",
             warmup_steps(cfg.optim, total_steps),
             _decay_text(None if t.qat else ema_decay(t.ema_decay, t.ema_fraction, total_steps)))
    if module.cfg.model.kwargs != cfg.model.kwargs:  # the model added what rebuilds it offline (hf configs)
        cfg.model.kwargs = module.cfg.model.kwargs
        if trainer.is_global_zero and not resume:
            save_config(cfg, out / "config.yaml")
    if str(cfg.model.pretrained).startswith("hf:") and not resume:
        from depthforge.sources.hub import init_from_pretrained

        init_from_pretrained(module.model, cfg.model.pretrained[3:])
    if cfg.model.init_from and not resume:
        init_weights_from(module.model, cfg.model.init_from)
    if t.qat:
        module.model = _qat_model(module.model, cfg, ckpt_dir / "last.ckpt" if resume else None)
    if trainer.is_global_zero:
        log_run_files(loggers, out)
    trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_dir / "last.ckpt" if resume else None)
    # A time limit can stop mid-epoch; last.ckpt always holds the final weights.
    trainer.save_checkpoint(ckpt_dir / "last.ckpt", weights_only=False)
    if trainer.is_global_zero:
        finish_loggers(loggers)
    if module.skipped_batches:
        log.warning("%d batch(es) with a non-finite loss were skipped", module.skipped_batches)
    return out
