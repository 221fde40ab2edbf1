"""Augmented training samples as the training loop sees them, in one picture (``depthforge data preview``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from depthforge.config import Config
from depthforge.data.datamodule import build_dataset
from depthforge.viz import colorize


def preview_samples(cfg: Config, out: str | Path, n: int = 8) -> int:
    """Rows ``image | depth`` (invalid pixels dark) of the first ``n`` augmented training samples; returns the count."""
    torch.manual_seed(cfg.train.seed)
    dataset = build_dataset(cfg.data, cfg.data.train_split, train=True)
    rows = []
    for i in range(min(n, len(dataset))):
        s = dataset[i]
        depth = np.where(s["mask"][0].numpy(), s["depth"][0].numpy(), np.nan)
        rgb = (s["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        rows.append(np.concatenate([rgb, colorize(depth, vmin=0, vmax=cfg.data.max_depth)], axis=1))
    Image.fromarray(np.concatenate(rows, 0)).save(out)
    return len(rows)
