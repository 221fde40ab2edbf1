"""Depth outputs: raw metres as ``.npy`` and a colourised PNG for viewing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from depthforge.viz import colorize


def write_prediction(depth: np.ndarray, out_dir: str | Path, stem: str, cmap: str = "magma",
                     vmax: float | None = None) -> tuple[Path, Path]:
    """Write ``out_dir/<stem>.npy`` (float32 metres, HxW) and ``out_dir/<stem>.png`` (colourised)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    npy, png = out_dir / f"{stem}.npy", out_dir / f"{stem}.png"
    np.save(npy, depth.astype(np.float32))
    Image.fromarray(colorize(depth, cmap=cmap, vmin=0.0 if vmax else None, vmax=vmax)).save(png)
    return npy, png
