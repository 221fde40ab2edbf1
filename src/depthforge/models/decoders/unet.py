"""U-Net decoder: upsample, concatenate the encoder feature at that stride, two conv-BN-ReLU; down to stride 1."""

from __future__ import annotations

import math

import torch
from torch import nn

from depthforge.models.decoders.blocks import conv_bn_relu, resize_to


class UNetDecoder(nn.Module):
    """Built from an encoder's ``out_channels`` and ``strides``; returns ``widths[-1]`` channels at stride
    ``deepest stride / 2**len(widths)`` (stride 1 by default; fewer widths stop earlier and the model upsamples
    the head's output bilinearly, which saves the costliest full-resolution convolutions).

    Args:
        widths: output channels of each x2 step, deepest first; at most log2 of the deepest stride of them.
        image_skip: also concatenate the (normalised) input image at stride 1, so that a decoder that goes down to
            stride 1 places depth edges on the image's own edges; :class:`~depthforge.models.DepthModel` then
            passes the image as an extra stride-1 feature in front of the encoder's.
    """

    def __init__(self, channels: list[int], strides: list[int], widths: tuple[int, ...] | None = None,
                 image_skip: bool = False):
        super().__init__()
        self.image_skip = bool(image_skip)
        if self.image_skip:
            channels, strides = [3, *channels], [1, *strides]
        steps = int(round(math.log2(strides[-1])))
        widths = tuple(widths or (256, 128, 64, 32, 16, 16, 16)[:steps])
        if not 1 <= len(widths) <= steps:
            raise ValueError(f"UNetDecoder takes 1 to {steps} widths for a stride-{strides[-1]} encoder, "
                             f"got {widths}")
        skip_at = {s: c for s, c in zip(strides[:-1], channels[:-1])}
        self.skip_index = []
        blocks = []
        cin, stride = channels[-1], strides[-1]
        for width in widths:
            stride //= 2
            skip = skip_at.get(stride, 0)
            self.skip_index.append(strides.index(stride) if skip else -1)
            blocks.append(nn.Sequential(conv_bn_relu(cin + skip, width), conv_bn_relu(width, width)))
            cin = width
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = widths[-1]
        self.final_stride = stride
        if self.image_skip and stride != 1:
            raise ValueError(f"image_skip needs a U-Net that ends at stride 1 (it concatenates the image there); "
                             f"widths {widths} end at stride {stride}: give {steps} widths or drop image_skip")

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for block, skip in zip(self.blocks, self.skip_index):
            if skip >= 0:
                x = torch.cat([resize_to(x, features[skip]), features[skip]], dim=1)
            else:
                x = nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = block(x)
        return x
