"""Heads turn the decoder's output into depth in metres."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class IdentityHead(nn.Module):
    """No activation: the report's decoder output is the depth (it may go negative early in training)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class PositiveHead(nn.Module):
    """Softplus keeps depth positive without the dead gradients of ReLU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x)


class SigmoidHead(nn.Module):
    """``sigmoid(x) * max_depth``: bounded output for a known depth cap."""

    def __init__(self, max_depth: float = 20.0):
        super().__init__()
        self.max_depth = float(max_depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * self.max_depth


def build_head(name: str, max_depth: float = 20.0) -> nn.Module:
    """``identity`` | ``positive`` | ``sigmoid``."""
    heads = {"identity": IdentityHead, "positive": PositiveHead}
    if name == "sigmoid":
        return SigmoidHead(max_depth)
    if name not in heads:
        raise KeyError(f"unknown head '{name}'; use identity, positive or sigmoid")
    return heads[name]()
