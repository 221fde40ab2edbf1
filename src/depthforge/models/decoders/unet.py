"""U-Net decoder: upsample, concatenate the next shallower encoder feature, two conv-BN-ReLU; down to stride 1."""

from __future__ import annotations

import math

import torch
from torch import nn

from depthforge.models.decoders.blocks import GlobalContext, conv_bn_relu, resize_to


class UNetDecoder(nn.Module):
    """Built from an encoder's ``out_channels`` and ``strides``. Walking from the deepest level to the shallowest,
    each block resizes to the next level's size, concatenates that level and applies two conv-BN-ReLU; then x2 steps
    without a skip continue down to stride 1. Returns ``widths[-1]`` channels at the stride its last block reaches
    (stride 1 by default; fewer widths stop earlier and the model upsamples the head's output bilinearly, which saves
    the costliest full-resolution convolutions).

    Levels that share a stride (a dilated encoder, e.g. timm's ``output_stride=16``, or a ViT) are merged at that
    stride, so a dilated encoder keeps the same blocks and weight shapes as its undilated original and a checkpoint
    of one initialises the other (``model.init_from``).

    Args:
        widths: output channels of each block, deepest first; at most one per shallower level plus one per x2 step
            from the shallowest level's stride down to 1.
        image_skip: also concatenate the (normalised) input image at stride 1, so that a decoder that goes down to
            stride 1 places depth edges on the image's own edges; `DepthModel` then
            passes the image as an extra stride-1 feature in front of the encoder's.
        context_layers: transformer blocks of `GlobalContext` applied to
            the deepest feature before the first block (0 = none); ``context_dim`` and ``context_heads`` size them.
            They start as the identity: a state dict without them, loaded with ``strict=False``, gives the model
            without them (``model.init_from`` checks every tensor, so it needs the same ``context_layers``).
    """

    def __init__(self, channels: list[int], strides: list[int], widths: tuple[int, ...] | None = None,
                 image_skip: bool = False, context_layers: int = 0, context_dim: int = 256, context_heads: int = 8):
        super().__init__()
        self.context = (GlobalContext(channels[-1], context_dim, context_layers, context_heads) if context_layers > 0
                        else nn.Identity())
        self.image_skip = bool(image_skip)
        if self.image_skip:
            channels, strides = [3, *channels], [1, *strides]
        # (feature level to concatenate or -1, stride after the block) for every possible block, deepest first
        plan = [(i, strides[i]) for i in reversed(range(len(strides) - 1))]
        plan += [(-1, strides[0] // 2 ** k) for k in range(1, int(round(math.log2(strides[0]))) + 1)]
        widths = tuple(widths or (256, 128, 64, 32, 16, 16, 16, 16)[:len(plan)])
        if not 1 <= len(widths) <= len(plan):
            raise ValueError(f"UNetDecoder takes 1 to {len(plan)} widths for an encoder with strides {strides}, "
                             f"got {widths}")
        self.skip_index = [level for level, _ in plan[:len(widths)]]
        blocks = []
        cin = channels[-1]
        for width, skip in zip(widths, self.skip_index):
            blocks.append(nn.Sequential(conv_bn_relu(cin + (channels[skip] if skip >= 0 else 0), width),
                                        conv_bn_relu(width, width)))
            cin = width
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = widths[-1]
        self.final_stride = plan[len(widths) - 1][1]
        if self.image_skip and self.final_stride != 1:
            raise ValueError(f"image_skip needs a U-Net that ends at stride 1 (it concatenates the image there); "
                             f"widths {widths} end at stride {self.final_stride}: give {len(plan)} widths or drop "
                             f"image_skip")

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.context(features[-1])
        for block, skip in zip(self.blocks, self.skip_index):
            if skip >= 0:
                x = torch.cat([resize_to(x, features[skip]), features[skip]], dim=1)
            else:
                x = nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = block(x)
        return x
