"""Tiled inference for images far larger than the training size (PatchFusion's idea, for any model).

1. A coarse pass on the whole image, downscaled so its longer side is ``coarse_side``, upsampled to full size.
2. Overlapping windows over the full-resolution image, each predicted at the model's training geometry.
3. Each window's prediction is harmonised to the coarse pass by a least-squares scale and shift over the window:
   a zoomed-in window looks nearer to a metric model, the coarse pass knows the global layout.
4. Windows are blended with raised-cosine weights, so seams fade instead of stepping.

Peak memory: the full-resolution image, the coarse map and two accumulators (a few arrays of H x W floats), plus
one window's activations: bounded by the window size, not by the image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from depthforge.config import DataConfig
from depthforge.predict.tta import predict_native
from depthforge.metrics.alignment import align_scale_shift


def _starts(length: int, window: int, overlap: float) -> list[int]:
    if window >= length:
        return [0]
    step = max(1, int(window * (1 - overlap)))
    n = math.ceil((length - window) / step) + 1
    return [min(i * step, length - window) for i in range(n)]


def _blend_weight(h: int, w: int) -> torch.Tensor:
    """Raised cosine, strictly positive at the edges so image borders keep weight."""
    wy = 0.5 - 0.5 * torch.cos(2 * math.pi * (torch.arange(h) + 0.5) / h)
    wx = 0.5 - 0.5 * torch.cos(2 * math.pi * (torch.arange(w) + 0.5) / w)
    return (wy[:, None] * wx[None, :]).clamp_min(1e-3)


@torch.inference_mode()
def predict_tiled(model: nn.Module, image: torch.Tensor, data_cfg: DataConfig, window: tuple[int, int],
                  overlap: float = 0.25, coarse_side: int = 512, harmonise: bool = True, flip: bool = False,
                  scales: tuple[float, ...] = (1.0,)) -> torch.Tensor:
    """Depth (H, W) for an RGB image (3, H, W) in [0, 1] of any size.

    Args:
        window: window size (h, w) in full-resolution pixels.
        overlap: fraction of a window shared with its neighbour.
        coarse_side: longer side of the coarse pass.
        harmonise: fit each window's scale and shift to the coarse pass.
        flip, scales: test-time augmentation of every pass (see ``predict_native``).
    """
    _, h, w = image.shape
    scale = coarse_side / max(h, w)
    small = F.interpolate(image[None], size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="bilinear",
                          align_corners=False, antialias=True)
    coarse = F.interpolate(predict_native(model, small, data_cfg, flip, scales), size=(h, w), mode="bilinear",
                           align_corners=False)[0, 0]
    acc = torch.zeros(h, w)
    weight = torch.zeros(h, w)
    wh, ww = min(window[0], h), min(window[1], w)
    blend = _blend_weight(wh, ww)
    for y in _starts(h, wh, overlap):
        for x in _starts(w, ww, overlap):
            tile = image[:, y:y + wh, x:x + ww][None]
            pred = predict_native(model, tile, data_cfg, flip, scales)[0, 0].float().cpu()
            if harmonise:
                ref = coarse[y:y + wh, x:x + ww]
                everywhere = torch.ones(1, 1, wh, ww, dtype=torch.bool)
                pred = align_scale_shift(pred[None, None], ref[None, None], everywhere)[0, 0]
            acc[y:y + wh, x:x + ww] += blend * pred
            weight[y:y + wh, x:x + ww] += blend
    return acc / weight
