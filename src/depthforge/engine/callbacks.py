"""Callbacks and plugins: previews at each validation, atomic checkpoint writes, checkpoint metadata."""

from __future__ import annotations

import logging
import math
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from depthforge.engine.optim import ema_decay, warmup_steps
from depthforge.viz.plots import save_grid

log = logging.getLogger(__name__)

_TMP_SUFFIX = ".tmp"


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temp files `atomic_torch_save` leaves when its process is killed mid-write (kill -9, power
    loss); the file they were replacing is intact. Call it only when no writer is active in ``folder``."""
    stale = sorted(Path(folder).glob(f".*{_TMP_SUFFIX}"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename: never a truncated file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# What evaluation, prediction, export and model.init_from read (weights, the EMA's raw counterpart, config, step).
EVALUATION_KEYS = ("state_dict", "current_model_state", "depthforge", "epoch", "global_step", "hyper_parameters",
                   "pytorch-lightning_version")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes through `atomic_torch_save` and loads with ``weights_only``.

    Files named in ``evaluation_only`` (``best.ckpt``) keep only `EVALUATION_KEYS`: no optimiser or
    scheduler state, so they are about a third of a resumable ``last.ckpt`` for an Adam-trained model.
    """

    def __init__(self, evaluation_only: tuple[str, ...] = ("best.ckpt",)):
        super().__init__()
        self.evaluation_only = evaluation_only

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if Path(path).name in self.evaluation_only:
            checkpoint = {k: v for k, v in checkpoint.items() if k in EVALUATION_KEYS}
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


def rng_state() -> dict:
    """Python, NumPy and torch RNG states as plain types (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointMetadata(L.Callback):
    """Store the model name, resolved config and RNG states, so a checkpoint loads without its config and a
    resumed run draws the same shuffles and augmentations as an uninterrupted one."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        from depthforge.version import __version__

        cfg = pl_module.cfg
        steps = pl_module.schedule_length.steps
        checkpoint["depthforge"] = {"version": __version__, "model_name": cfg.model.name, "config": cfg.to_dict(),
                                    "schedule_steps": steps,
                                    # what the run-length rules resolved to (optim.warmup_fraction, train.ema_fraction)
                                    "resolved": {"warmup_steps": warmup_steps(cfg.optim, steps),
                                                 "ema_decay": ema_decay(cfg.train.ema_decay, cfg.train.ema_fraction,
                                                                        steps)}}
        if getattr(pl_module, "licenses", None):  # what the model derives from (depthforge.sources.licenses)
            checkpoint["depthforge"]["licenses"] = pl_module.licenses
        if cfg.train.qat:  # where the fake quantisers sit: the checkpoint loads, resumes and exports without its run
            from depthforge.export.qat import qat_state

            checkpoint["depthforge"]["qat"] = qat_state(pl_module.model)
        checkpoint["rng"] = rng_state()
        # Plain dict: Lightning's AttributeDict would not pass torch.load(weights_only=True).
        checkpoint["hyper_parameters"] = dict(checkpoint.get("hyper_parameters", {}))

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if "rng" in checkpoint:
            set_rng_state(checkpoint["rng"])
        if "depthforge" in checkpoint and "schedule_steps" in checkpoint["depthforge"]:
            pl_module.schedule_length.steps = checkpoint["depthforge"]["schedule_steps"]


class FaultCheckpoint(L.Callback):
    """On Ctrl-C, SIGTERM or any exception, write ``last.ckpt`` (atomically) so ``--resume`` continues from here."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.saved = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not trainer.is_global_zero or isinstance(exception, FloatingPointError):
            return
        name = type(exception).__name__
        if trainer.global_step == 0:
            print(f"\n{name}: no checkpoint written (no optimiser step taken yet)", flush=True)
            return
        before = _file_id(self.path)
        trainer.save_checkpoint(self.path, weights_only=False)
        # Said only when the file is new: a message must never claim a checkpoint that is not on disk.
        self.saved = _file_id(self.path) not in (None, before)
        if self.saved:
            print(f"\n{name}: checkpoint written to {self.path} at step {trainer.global_step}; "
                  f"continue with: depthforge train --resume {self.path.parent.parent}", flush=True)
        else:
            print(f"\n{name}: no checkpoint written ({self.path} unchanged)", flush=True)


def _file_id(path: Path) -> tuple[int, int, int] | None:
    """(inode, mtime ns, size) of a file, None if absent: an atomic rename always changes the inode."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class EpochLine(L.Callback):
    """One plain log line per epoch (where no progress bar is drawn: logs, CI, nohup): step, losses, validation."""

    def __init__(self):
        self.start = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not on_validation_epoch_end: callbacks run before the module logs this epoch's val/* there.
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        parts = [f"{k} {float(m[k]):.4f}" for k in ("train/loss", "val/rmse", "val/ssim") if k in m]
        log.info("epoch %d/%d, step %d: %s (%.1f min)", trainer.current_epoch + 1, planned_epochs(trainer),
                 trainer.global_step, ", ".join(parts), (time.monotonic() - self.start) / 60)


def planned_epochs(trainer: L.Trainer) -> int:
    """The epochs the run will do: ``max_epochs``, or fewer when ``max_steps`` ends it first (a 2-step run on a
    40-epoch recipe says 1/1, not 1/40)."""
    batches = trainer.num_training_batches
    if not (trainer.max_steps and trainer.max_steps > 0 and math.isfinite(batches)):
        return trainer.max_epochs
    per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
    return min(trainer.max_epochs, math.ceil(trainer.max_steps / per_epoch))


class LastCheckpoint(L.Callback):
    """``last.ckpt`` at the end of every epoch and, with ``every``, every ``every`` optimiser steps (a crash or
    ``kill -9`` then loses at most that much work).

    Lightning's ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only when it also saves a top-k checkpoint,
    so after the best epoch it would go stale; this writes it unconditionally, after the best-checkpoint callback
    (``on_train_epoch_end`` follows the epoch's validation), so its state includes this epoch's best.
    """

    def __init__(self, path: str | Path, every: int | None = None):
        self.path, self.every = Path(path), int(every or 0)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.every and trainer.global_step and trainer.global_step % self.every == 0:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)


def ema_with_warmup(decay: float | Callable[[], float]):
    """``multi_avg_fn`` for `torch.optim.swa_utils.AveragedModel`: the EMA ``avg <- d * avg + (1 - d) * x``
    with ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates (the warm-up of TensorFlow's
    ExponentialMovingAverage ``num_updates``), so early averages do not drag the random initial decoder along and
    short runs and early validations benefit too. Integer buffers (BatchNorm's batch counter) follow the model.
    ``decay`` may be a callable, read at every update (a decay derived from a schedule a time budget re-fits)."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        d = min(decay() if callable(decay) else decay, (1.0 + n) / (10.0 + n))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1.0 - d)
        else:
            torch._foreach_copy_(averaged, current)

    return update


class BudgetSchedule(L.Callback):
    """Under ``train.max_minutes``, end the decaying schedule when the time runs out, not after the nominal epochs.

    The schedule length (and with it the warm-up and the EMA horizon, which are shares of it) is planned from the
    measured pace after a short timed start: the first step of an epoch (loader start, kernel selection, cache
    filling) is left out, and the length is re-fitted at steps 2, 3, 5, 10 and 20 of each epoch, then every
    ``every`` steps (adding the last validation's duration spread over an epoch's steps), and after every validation
    from the whole epoch's pace, validation included. It may grow again as the pace changes but never beyond the
    nominal epochs. What the budget affords is logged once, with a warning when it is less than one epoch.
    Time-budgeted runs are not bit-reproducible.
    """

    EARLY = (2, 3, 5, 10, 20)

    def __init__(self, max_minutes: float, every: int = 50, clock=time.monotonic):
        self.budget_s = max_minutes * 60.0
        self.every, self.clock = every, clock
        self.start = self.epoch_start = self.val_start = self.val_s = self.paced_since = 0.0
        self.epoch_start_step = self.paced_since_step = 0
        self.nominal = 0
        self.told = False

    def _fit(self, trainer: L.Trainer, pl_module: L.LightningModule, per_step: float) -> None:
        length = pl_module.schedule_length
        left = max(self.budget_s - (self.clock() - self.start), 0.0)
        affordable = trainer.global_step + int(left / max(per_step, 1e-9))
        length.steps = max(trainer.global_step + 1, min(self.nominal, affordable))
        if not self.told:
            self.told = True
            self._tell(trainer, pl_module, per_step, affordable)

    def _tell(self, trainer: L.Trainer, pl_module: L.LightningModule, per_step: float, affordable: int) -> None:
        cfg, steps = pl_module.cfg, pl_module.schedule_length.steps
        decay = ema_decay(cfg.train.ema_decay, cfg.train.ema_fraction, steps)
        log.info("time budget %g min: %.2f s/step affords about %d steps (%d planned for the nominal epochs); "
                 "schedule %d steps, warm-up %d, EMA %s", self.budget_s / 60, per_step, affordable, self.nominal,
                 steps, warmup_steps(cfg.optim, steps),
                 "off" if not decay else f"horizon {1 / (1 - decay):.0f} steps")
        per_epoch = max(trainer.num_training_batches // trainer.accumulate_grad_batches, 1)
        if affordable < per_epoch:
            log.warning("the %g-minute budget affords about %d steps, less than one epoch (%d steps): the model sees "
                        "part of the data once and is validated only at the end; give more minutes, or fewer or "
                        "smaller images", self.budget_s / 60, affordable, per_epoch)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = self.clock()
        self.nominal = pl_module.schedule_length.steps

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_start, self.epoch_start_step = self.clock(), trainer.global_step
        self.paced_since, self.paced_since_step = self.epoch_start, self.epoch_start_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        steps = trainer.global_step - self.epoch_start_step
        if steps == 1:  # the pace is timed from here: the epoch's first step is not typical
            self.paced_since, self.paced_since_step = self.clock(), trainer.global_step
        if steps > 1 and (steps in self.EARLY or steps % self.every == 0):
            steps_per_epoch = max(trainer.num_training_batches // trainer.accumulate_grad_batches, 1)
            val_per_step = self.val_s / (steps_per_epoch * (trainer.check_val_every_n_epoch or 1))
            pace = (self.clock() - self.paced_since) / (trainer.global_step - self.paced_since_step)
            self._fit(trainer, pl_module, pace + val_per_step)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.val_start = self.clock()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        steps = trainer.global_step - self.epoch_start_step
        if trainer.sanity_checking or steps <= 0:
            return
        self.val_s = self.clock() - self.val_start
        self._fit(trainer, pl_module, (self.clock() - self.epoch_start) / steps)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log.info("time budget %g min: %d steps done in %.1f min (%d planned for the nominal epochs)",
                 self.budget_s / 60, trainer.global_step, (self.clock() - self.start) / 60, self.nominal)


class PreviewCallback(L.Callback):
    """After each validation, write ``RUN/previews/epoch_XXX.png``: input | truth | prediction | |error|, columns
    titled, colour bars in metres."""

    def __init__(self, out_dir: str | Path, dataset: torch.utils.data.Dataset, num: int = 4):
        self.out_dir = Path(out_dir)
        self.dataset = dataset
        self.indices = list(range(min(num, len(dataset))))

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not self.indices:
            return
        rows = []
        for i in self.indices:
            sample = self.dataset[i]
            image = sample["image"][None].to(pl_module.device)
            pred = pl_module.predict_native(image)[0, 0].float().cpu().numpy()
            rgb = (sample["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            rows.append((rgb, sample["depth"][0].numpy(), pred))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_grid(rows, pl_module.cfg.data.max_depth, self.out_dir / f"epoch_{trainer.current_epoch:03d}.png")
