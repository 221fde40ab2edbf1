"""The LightningModule: one training step, one validation step, the optimiser; nothing else."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch

from depthforge.config import Config, load_config
from depthforge.engine.optim import ScheduleLength, build_optimizer, build_scheduler
from depthforge.predict.tta import predict_native
from depthforge.losses import WeightedLoss
from depthforge.evaluation import Evaluator, get_protocol
from depthforge.evaluation.runner import model_predictor
from depthforge.models import model_from_config

log = logging.getLogger(__name__)


class DepthModule(L.LightningModule):
    """Trains ``config.model`` with ``config.loss``; validates with the challenge protocol at native resolution.

    The resolved config is stored as the module's hyper-parameters, so every checkpoint carries it.
    """

    def __init__(self, config: dict[str, Any], total_steps: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.cfg: Config = load_config(base=config)
        self.model = model_from_config(self.cfg.model, self.cfg.data.max_depth)
        own = getattr(self.model, "checkpoint_kwargs", None)
        if own is not None:  # e.g. a transformers model's configs: the checkpoint then rebuilds it offline
            self.cfg.model.kwargs = {**self.cfg.model.kwargs, **own()}
            self.hparams["config"] = self.cfg.to_dict()
        if self.cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.criterion = WeightedLoss(self.cfg.loss.terms)
        self.evaluator = Evaluator(get_protocol("challenge", self.cfg.data.max_depth))
        self.schedule_length = ScheduleLength(total_steps)
        self.skipped_batches = 0

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.cfg.train.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return self.model(image)

    def predict_native(self, image: torch.Tensor) -> torch.Tensor:
        """Prediction at the input's own size, with the model fed at its training geometry."""
        return predict_native(self.model, image, self.cfg.data)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        if hasattr(self.model, "denoising_loss"):  # a diffusion model: noise the target, denoise once
            image = batch["image"]
            if self.cfg.train.channels_last:
                image = image.contiguous(memory_format=torch.channels_last)
            pred, own = self.model.denoising_loss(image, batch["depth"], batch["mask"])
        else:
            pred, own = self(batch["image"]), None
        loss, parts = self.criterion(pred, batch["depth"], batch["mask"],
                                     getattr(self.model, "last_uncertainty", None), own)
        if not torch.isfinite(loss):
            stems = list(batch["meta"]["stem"])
            msg = (f"non-finite loss {loss.item()} at step {self.global_step} (epoch {self.current_epoch}), "
                   f"batch {stems}")
            if self.cfg.train.nan_policy == "skip":
                log.warning("%s: batch skipped (train.nan_policy=skip)", msg)
                self.skipped_batches += 1
                return None  # Lightning skips backward and the optimiser step
            raise FloatingPointError(f"{msg}. Check these samples (depthforge data check), lower the learning "
                                     "rate, or set train.nan_policy=skip")
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for name, value in parts.items():
            # loss_<term>: the term as trained (ssim here is 1 - SSIM), apart from the val/<metric> of that name
            self.log(f"train/loss_{name}", value, batch_size=bs)
        return loss

    def on_validation_epoch_start(self) -> None:
        self.evaluator.reset()
        self._val_predict = model_predictor(self.model, self.cfg.data, self.evaluator.protocol, self.device)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        # The same path as `depthforge evaluate`: native resolution, mixed sizes handled per image.
        self.evaluator.process(self._val_predict(batch), batch["depth"], batch["mask"], list(batch["meta"]["stem"]),
                               batch["meta"].get("size"))

    def on_validation_epoch_end(self) -> None:
        for name, value in self.evaluator.compute().items():
            self.log(f"val/{name}", value, prog_bar=name in ("rmse", "ssim"))

    def on_train_epoch_start(self) -> None:
        if self.cfg.train.unfreeze_epoch is not None and self.current_epoch >= self.cfg.train.unfreeze_epoch:
            if getattr(self.model.encoder, "frozen_stages", 0):
                self.model.encoder.freeze(0)

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.cfg.optim, self.model)
        scheduler = build_scheduler(self.cfg.optim, optimizer, self.schedule_length)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
