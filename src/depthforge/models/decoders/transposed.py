"""The report's decoder: a plain stack of stride-2 transposed convolutions on the deepest feature map."""

from __future__ import annotations

import torch
from torch import nn


class TransposedConvDecoder(nn.Module):
    """``ConvTranspose2d(k=4, s=2, p=1)`` blocks, each doubling resolution; BatchNorm + ReLU after all but the last.

    With the report's widths (2048 -> 512 -> 256 -> 128 -> 64 -> 1) five blocks undo a stride-32 encoder.

    Args:
        in_channels: channels of the deepest encoder feature.
        widths: output channels of each block; the last is the prediction's channel count.
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...] = (512, 256, 128, 64, 1)):
        super().__init__()
        layers: list[nn.Module] = []
        for i, width in enumerate(widths):
            layers.append(nn.ConvTranspose2d(in_channels, width, kernel_size=4, stride=2, padding=1))
            if i < len(widths) - 1:
                layers += [nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            in_channels = width
        self.layers = nn.Sequential(*layers)
        self.out_channels = widths[-1]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.layers(features[-1])
