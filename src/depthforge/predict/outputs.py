"""Prediction outputs: raw depth (with sidecar) in the requested formats and a colourised preview."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from depthforge.io import write_depth
from depthforge.metrics.functional import MIN_DEPTH
from depthforge.viz import color_range, colorize, with_colorbar

log = logging.getLogger(__name__)


def model_range(max_depth: float) -> tuple[float, float]:
    """The depths a model trained with cap ``max_depth`` can mean: ``(MIN_DEPTH, max_depth]`` metres."""
    return MIN_DEPTH, float(max_depth)


def clamp_depth(depth: np.ndarray, valid_range: tuple[float, float], name: str, warn: bool = True
                ) -> tuple[np.ndarray, dict, np.ndarray]:
    """Depth clamped to ``valid_range``, what was clamped (for the sidecar) and the mask of pixels left as they were;
    warns with the share of pixels (``warn``).

    An unbounded head (the report's baseline) can output negative or huge values on images unlike its training
    data; written files must never hold impossible depth without saying so. Scoring does not use this: the course
    protocol scores raw predictions.
    """
    lo, hi = valid_range
    finite = np.isfinite(depth)
    below, above = float(((depth < lo) | ~finite).mean()), float((depth > hi).mean())
    info = {"model_range": [lo, hi], "below": below, "above": above,
            "raw_range": [float(np.nanmin(depth)), float(np.nanmax(depth))] if finite.any() else None}
    if warn and (below or above):
        log.warning("%s: %.1f%% of pixels below %g m and %.1f%% above %g m (raw %s) clamped into the model's valid "
                    "range; the image may be unlike the model's training data", name, 100 * below, lo, 100 * above,
                    hi, "no finite value" if info["raw_range"] is None else
                    f"{info['raw_range'][0]:.2f}..{info['raw_range'][1]:.2f} m")
    kept = finite & (depth >= lo) & (depth <= hi)
    return np.clip(np.nan_to_num(depth, nan=lo, posinf=hi, neginf=lo), lo, hi).astype(np.float32), info, kept


def write_prediction(depth: np.ndarray, out_dir: str | Path, stem: str, cmap: str = "magma",
                     vmax: float | None = None, formats: tuple[str, ...] = ("npy",), meta: dict | None = None,
                     preview: bool = True, colorbar: bool = True, unit: str = "m") -> list[Path]:
    """``out_dir/<stem>.<fmt>`` and its ``.json`` sidecar per format and (``preview``) ``out_dir/<stem>_color.png``
    with a colour bar labelled in ``unit`` (``colorbar``); the paths written, sidecars included."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [path for fmt in formats for path in write_depth(out_dir / stem, depth, fmt, meta=meta)]
    if preview:
        vmin = 0.0 if vmax else None
        rgb = colorize(depth, cmap=cmap, vmin=vmin, vmax=vmax)
        if colorbar:
            rgb = with_colorbar(rgb, *color_range(depth, vmin, vmax), cmap, unit)
        written.append(out_dir / f"{stem}_color.png")
        Image.fromarray(rgb).save(written[-1])
    return written
