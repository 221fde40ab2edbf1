"""Prediction outputs: raw depth (with sidecar) in the requested formats and a colourised preview."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from depthforge.io import write_depth
from depthforge.viz import colorize


def write_prediction(depth: np.ndarray, out_dir: str | Path, stem: str, cmap: str = "magma",
                     vmax: float | None = None, formats: tuple[str, ...] = ("npy",), meta: dict | None = None
                     ) -> list[Path]:
    """``out_dir/<stem>.<fmt>`` (+ ``.json`` sidecar) per format and ``out_dir/<stem>_color.png``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_depth(out_dir / stem, depth, fmt, meta=meta)[0] for fmt in formats]
    preview = out_dir / f"{stem}_color.png"
    Image.fromarray(colorize(depth, cmap=cmap, vmin=0.0 if vmax else None, vmax=vmax)).save(preview)
    return [*written, preview]
