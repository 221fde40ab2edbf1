"""Depth to colour with matplotlib's colormaps."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps


def colorize(depth: np.ndarray, cmap: str = "magma", vmin: float | None = None, vmax: float | None = None,
             invert: bool = True) -> np.ndarray:
    """uint8 (H, W, 3) image of a (H, W) map.

    Args:
        vmin, vmax: fixed range; each defaults to the map's own 2nd/98th percentile.
        invert: near is bright (the convention of MiDaS and Depth Anything previews).
    """
    depth = np.asarray(depth, dtype=np.float32)
    finite = depth[np.isfinite(depth)]
    lo = float(np.percentile(finite, 2)) if vmin is None and finite.size else (vmin or 0.0)
    hi = float(np.percentile(finite, 98)) if vmax is None and finite.size else (vmax if vmax is not None else 1.0)
    norm = np.clip((np.nan_to_num(depth, nan=lo) - lo) / max(hi - lo, 1e-6), 0, 1)
    if invert:
        norm = 1.0 - norm
    return (colormaps[cmap](norm)[..., :3] * 255).astype(np.uint8)


def comparison_row(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, max_depth: float) -> np.ndarray:
    """input | ground truth | prediction | absolute error, side by side (depths on one fixed range)."""
    err = np.abs(pred - gt)
    tiles = [image, colorize(gt, vmin=0, vmax=max_depth), colorize(pred, vmin=0, vmax=max_depth),
             colorize(err, vmin=0, vmax=max_depth / 4, invert=False)]
    return np.concatenate(tiles, axis=1)
