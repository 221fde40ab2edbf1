"""Accumulate metrics over a data set under a :class:`~depthforge.metrics.protocols.Protocol`.

``reset / process / compute`` in the manner of detectron2's ``DatasetEvaluator``: the same object scores a
checkpoint, a folder of saved predictions and the validation pass of a training run.
"""

from __future__ import annotations

import math

import torch

from depthforge.metrics import functional as M
from depthforge.metrics.protocols import MIN_DEPTH, Protocol

METRICS = ("rmse", "ssim", "abs_rel", "delta1", "mae")


class Evaluator:
    """Scores batches of (N, 1, H, W) predictions against native-resolution targets."""

    def __init__(self, protocol: Protocol):
        self.protocol = protocol
        self.reset()

    def reset(self) -> None:
        self._rows: list[dict[str, float]] = []
        self.n = 0

    def _score(self, pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
        p = self.protocol
        return {
            "rmse": M.rmse(pred, gt, mask).item(),
            "ssim": M.ssim(pred, gt, mask, p.ssim_range).item(),
            "abs_rel": M.abs_rel(pred, gt, mask).item(),
            "delta1": M.delta(pred, gt, mask).item(),
            "mae": M.mae(pred, gt, mask).item(),
        }

    def process(self, pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add one batch. ``gt`` is the raw target in metres; the protocol clips or masks it here."""
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(gt.shape)}; resize "
                             "predictions to the target (depthforge.data.transforms.to_size) before scoring")
        p = self.protocol
        pred, gt = pred.detach().float().cpu(), gt.detach().float().cpu()
        valid = torch.ones_like(gt, dtype=torch.bool) if mask is None else mask.detach().cpu().bool()
        if p.clip_target:
            gt = gt.clamp(0.0, p.max_depth)
        else:
            valid = valid & (gt > MIN_DEPTH) & (gt <= p.max_depth)
        if p.clamp_pred:
            pred = pred.clamp(MIN_DEPTH, p.max_depth)
        self.n += pred.shape[0]
        if p.per_batch:
            self._rows.append(self._score(pred, gt, valid))
        else:
            for i in range(pred.shape[0]):
                if valid[i].any():
                    self._rows.append(self._score(pred[i:i + 1], gt[i:i + 1], valid[i:i + 1]))

    def compute(self) -> dict[str, float]:
        """Mean of each metric over batches (course) or images (standard)."""
        if not self._rows:
            return {k: math.nan for k in METRICS}
        return {k: sum(r[k] for r in self._rows) / len(self._rows) for k in METRICS}

    def result(self) -> dict:
        """The JSON-ready result: protocol, metrics and sample count."""
        return {"protocol": self.protocol.to_dict(), "metrics": self.compute(), "n": self.n}
