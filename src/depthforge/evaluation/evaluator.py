"""Accumulate metrics over a data set under a `Protocol`.

``reset / process / compute`` in the manner of detectron2's ``DatasetEvaluator``: the same object scores a
checkpoint, a folder of saved predictions and the validation pass of a training run. Per-image rows are always
kept (for per-image CSVs and worst-N grids); the course protocol's headline numbers are per-batch means.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from depthforge.metrics import functional as M
from depthforge.metrics import uncertainty as U
from depthforge.metrics.alignment import align, crop_mask
from depthforge.evaluation.protocols import Protocol

METRICS = ("rmse", "mae", "rmse_log", "abs_rel", "sq_rel", "log10", "silog", "delta1", "delta2", "delta3", "ssim",
           "edge_precision", "edge_recall", "edge_f1")


def resize_square(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, size: int, crop: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``crop``: short side to ``size``, then the centre ``size x size`` (torchvision's Resize + CenterCrop, as the
    baseline's data pipeline); else squashed to ``size x size``. Prediction and target bilinear, the mask nearest."""
    def geometry(t: torch.Tensor, mode: TF.InterpolationMode) -> torch.Tensor:
        if not crop:
            return TF.resize(t, [size, size], interpolation=mode)
        return TF.center_crop(TF.resize(t, [size], interpolation=mode), [size, size])

    bilinear, nearest = TF.InterpolationMode.BILINEAR, TF.InterpolationMode.NEAREST
    return geometry(pred, bilinear), geometry(gt, bilinear), geometry(valid.float(), nearest) > 0.5


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


class Evaluator:
    """Scores batches of (N, 1, H, W) predictions against native-resolution targets."""

    def __init__(self, protocol: Protocol, bins: int = 20, per_image: bool = True):
        """``per_image=False``: a per-batch protocol's numbers only, without per-image rows (no CSV, no worst-N),
        for scoring the same predictions under many protocols at a fraction of the cost."""
        if not per_image and not protocol.per_batch:
            raise ValueError(f"protocol {protocol.name} averages per image: it needs per_image=True")
        self.protocol = protocol
        self.bins = bins
        self.per_image = per_image
        self.reset()

    def reset(self) -> None:
        self.image_rows: list[dict] = []
        self._batch_rows: list[dict[str, float]] = []
        self.n = 0
        # Pixel statistics over [0, max_depth] for the error-by-depth plot and the pred-vs-truth density plot.
        self.bin_count = torch.zeros(self.bins, dtype=torch.float64)
        self.bin_abs = torch.zeros(self.bins, dtype=torch.float64)
        self.bin_sq = torch.zeros(self.bins, dtype=torch.float64)
        self.density = torch.zeros(100, 100, dtype=torch.float64)
        # Uncertainty (when a source gives one): a fixed sample of each image's valid pixels, and per-image means.
        self._unc_pixels: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._unc_images: list[tuple[float, float]] = []

    def _accumulate_pixels(self, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> None:
        cap = self.protocol.max_depth
        g, p = gt[valid], pred[valid]
        idx = (g / cap * self.bins).long().clamp(0, self.bins - 1)
        err = p - g
        self.bin_count += torch.bincount(idx, minlength=self.bins).double()
        self.bin_abs += torch.bincount(idx, weights=err.abs(), minlength=self.bins)
        self.bin_sq += torch.bincount(idx, weights=err**2, minlength=self.bins)
        gi = (g / cap * 100).long().clamp(0, 99)
        pi = (p / cap * 100).long().clamp(0, 99)
        self.density += torch.bincount(gi * 100 + pi, minlength=10000).double().view(100, 100)

    def depth_bins(self) -> dict[str, list[float]]:
        """Per ground-truth depth bin: edges, pixel count, MAE and RMSE."""
        edges = torch.linspace(0, self.protocol.max_depth, self.bins + 1)
        n = self.bin_count.clamp_min(1)
        return {"edges": edges.tolist(), "count": self.bin_count.tolist(), "mae": (self.bin_abs / n).tolist(),
                "rmse": (self.bin_sq / n).sqrt().tolist()}

    def prepare(self, pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Apply the protocol: crop, caps (clip or mask), per-image alignment, prediction clamp."""
        p = self.protocol
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(gt.shape)}; resize "
                             "predictions to the target (depthforge.data.transforms.to_size) before scoring")
        pred, gt = pred.detach().double().cpu(), gt.detach().double().cpu()
        valid = torch.ones_like(gt, dtype=torch.bool) if mask is None else mask.detach().cpu().bool().clone()
        valid &= crop_mask(gt.shape[-2], gt.shape[-1], p.crop)
        if p.clip_target:
            gt = gt.clamp(0.0, p.max_depth)
        else:
            valid &= (gt > p.min_depth) & (gt <= p.max_depth)
        if p.square_size:  # after the clip, as a data pipeline clips targets before it resizes them
            pred, gt, valid = resize_square(pred, gt, valid, p.square_size, p.resolution.startswith("crop"))
        pred = align(pred, gt, valid, p.alignment)
        if p.clamp_pred:
            pred = pred.clamp(p.min_depth, p.max_depth)
        return pred, gt, valid

    def _score(self, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
        p = self.protocol
        row = {
            "rmse": M.rmse(pred, gt, valid), "mae": M.mae(pred, gt, valid), "rmse_log": M.rmse_log(pred, gt, valid),
            "abs_rel": M.abs_rel(pred, gt, valid), "sq_rel": M.sq_rel(pred, gt, valid),
            "log10": M.log10(pred, gt, valid), "silog": M.silog(pred, gt, valid),
            "delta1": M.delta(pred, gt, valid, 1.25), "delta2": M.delta(pred, gt, valid, 1.25**2),
            "delta3": M.delta(pred, gt, valid, 1.25**3),
            "ssim": M.ssim(pred, gt, valid, p.ssim_range, p.ssim_padding),
            **M.edge_scores(pred, gt, valid, p.edge_ratio),
        }
        return {k: float(v) for k, v in row.items()}

    def process(self, pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None,
                stems: list[str] | None = None, sizes: list | None = None,
                uncertainty: torch.Tensor | None = None) -> None:
        """Add one batch. ``gt`` is the raw target in metres; the protocol clips or masks it here.

        ``sizes``: each sample's own (h, w) when the batch was zero-padded to a common size (mask False there).
        ``uncertainty``: the source's per-pixel standard deviation (N, 1, H, W), scored by AUSE, coverage and
        uncertainty-error correlation (native-resolution protocols only).
        """
        if self.protocol.square_size and sizes and len(set(map(tuple, sizes))) > 1:
            raise ValueError(f"protocol {self.protocol.name} resizes whole batches; it needs images of one size")
        if uncertainty is not None and self.protocol.square_size:
            raise ValueError(f"protocol {self.protocol.name} resizes predictions; score uncertainty at native size")
        pred, gt, valid = self.prepare(pred, gt, mask)
        if uncertainty is not None:
            self._add_uncertainty(pred, gt, valid, uncertainty)
        if self.protocol.square_size:
            sizes = None
        stems = stems or [str(self.n + i) for i in range(pred.shape[0])]
        sizes = sizes or [tuple(gt.shape[-2:])] * len(stems)
        for i, (stem, (h, w)) in enumerate(zip(stems, sizes) if self.per_image else ()):
            own = (slice(i, i + 1), slice(None), slice(0, h), slice(0, w))
            if valid[own].any():
                self.image_rows.append({"stem": stem, **self._score(pred[own], gt[own], valid[own])})
        if self.protocol.per_batch:
            self._batch_rows.append(self._score(pred, gt, valid))
        self._accumulate_pixels(pred, gt, valid)
        self.n += pred.shape[0]

    def _add_uncertainty(self, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor,
                         uncertainty: torch.Tensor, per_image_pixels: int = 4096) -> None:
        rng = np.random.default_rng(len(self._unc_images))  # the same pixels on every run
        for i in range(pred.shape[0]):
            v = valid[i].cpu().numpy().reshape(-1)
            if not v.any():
                continue
            p, g = pred[i].cpu().numpy().reshape(-1)[v], gt[i].cpu().numpy().reshape(-1)[v]
            u = uncertainty[i].float().cpu().numpy().reshape(-1)[v]
            self._unc_images.append((float(u.mean()), float(np.sqrt(np.mean((p - g) ** 2)))))
            pick = rng.choice(len(p), min(per_image_pixels, len(p)), replace=False)
            self._unc_pixels.append((p[pick], g[pick], u[pick]))

    def uncertainty_scores(self) -> dict[str, float]:
        """AUSE (RMSE and AbsRel), 1- and 2-sigma coverage and the per-image uncertainty-error correlation."""
        if not self._unc_pixels:
            return {}
        p, g, u = (np.concatenate(a) for a in zip(*self._unc_pixels))
        images = np.array(self._unc_images)
        return {"ause_rmse": U.ause(p, g, u, "rmse"), "ause_abs_rel": U.ause(p, g, u, "abs_rel"),
                "coverage_1sigma": U.coverage(p, g, u, 1), "coverage_2sigma": U.coverage(p, g, u, 2),
                "uncertainty_error_corr": U.error_correlation(images[:, 0], images[:, 1])}

    def sparsification(self) -> dict[str, list[float]]:
        """The RMSE sparsification curve of the scored uncertainty and the oracle's (pixels removed by true error),
        over `FRACTIONS`; empty without an uncertainty."""
        if not self._unc_pixels:
            return {}
        p, g, u = (np.concatenate(a) for a in zip(*self._unc_pixels))
        return {"fraction_removed": U.FRACTIONS.tolist(), "rmse": U.sparsification_curve(p, g, u).tolist(),
                "oracle_rmse": U.sparsification_curve(p, g, np.abs(p - g)).tolist()}

    def pooled_rmse(self) -> float:
        """RMSE over every valid pixel of the split at once: independent of batching and image sizes."""
        count = float(self.bin_count.sum())
        return math.sqrt(float(self.bin_sq.sum()) / count) if count else math.nan

    def compute(self) -> dict[str, float]:
        """Mean of each metric over batches (per_batch protocols) or images, ignoring undefined (NaN) entries,
        plus ``rmse_pooled`` (all pixels at once; with the course's per-batch RMSE it is what makes numbers from
        different batch sizes comparable)."""
        rows = self._batch_rows if self.protocol.per_batch else self.image_rows
        return {**{k: _nanmean([r[k] for r in rows]) for k in METRICS}, "rmse_pooled": self.pooled_rmse(),
                **self.uncertainty_scores()}

    def merge(self, parts: list["Evaluator"]) -> "Evaluator":
        """Add evaluators of consecutive batches (in the order one process would score them): rows appended and
        pixel sums added batch by batch, so the numbers are a one-process run's exactly. Uncertainty samples are
        not mergeable (their pixel draws follow the global image count)."""
        for part in parts:
            if part._unc_pixels:
                raise ValueError("uncertainty scores cannot be gathered from shards yet; score them in one process")
            self.image_rows += part.image_rows
            self._batch_rows += part._batch_rows
            self.n += part.n
            for name in ("bin_count", "bin_abs", "bin_sq", "density"):
                setattr(self, name, getattr(self, name) + getattr(part, name))
        return self

    def result(self) -> dict:
        """The JSON-ready result: protocol, metrics and sample count."""
        return {"protocol": self.protocol.to_dict(), "metrics": self.compute(), "n": self.n}
