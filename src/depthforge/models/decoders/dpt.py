"""DPT-style decoder (Ranftl et al. 2021): reassemble ViT tokens from several depths into a multi-scale pyramid,
then fuse it like MiDaS. The attention lives in the ViT encoder; this module turns its tokens into images."""

from __future__ import annotations

import torch
from torch import nn

from depthforge.models.decoders.fusion import FusionDecoder


class Reassemble(nn.Module):
    """Stride-16 token maps from four depths -> strides 4, 8, 16, 32 (transposed conv x4, x2, identity, conv /2)."""

    def __init__(self, in_channels: list[int], widths: tuple[int, int, int, int] = (48, 96, 192, 384)):
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"Reassemble expects 4 token maps (ViT depths), got {len(in_channels)}")
        resample = [nn.ConvTranspose2d(widths[0], widths[0], 4, stride=4),
                    nn.ConvTranspose2d(widths[1], widths[1], 2, stride=2),
                    nn.Identity(),
                    nn.Conv2d(widths[3], widths[3], 3, stride=2, padding=1)]
        self.layers = nn.ModuleList(nn.Sequential(nn.Conv2d(c, w, 1), r)
                                    for c, w, r in zip(in_channels, widths, resample))
        self.out_channels, self.strides = list(widths), [4, 8, 16, 32]

    def forward(self, tokens: list[torch.Tensor]) -> list[torch.Tensor]:
        return [layer(t) for layer, t in zip(self.layers, tokens)]


class DPTDecoder(nn.Module):
    def __init__(self, channels: list[int], strides: list[int], width: int = 64):
        super().__init__()
        self.reassemble = Reassemble(channels)
        self.fusion = FusionDecoder(self.reassemble.out_channels, self.reassemble.strides, width)
        self.out_channels = self.fusion.out_channels

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.fusion(self.reassemble(features))
