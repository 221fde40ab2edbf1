"""Convert any supported data set to the generic layout: ``images/<split>/<stem>.png`` + ``depth/<split>/*.npy``."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from depthforge.config import DataConfig
from depthforge.data.datamodule import build_dataset
from depthforge.data.pairs import PairDataset


def convert(cfg: DataConfig, splits: list[str], out_dir: str | Path) -> dict[str, int]:
    """Write every sample of ``splits`` in metres (raw, not clipped); JPEG/PNG files are copied byte for byte."""
    out = Path(out_dir)
    counts = {}
    raw = dataclasses.replace(cfg, max_depth=float("inf"))
    for split in splits:
        dataset = build_dataset(raw, split, train=False)
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "depth" / split).mkdir(parents=True, exist_ok=True)
        for i in range(len(dataset)):
            stem = dataset.stem(i).replace("/", "__")  # NYU stems carry their scene folder
            color, depth = dataset.load(i)
            source = dataset.pairs[i].image if isinstance(dataset, PairDataset) else None
            if source is not None and source.suffix.lower() in (".jpg", ".jpeg", ".png"):
                shutil.copyfile(source, out / "images" / split / f"{stem}{source.suffix.lower()}")
            else:
                Image.fromarray(color).save(out / "images" / split / f"{stem}.png")
            np.save(out / "depth" / split / f"{stem}.npy", depth.astype(np.float32))
        counts[split] = len(dataset)
    return counts
