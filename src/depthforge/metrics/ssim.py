"""Gaussian SSIM maps on depth in metres.

The course's SSIM (the widely copied ``pytorch_ssim`` formulation): an 11x11 Gaussian window with sigma 1.5,
``C1 = 0.01**2`` and ``C2 = 0.03**2`` *without* a data range (so on metre values the constants are tiny), zero
padding of 5 so the map keeps the input size, and the mean over the whole map. The ``standard`` variant scales the
constants by an explicit data range, ``C = (K * L)**2`` as in Wang et al. (2004), scikit-image and torchmetrics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA, dtype: torch.dtype = torch.float32,
                    device: torch.device | None = None) -> torch.Tensor:
    """Normalised (1, 1, size, size) Gaussian kernel."""
    coords = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).to(dtype)[None, None]


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float | None = None, padding: str = "zeros",
             window: int = WINDOW, sigma: float = SIGMA) -> torch.Tensor:
    """Per-pixel SSIM of (N, 1, H, W) tensors.

    Args:
        data_range: ``None`` for the course's unscaled constants; else ``L`` in ``C = (K * L)**2``.
        padding: ``zeros`` (the course; output is HxW) or ``valid`` (no padding; output shrinks by ``window - 1``,
            as scikit-image and torchmetrics compute it before averaging).
    """
    scale = 1.0 if data_range is None else float(data_range)
    c1, c2 = (K1 * scale) ** 2, (K2 * scale) ** 2
    w = gaussian_window(window, sigma, x.dtype, x.device)
    pad = window // 2 if padding == "zeros" else 0

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, w, padding=pad)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x * mu_x
    syy = blur(y * y) - mu_y * mu_y
    sxy = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
    return num / den
