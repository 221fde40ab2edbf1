"""The fixed data flow every model follows: normalise -> pad -> encoder -> decoder -> head -> crop."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from depthforge.models.encoders import Encoder


class DepthModel(nn.Module):
    """RGB in [0, 1] of any size -> depth in metres at the same size.

    Normalisation lives here, as buffers taken from the encoder's `Preprocess`,
    so that checkpoints and exported graphs need no separate preprocessing step that users could get wrong.

    Inputs whose sides are not multiples of the encoder's ``multiple`` are padded (replicate, bottom/right) and the
    output cropped back, so every output pixel stays aligned with its input pixel. For example the baseline on a
    144x256 image runs on 160x256 and returns 144x256.

    ``input_scale`` > 1 runs the network on a bilinearly enlarged copy of the input and resizes the depth back:
    small images (144x256) then meet the object sizes ImageNet features were trained on, while data, loss and
    metrics stay at the native size (nothing in the data pipeline changes, no depth map is resampled).

    ``scale_jitter`` = j > 0 draws the scale of each training batch uniformly from ``input_scale * [1 - j, 1 + j]``
    (a resolution augmentation: the field of view, hence the metric depth, is unchanged, unlike a zoom); evaluation
    and export always use ``input_scale``. It trains the network for multi-scale test-time augmentation
    (`predict_native` ``scales``).
    """

    @property
    def uncertainty_kind(self) -> str | None:
        """What ``last_uncertainty`` is, or None for a head without one."""
        return "predicted standard deviation (metres, Laplace head)" if hasattr(self.head, "max_depth") and \
            getattr(self.head, "conv", None) is not None and self.head.conv.out_channels == 2 else None

    def __init__(self, encoder: Encoder, decoder: nn.Module, head: nn.Module, input_scale: float = 1.0,
                 scale_jitter: float = 0.0):
        super().__init__()
        if not input_scale > 0:
            raise ValueError(f"input_scale must be > 0, got {input_scale}")
        if not 0 <= scale_jitter < 1:
            raise ValueError(f"scale_jitter must be in [0, 1), got {scale_jitter}")
        self.encoder, self.decoder, self.head = encoder, decoder, head
        self.input_scale = float(input_scale)
        self.scale_jitter = float(scale_jitter)
        pre = encoder.preprocess
        self.multiple = pre.multiple
        self.register_buffer("mean", torch.tensor(pre.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pre.std).view(1, 3, 1, 1), persistent=False)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The network on an input whose sides are already multiples of ``self.multiple``."""
        z = (x - self.mean) / self.std
        features = self.encoder(z)
        if getattr(self.decoder, "image_skip", False):
            features = [z, *features]  # the image as a stride-1 feature (UNetDecoder(image_skip=True))
        out = self.head(self.decoder(features))
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.input_scale
        if self.training and self.scale_jitter:
            scale *= 1 + self.scale_jitter * (2 * torch.rand(()).item() - 1)
        if scale != 1.0:
            size = x.shape[-2:]
            x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False, antialias=scale < 1)
            out = F.interpolate(self._forward_any(x), size=size, mode="bilinear", align_corners=False)
        else:
            out = self._forward_any(x)
        if out.shape[1] == 2:  # a head with uncertainty (LaplaceHead): depth out, the spread kept beside it
            self.last_uncertainty = out[:, 1:]
            return out[:, :1]
        return out

    def _forward_any(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % self.multiple, (-w) % self.multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        return self.forward_padded(x)[..., :h, :w]
