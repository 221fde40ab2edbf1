"""A compact pre-decoded cache: uint8 images and depth (float16 where lossless, else float32), memory-mapped.

``depthforge data cache`` writes ``DIR/images.npy`` (flat uint8), ``DIR/depth.npy`` (flat), ``DIR/index.json``
(stem, shape and offsets per sample). `CachedDataset` serves the same samples as the source loader without
decoding anything: 2 CPU cores go to the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from depthforge.data.base import DepthDataset, Sample
from depthforge.io import DataError


def write_cache(dataset: DepthDataset, out_dir: str | Path) -> Path:
    """Decode every sample of ``dataset`` once into ``out_dir``; raw depth (before clipping) is stored."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    colors, depths, index = [], [], []
    lossless = True
    for i in range(len(dataset)):
        color, depth = dataset.load(i)
        colors.append(color.reshape(-1))
        depths.append(depth.reshape(-1))
        lossless &= bool(np.array_equal(depth.astype(np.float16).astype(np.float32), depth))
        index.append({"stem": dataset.stem(i), "shape": list(depth.shape)})
    dtype = np.float16 if lossless else np.float32
    offsets = np.cumsum([0] + [d.size for d in depths]).tolist()
    np.save(out / "images.npy", np.concatenate(colors))
    np.save(out / "depth.npy", np.concatenate(depths).astype(dtype))
    meta = {"samples": index, "pixel_offsets": offsets, "depth_dtype": np.dtype(dtype).name,
            "max_depth_source": dataset.max_depth}
    (out / "index.json").write_text(json.dumps(meta))
    return out


class CachedDataset(DepthDataset):
    """Samples from a cache written by `write_cache` (memory-mapped, no decoding)."""

    def __init__(self, cache_dir: str | Path, max_depth: float = 20.0,
                 transform: Callable[[Sample], Sample] | None = None):
        super().__init__(max_depth, transform)
        self.dir = Path(cache_dir)
        if not (self.dir / "index.json").is_file():
            raise DataError(f"{self.dir}: no cache here (index.json missing); create it with depthforge data cache")
        meta = json.loads((self.dir / "index.json").read_text())
        self.samples, self.offsets = meta["samples"], meta["pixel_offsets"]
        self.images = np.load(self.dir / "images.npy", mmap_mode="r")
        self.depths = np.load(self.dir / "depth.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.samples)

    def stem(self, index: int) -> str:
        return self.samples[index]["stem"]

    def describe(self, index: int) -> str:
        return f"{self.dir} sample {self.stem(index)}"

    def get_color(self, index: int) -> np.ndarray:
        h, w = self.samples[index]["shape"]
        a, b = self.offsets[index] * 3, self.offsets[index + 1] * 3
        return np.array(self.images[a:b]).reshape(h, w, 3)

    def get_depth(self, index: int) -> np.ndarray:
        h, w = self.samples[index]["shape"]
        return np.array(self.depths[self.offsets[index]:self.offsets[index + 1]], dtype=np.float32).reshape(h, w)
