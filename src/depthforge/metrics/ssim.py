"""Gaussian SSIM maps on depth in metres.

The course's SSIM (the widely copied ``pytorch_ssim`` formulation): an 11x11 Gaussian window with sigma 1.5,
``C1 = 0.01**2`` and ``C2 = 0.03**2`` *without* a data range (so on metre values the constants are tiny), zero
padding of 5 so the map keeps the input size, and the mean over the whole map. The ``standard`` variant scales the
constants by an explicit data range, ``C = (K * L)**2`` as in Wang et al. (2004), scikit-image and torchmetrics.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


@functools.lru_cache(maxsize=16)
def gaussian_window(size: int = WINDOW, sigma: float = SIGMA, dtype: torch.dtype = torch.float32,
                    device: torch.device | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``size`` taps; the 2-D window is its outer product with itself.

    Cached per (size, sigma, dtype, device): the loss calls it every step. Callers must not modify it in place.
    """
    coords = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype)


def gaussian_blur(t: torch.Tensor, window: int = WINDOW, sigma: float = SIGMA, pad: int = 0) -> torch.Tensor:
    """Each channel of (N, C, H, W) convolved with the 2-D Gaussian window, zero padding ``pad``.

    Computed separably (a row pass and a column pass, depthwise): the same result as the 11x11 kernel up to
    float rounding, and on a CPU far cheaper in forward + backward than a one-channel 11x11 convolution.
    """
    c = t.shape[1]
    g = gaussian_window(window, sigma, t.dtype, t.device)
    t = F.conv2d(t, g.view(1, 1, 1, -1).expand(c, 1, 1, window), padding=(0, pad), groups=c)
    return F.conv2d(t, g.view(1, 1, -1, 1).expand(c, 1, window, 1), padding=(pad, 0), groups=c)


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
    pad = window // 2 if padding == "zeros" else 0
    # The five local means in one blur call: x, y, x^2, y^2, xy stacked as channels.
    stats = gaussian_blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), window, sigma, pad)
    mu_x, mu_y, xx, yy, xy = stats.split(x.shape[1], dim=1)
    sxx = xx - mu_x * mu_x
    syy = yy - mu_y * mu_y
    sxy = xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
    return num / den
