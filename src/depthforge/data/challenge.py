"""The challenge layout: ``ROOT/rgb/<split>/<stem>.{jpeg,jpg,png}`` paired with ``ROOT/depth/<split>/<stem>.npy``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from depthforge.data.base import Sample
from depthforge.data.pairs import PairDataset, list_files, pair_by_stem
from depthforge.io import DataError

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


class ChallengeDataset(PairDataset):
    """Pairs of RGB images and ``.npy`` metre depth maps, in numeric stem order.

    Args:
        root: folder holding ``rgb/`` and ``depth/`` (for the challenge: ``DepthEstimationUnreal``).
        split: sub-folder name (``train`` or ``val``).
        skip_invalid: drop unpaired or unreadable samples (and report how many) instead of raising.
    """

    def __init__(self, root: str | Path, split: str = "train", max_depth: float = 20.0,
                 transform: Callable[[Sample], Sample] | None = None, skip_invalid: bool = False,
                 cache: bool = False):
        self.root, self.split = Path(root), split
        rgb_dir, depth_dir = self.root / "rgb" / split, self.root / "depth" / split
        for folder in (rgb_dir, depth_dir):
            if not folder.is_dir():
                raise DataError(f"{folder}: folder not found; the challenge layout is ROOT/rgb/{split}/<stem>.jpeg "
                                f"with ROOT/depth/{split}/<stem>.npy (ROOT is the unpacked DepthEstimationUnreal)")
        pairs, unpaired = pair_by_stem(list_files(rgb_dir, IMAGE_EXTENSIONS), list_files(depth_dir, (".npy",)),
                                       str(self.root), skip_invalid)
        if not pairs:
            raise DataError(f"{rgb_dir}: no image/depth pairs found; expected <stem>.jpeg|jpg|png beside "
                            f"{depth_dir}/<stem>.npy")
        super().__init__(pairs, max_depth, transform, skip_invalid, cache, f"{self.root}/{split}", unpaired)
