"""The challenge layout: ``ROOT/rgb/<split>/<stem>.{jpeg,jpg,png}`` paired with ``ROOT/depth/<split>/<stem>.npy``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from depthforge.data.base import DataError, DepthDataset, Sample, read_npy_depth, read_rgb

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


def stem_key(stem: str) -> tuple[int, int | str]:
    """Numeric stems sort as numbers ("2" before "10"), others after them alphabetically."""
    return (0, int(stem)) if stem.isdigit() else (1, stem)


class ChallengeDataset(DepthDataset):
    """Pairs of RGB images and ``.npy`` metre depth maps, in numeric stem order.

    Args:
        root: folder holding ``rgb/`` and ``depth/`` (for the challenge: ``DepthEstimationUnreal``).
        split: sub-folder name (``train`` or ``val``).
        skip_invalid: drop unpaired or unreadable samples (and report how many) instead of raising.
    """

    def __init__(self, root: str | Path, split: str = "train", max_depth: float = 20.0,
                 transform: Callable[[Sample], Sample] | None = None, skip_invalid: bool = False,
                 cache: bool = False):
        super().__init__(max_depth=max_depth, transform=transform, cache=cache)
        self.root = Path(root)
        self.split = split
        rgb_dir, depth_dir = self.root / "rgb" / split, self.root / "depth" / split
        for folder in (rgb_dir, depth_dir):
            if not folder.is_dir():
                raise DataError(f"{folder}: folder not found; the challenge layout is ROOT/rgb/{split}/<stem>.jpeg "
                                f"with ROOT/depth/{split}/<stem>.npy (ROOT is the unpacked DepthEstimationUnreal)")
        images = {p.stem: p for p in rgb_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
        depths = {p.stem: p for p in depth_dir.iterdir() if p.suffix.lower() == ".npy"}
        unpaired = [images[s] for s in images.keys() - depths.keys()] + [depths[s] for s in depths.keys() - images.keys()]
        if unpaired and not skip_invalid:
            first = sorted(unpaired)[0]
            raise DataError(f"{first}: has no partner ({len(unpaired)} unpaired file(s) in {self.root}); every "
                            f"rgb/{split}/<stem>.jpeg needs depth/{split}/<stem>.npy: add the partner or remove the "
                            "file (or pass data.skip_invalid=true)")
        stems = sorted(images.keys() & depths.keys(), key=stem_key)
        if not stems:
            raise DataError(f"{rgb_dir}: no image/depth pairs found; expected <stem>.jpeg|jpg|png beside "
                            f"{depth_dir}/<stem>.npy")
        self.pairs = [(images[s], depths[s]) for s in stems]
        self.skipped = len(unpaired)
        if skip_invalid:
            bad = {index for index, _ in self.validate()}
            self.pairs = [p for i, p in enumerate(self.pairs) if i not in bad]
            self.skipped += len(bad)
            if self.skipped:
                log.warning("%s/%s: skipped %d invalid or unpaired sample(s)", self.root, split, self.skipped)
            if not self.pairs:
                raise DataError(f"{self.root}: every sample of split '{split}' is invalid")

    def __len__(self) -> int:
        return len(self.pairs)

    def stem(self, index: int) -> str:
        return self.pairs[index][0].stem

    def describe(self, index: int) -> str:
        return f"{self.pairs[index][1]}"

    def get_color(self, index: int) -> np.ndarray:
        return read_rgb(self.pairs[index][0])

    def get_depth(self, index: int) -> np.ndarray:
        return read_npy_depth(self.pairs[index][1])
