"""MiDaS/DPT-style feature fusion: residual conv units refine each level, fused from deep to shallow."""

from __future__ import annotations

import torch
from torch import nn

from depthforge.models.decoders.blocks import resize_to, upsample2


class ResidualConvUnit(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FusionBlock(nn.Module):
    """``out = RCU(up(path) + RCU(skip))``, then a 1x1 projection (RefineNet's fusion as MiDaS uses it)."""

    def __init__(self, width: int):
        super().__init__()
        self.skip_unit, self.out_unit = ResidualConvUnit(width), ResidualConvUnit(width)
        self.project = nn.Conv2d(width, width, 1)

    def forward(self, path: torch.Tensor | None, skip: torch.Tensor) -> torch.Tensor:
        x = self.skip_unit(skip)
        if path is not None:
            x = x + resize_to(path, skip)
        return self.project(self.out_unit(x))


class FusionDecoder(nn.Module):
    """Project every level to ``width`` channels, fuse deep to shallow, then upsample to stride 1.

    Returns ``width // 2`` channels at the input resolution.
    """

    def __init__(self, channels: list[int], strides: list[int], width: int = 64):
        super().__init__()
        self.project = nn.ModuleList(nn.Conv2d(c, width, 3, padding=1, bias=False) for c in channels)
        self.fuse = nn.ModuleList(FusionBlock(width) for _ in channels)
        self.first_stride = strides[0]
        self.out = nn.Sequential(nn.Conv2d(width, width // 2, 3, padding=1), nn.ReLU(inplace=True))
        self.out_channels = width // 2

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        path = None
        for proj, fuse, feat in zip(reversed(self.project), reversed(self.fuse), reversed(features)):
            path = fuse(path, proj(feat))
        stride = self.first_stride
        while stride > 1:
            path = upsample2(path)
            stride //= 2
        return self.out(path)
