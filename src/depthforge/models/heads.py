"""Heads turn decoder features into depth in metres."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class IdentityHead(nn.Module):
    """No layer, no activation: the report's decoder output is the depth (it may go negative early in training)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class DepthHead(nn.Module):
    """3x3 conv to one channel, then ``positive`` (softplus), ``sigmoid`` (``sigmoid * max_depth``) or ``linear``."""

    def __init__(self, in_channels: int, activation: str = "sigmoid", max_depth: float = 20.0):
        super().__init__()
        if activation not in ("positive", "sigmoid", "linear"):
            raise KeyError(f"unknown head activation '{activation}'; use positive, sigmoid or linear")
        self.conv = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.activation, self.max_depth = activation, float(max_depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.activation == "positive":
            return F.softplus(x)
        if self.activation == "sigmoid":
            return torch.sigmoid(x) * self.max_depth
        return x


class AdaptiveBinsHead(nn.Module):
    """AdaBins/ZoeDepth-style: per-image bin widths from pooled features, per-pixel soft assignment to the bins.

    Depth = sum over bins of probability * bin centre, with centres spread over ``[min_depth, max_depth]`` by
    widths an MLP predicts from the globally pooled features (AdaBins uses a mini-ViT there; a pooled MLP is the
    cheap variant that keeps the idea: bins adapt to each image's depth distribution).
    """

    def __init__(self, in_channels: int, n_bins: int = 64, min_depth: float = 1e-3, max_depth: float = 20.0):
        super().__init__()
        self.widths = nn.Sequential(nn.Linear(in_channels, 128), nn.ReLU(inplace=True), nn.Linear(128, n_bins))
        self.logits = nn.Conv2d(in_channels, n_bins, 1)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)

    def bin_centres(self, x: torch.Tensor) -> torch.Tensor:
        widths = F.softmax(self.widths(x.mean(dim=(2, 3))), dim=1) * (self.max_depth - self.min_depth)
        edges = self.min_depth + torch.cumsum(F.pad(widths, (1, 0)), dim=1)
        return 0.5 * (edges[:, :-1] + edges[:, 1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = F.softmax(self.logits(x), dim=1)
        centres = self.bin_centres(x)[:, :, None, None]
        return (probs * centres).sum(dim=1, keepdim=True)


class LaplaceHead(nn.Module):
    """Depth and its uncertainty: channel 0 is ``sigmoid * max_depth`` (as the sigmoid head), channel 1 the
    standard deviation in metres of a Laplace distribution around it (``sqrt(2) * b``, softplus, at least 1 mm).

    `DepthModel` returns channel 0 as the depth and keeps channel 1 as
    ``last_uncertainty``; the ``laplace_nll`` loss term trains both.
    """

    def __init__(self, in_channels: int, max_depth: float = 20.0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 2, 3, padding=1)
        self.max_depth = float(max_depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        depth = torch.sigmoid(x[:, :1]) * self.max_depth
        std = F.softplus(x[:, 1:]) + 1e-3
        return torch.cat([depth, std], 1)


def build_head(name: str, in_channels: int, max_depth: float = 20.0) -> nn.Module:
    """``identity`` | ``positive`` | ``sigmoid`` | ``linear`` | ``bins`` | ``laplace`` (depth + uncertainty)."""
    if name == "identity":
        return IdentityHead()
    if name == "laplace":
        return LaplaceHead(in_channels, max_depth)
    if name == "bins":
        return AdaptiveBinsHead(in_channels, max_depth=max_depth)
    return DepthHead(in_channels, name, max_depth)
