"""Optimisers and learning-rate schedules from an :class:`~depthforge.config.OptimConfig`."""

from __future__ import annotations

import math

import torch
from torch import nn

from depthforge.config import OptimConfig


def build_optimizer(cfg: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optim.name '{cfg.name}'; use adam, adamw or sgd")


def build_scheduler(cfg: OptimConfig, optimizer: torch.optim.Optimizer, total_steps: int
                    ) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-step schedule: ``cyclic`` (the report's CyclicLR), ``cosine`` with linear warm-up, or ``none``."""
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "cyclic":
        # cycle_momentum must be off for Adam, which has no 'momentum' hyper-parameter.
        return torch.optim.lr_scheduler.CyclicLR(
            optimizer, base_lr=cfg.base_lr, max_lr=cfg.max_lr, step_size_up=cfg.step_size_up,
            step_size_down=cfg.step_size_down, mode=cfg.cyclic_mode, cycle_momentum=cfg.name == "sgd")
    if cfg.scheduler == "cosine":
        warmup, total = cfg.warmup_steps, max(total_steps, 1)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    raise ValueError(f"unknown optim.scheduler '{cfg.scheduler}'; use cyclic, cosine or none")
