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
    lo, hi = color_range(depth, vmin, vmax)
    norm = np.clip((np.nan_to_num(depth, nan=lo) - lo) / max(hi - lo, 1e-6), 0, 1)
    if invert:
        norm = 1.0 - norm
    return (colormaps[cmap](norm)[..., :3] * 255).astype(np.uint8)


def color_range(depth: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> tuple[float, float]:
    """The values :func:`colorize` maps to the ends of the colour map: ``vmin`` / ``vmax``, each defaulting to the
    map's own 2nd / 98th percentile."""
    finite = np.asarray(depth, dtype=np.float32)
    finite = finite[np.isfinite(finite)]
    lo = float(np.percentile(finite, 2)) if vmin is None and finite.size else (vmin or 0.0)
    hi = float(np.percentile(finite, 98)) if vmax is None and finite.size else (vmax if vmax is not None else 1.0)
    return lo, hi


def with_colorbar(rgb: np.ndarray, lo: float, hi: float, cmap: str = "magma", unit: str = "m",
                  invert: bool = True) -> np.ndarray:
    """``rgb`` (a :func:`colorize` image of range ``lo``..``hi``) with a colour bar on its right, labelled in
    ``unit`` at its top, middle and bottom, so the picture can be read in metres."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = rgb.shape[:2]
    size = max(10, min(h // 12, 24))
    font = ImageFont.load_default(size=size)
    values = (hi, (lo + hi) / 2, lo)  # top to bottom: far at the top, as the colours run
    labels = [f"{v:.3g} {unit}".strip() for v in values]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = int(max(probe.textlength(t, font=font) for t in labels)) + 4
    bar_w, gap = max(8, w // 40), max(4, w // 100)
    ramp = np.linspace(hi, lo, h, dtype=np.float32)[:, None].repeat(bar_w, 1)
    canvas = Image.new("RGB", (w + 2 * gap + bar_w + text_w, h), "white")
    canvas.paste(Image.fromarray(rgb), (0, 0))
    canvas.paste(Image.fromarray(colorize(ramp, cmap, lo, hi, invert)), (w + gap, 0))
    draw = ImageDraw.Draw(canvas)
    for text, y in zip(labels, (0, (h - size) // 2, h - size - 2)):
        draw.text((w + 2 * gap + bar_w, max(0, y)), text, fill="black", font=font)
    return np.asarray(canvas)


def comparison_row(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, max_depth: float) -> np.ndarray:
    """input | ground truth | prediction | absolute error, side by side (depths on one fixed range)."""
    err = np.abs(pred - gt)
    tiles = [image, colorize(gt, vmin=0, vmax=max_depth), colorize(pred, vmin=0, vmax=max_depth),
             colorize(err, vmin=0, vmax=max_depth / 4, invert=False)]
    return np.concatenate(tiles, axis=1)
