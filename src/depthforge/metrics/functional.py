"""Metric functions on one group of pixels (an image or, for the course protocol, a batch), with a valid mask.

Every function takes ``pred``, ``gt`` (metres) and a bool ``mask`` of the same shape and averages over the masked
pixels only. Log-based metrics clamp predictions to ``MIN_DEPTH`` first (a non-positive depth has no logarithm).
"""

from __future__ import annotations

import torch

from depthforge.metrics.ssim import ssim_map

MIN_DEPTH = 1e-3  # monodepth2 / ZoeDepth's lower cap


def _mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return values[mask].double().mean() if mask.any() else torch.tensor(float("nan"), dtype=torch.float64)


def _logs(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.log(pred.double().clamp_min(MIN_DEPTH)), torch.log(gt.double().clamp_min(MIN_DEPTH))


def rmse(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(_mean((pred.double() - gt.double()) ** 2, mask))


def mae(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _mean((pred.double() - gt.double()).abs(), mask)


def abs_rel(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask & (gt > 0)
    return _mean((pred.double() - gt.double()).abs() / gt.double().clamp_min(1e-12), m)


def sq_rel(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask & (gt > 0)
    return _mean((pred.double() - gt.double()) ** 2 / gt.double().clamp_min(1e-12), m)


def rmse_log(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    lp, lg = _logs(pred, gt)
    return torch.sqrt(_mean((lp - lg) ** 2, mask & (gt > 0)))


def log10(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    lp, lg = _logs(pred, gt)
    return _mean((lp - lg).abs() / torch.log(torch.tensor(10.0, dtype=torch.float64)), mask & (gt > 0))


def silog(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scale-invariant log error as the KITTI benchmark reports it: ``100 * sqrt(mean(d^2) - mean(d)^2)``."""
    lp, lg = _logs(pred, gt)
    m = mask & (gt > 0)
    d = lp - lg
    return 100 * torch.sqrt((_mean(d**2, m) - _mean(d, m) ** 2).clamp_min(0))


def delta(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, threshold: float = 1.25) -> torch.Tensor:
    """Fraction of pixels with ``max(pred/gt, gt/pred) < threshold``; a non-positive prediction never passes."""
    m = mask & (gt > 0)
    p, g = pred.double(), gt.double()
    ratio = torch.maximum(p.clamp_min(1e-12) / g.clamp_min(1e-12), g / p.clamp_min(1e-12))
    return _mean(((ratio < threshold) & (p > 0)).double(), m)


def ssim(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, data_range: float | None,
         padding: str = "zeros") -> torch.Tensor:
    """Mean Gaussian SSIM over the masked map of (N, 1, H, W) tensors.

    ``padding="zeros"`` keeps the map at input size (the course); ``"valid"`` drops the 5-pixel border, as
    scikit-image and torchmetrics do, and then the mask is cropped alike.
    """
    if padding == "valid" and min(pred.shape[-2:]) < 11:
        return torch.tensor(float("nan"), dtype=torch.float64)  # no complete 11x11 window
    smap = ssim_map(pred.double(), gt.double(), data_range=data_range, padding=padding)
    if padding == "valid":
        r = (mask.shape[-1] - smap.shape[-1]) // 2
        mask = mask[..., r:mask.shape[-2] - r, r:mask.shape[-1] - r]
    return _mean(smap, mask)


def depth_edges(depth: torch.Tensor, valid: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor,
                                                                                    torch.Tensor, torch.Tensor]:
    """Occlusion edges between right and lower neighbours: depth ratio above ``ratio``; and where both are valid."""
    d = depth.double().clamp_min(MIN_DEPTH)
    rx = torch.maximum(d[..., :, 1:] / d[..., :, :-1], d[..., :, :-1] / d[..., :, 1:])
    ry = torch.maximum(d[..., 1:, :] / d[..., :-1, :], d[..., :-1, :] / d[..., 1:, :])
    vx = valid[..., :, 1:] & valid[..., :, :-1]
    vy = valid[..., 1:, :] & valid[..., :-1, :]
    return rx > ratio, ry > ratio, vx, vy


def edge_scores(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, ratio: float = 1.15
                ) -> dict[str, torch.Tensor]:
    """Precision, recall and F1 of depth discontinuities (neighbour pairs whose depth ratio exceeds ``ratio``).

    In the spirit of Depth Pro's boundary F1 (Bochkovskii et al. 2024), on metric ground truth: a predicted edge is
    correct when the ground truth has an edge between the same two pixels.
    """
    px, py, vx, vy = depth_edges(pred, mask, ratio)
    gx, gy, _, _ = depth_edges(gt, mask, ratio)
    tp = ((px & gx & vx).sum() + (py & gy & vy).sum()).double()
    n_pred = ((px & vx).sum() + (py & vy).sum()).double()
    n_gt = ((gx & vx).sum() + (gy & vy).sum()).double()
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    precision = tp / n_pred if n_pred > 0 else nan
    recall = tp / n_gt if n_gt > 0 else nan
    f1 = 2 * precision * recall / (precision + recall) if n_pred > 0 and n_gt > 0 and tp > 0 else (
        torch.tensor(0.0, dtype=torch.float64) if n_pred > 0 and n_gt > 0 else nan)
    return {"edge_precision": precision, "edge_recall": recall, "edge_f1": f1}
