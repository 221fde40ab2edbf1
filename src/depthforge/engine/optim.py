"""Optimisers and learning-rate schedules from an `OptimConfig`."""

from __future__ import annotations

import math

import torch
from torch import nn

from depthforge.config import OptimConfig


def param_groups(model: nn.Module, lr: float, encoder_lr_mult: float = 1.0) -> list[dict]:
    """Encoder and the rest (decoder, head) as two groups; the encoder's lr is scaled by ``encoder_lr_mult``.

    Frozen encoder parameters stay in their group: they get no gradient (the optimiser skips them) until they are
    unfrozen, and then train without rebuilding the optimiser.
    """
    encoder = getattr(model, "encoder", None)
    enc = list(encoder.parameters()) if encoder is not None else []
    enc_ids = {id(p) for p in enc}
    rest = [p for p in model.parameters() if id(p) not in enc_ids]
    groups = [{"params": rest, "lr": lr, "name": "decoder"}]
    if enc:
        groups.append({"params": enc, "lr": lr * encoder_lr_mult, "name": "encoder"})
    return groups


def build_optimizer(cfg: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD over `param_groups`."""
    groups = param_groups(model, cfg.lr, cfg.encoder_lr_mult)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optim.name '{cfg.name}'; use adam, adamw or sgd")


class ScheduleLength:
    """The number of steps a decaying schedule spans; a wall-clock budget may shorten it during the run."""

    def __init__(self, steps: int):
        self.steps = max(int(steps), 1)


def warmup_steps(cfg: OptimConfig, steps: int) -> int:
    """The warm-up for a schedule of ``steps``: ``warmup_fraction`` of it, capped by ``warmup_steps`` (a fixed
    ``warmup_steps`` when the fraction is 0). A 100-step run then warms up for 5 steps, not 300."""
    if cfg.warmup_fraction <= 0:
        return cfg.warmup_steps
    share = max(1, round(cfg.warmup_fraction * steps))
    return min(share, cfg.warmup_steps) if cfg.warmup_steps > 0 else share


# Shortest EMA horizon (steps) a run-length-derived decay may have: below it the average is barely smoothing.
MIN_EMA_HORIZON = 10.0


def ema_decay(cap: float | None, fraction: float, steps: int) -> float | None:
    """The EMA decay for a schedule of ``steps``: horizon ``1 / (1 - decay) = fraction * steps``, capped by ``cap``
    (``cap`` itself when the fraction is 0)."""
    if not fraction or not cap:
        return cap
    return min(cap, 1.0 - 1.0 / max(MIN_EMA_HORIZON, fraction * steps))


def build_scheduler(cfg: OptimConfig, optimizer: torch.optim.Optimizer, length: ScheduleLength | int
                    ) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-step schedule: ``cyclic`` (the report's CyclicLR), ``cosine`` with linear warm-up, or ``none``."""
    length = length if isinstance(length, ScheduleLength) else ScheduleLength(length)
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "cyclic":
        # cycle_momentum must be off for Adam, which has no 'momentum' hyper-parameter.
        mults = [cfg.encoder_lr_mult if g.get("name") == "encoder" else 1.0 for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.CyclicLR(
            optimizer, base_lr=[cfg.base_lr * m for m in mults], max_lr=[cfg.max_lr * m for m in mults],
            step_size_up=cfg.step_size_up,
            step_size_down=cfg.step_size_down, mode=cfg.cyclic_mode, cycle_momentum=cfg.name == "sgd")
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                   total_steps=length.steps)
    if cfg.scheduler in ("cosine", "poly"):
        warmed = [False]  # a finished warm-up stays finished when a budget later lengthens the schedule

        def factor(step: int) -> float:
            warmup = 0 if warmed[0] else warmup_steps(cfg, length.steps)  # follows a re-fitted length
            warmed[0] = warmed[0] or step >= warmup
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, length.steps - warmup))
            if cfg.scheduler == "poly":
                return (1 - progress) ** cfg.poly_power
            return 0.5 * (1 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    raise ValueError(f"unknown optim.scheduler '{cfg.scheduler}'; use cyclic, cosine, poly, onecycle or none")
