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


class GlobalContext(nn.Module):
    """Self-attention over the deepest feature map, added back as a residual: every stride-32 cell sees the whole
    image (is that blob a near object or the far field?), which 3x3 convolutions only reach through many layers.

    ``channels`` -> ``dim`` (1x1 conv), a depthwise 3x3 conv as position encoding (conditional position encoding,
    so any input size works without interpolating a learned table), ``layers`` timm ViT blocks over the flattened
    cells, LayerNorm, ``dim`` -> ``channels`` (1x1 conv, zero-initialised: the block starts as the identity, so it
    can be added to a pretrained U-Net without changing its output).
    """

    def __init__(self, channels: int, dim: int = 256, layers: int = 2, heads: int = 8):
        super().__init__()
        from depthforge.models.timm_import import import_timm

        Block = import_timm().models.vision_transformer.Block

        if dim % heads:
            raise ValueError(f"context dim {dim} must be a multiple of context heads {heads}")
        self.proj_in = nn.Conv2d(channels, dim, 1)
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio=2.0, qkv_bias=True) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.proj_out = nn.Conv2d(dim, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        t = self.proj_in(x)
        t = t + self.pos(t)
        t = self.norm(self.blocks(t.flatten(2).transpose(1, 2)))
        return x + self.proj_out(t.transpose(1, 2).reshape(b, -1, h, w))
