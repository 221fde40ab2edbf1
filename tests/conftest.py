"""Shared fixtures: a tiny challenge-layout data set written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_pair(root: Path, split: str, stem: str, h: int = 32, w: int = 48, ext: str = ".jpeg",
               depth: np.ndarray | None = None, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    (root / "rgb" / split).mkdir(parents=True, exist_ok=True)
    (root / "depth" / split).mkdir(parents=True, exist_ok=True)
    img = root / "rgb" / split / f"{stem}{ext}"
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(img)
    dep = root / "depth" / split / f"{stem}.npy"
    np.save(dep, depth if depth is not None else rng.uniform(0.5, 40, (h, w)).astype(np.float32))
    return img, dep


@pytest.fixture
def challenge_root(tmp_path: Path) -> Path:
    """Stems 0..11 in train and 12..19 in val, mixed .jpeg/.jpg/.png, 32x48."""
    root = tmp_path / "DepthEstimationUnreal"
    for i in range(12):
        write_pair(root, "train", str(i), ext=(".jpeg", ".jpg", ".png")[i % 3], seed=i)
    for i in range(12, 20):
        write_pair(root, "val", str(i), seed=i)
    return root
