"""Metric functions on one group of pixels (an image or, for the course protocol, a batch), with a valid mask."""

from __future__ import annotations

import torch

from depthforge.metrics.ssim import ssim_map


def _mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return values[mask].double().mean() if mask.any() else values.new_tensor(float("nan"), dtype=torch.float64)


def rmse(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(_mean((pred - gt) ** 2, mask))


def mae(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _mean((pred - gt).abs(), mask)


def abs_rel(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask & (gt > 0)
    return _mean((pred - gt).abs() / gt.clamp_min(1e-12), m)


def delta(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, threshold: float = 1.25) -> torch.Tensor:
    """Fraction of pixels with ``max(pred/gt, gt/pred) < threshold``; a non-positive prediction never passes."""
    m = mask & (gt > 0)
    p = pred.clamp_min(1e-12)
    ratio = torch.maximum(p / gt.clamp_min(1e-12), gt / p)
    ok = (ratio < threshold) & (pred > 0)
    return _mean(ok.double(), m)


def ssim(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, data_range: float | None) -> torch.Tensor:
    """Mean Gaussian SSIM over the masked map of (N, 1, H, W) tensors (zero padding, map keeps the input size)."""
    return _mean(ssim_map(pred.double(), gt.double(), data_range=data_range), mask)
