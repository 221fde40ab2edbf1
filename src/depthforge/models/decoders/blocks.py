"""Small building blocks shared by decoders."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def resize_to(x: torch.Tensor, ref: torch.Tensor | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to ``ref``'s spatial size (exact sizes, so odd inputs never drift by a pixel)."""
    size = tuple(ref.shape[-2:]) if isinstance(ref, torch.Tensor) else tuple(ref)
    return x if tuple(x.shape[-2:]) == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
