"""One dataset for every file-based format: a list of (image, depth, scale) pairs.

Format modules (challenge, folder, manifest, NYU, KITTI) only decide which files pair up; reading, checking,
clipping and masking are shared. Files are read by `depthforge.io`: ``.npy`` (metres), 16-bit ``.png``
(value / scale; 0 = no data), ``.pfm`` and ``.exr`` (metres).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depthforge.data.base import DepthDataset, Sample
from depthforge.io import DataError, read_depth_file, read_rgb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    image: Path
    depth: Path
    scale: float = 1.0  # depth metres = stored value / scale (16-bit PNGs); 1 for float formats
    stem: str = ""


# ``skip_invalid`` value for ``data check``: keep every pair (bad ones included) and collect unpaired files, so each
# problem can be reported; nothing is validated, dropped or logged.
KEEP_INVALID = "keep"


class PairDataset(DepthDataset):
    """Samples from explicit file pairs.

    Args:
        pairs: the files, in order.
        skip_invalid: ``True``: check every pair once up front and drop (and count) those that fail;
            `KEEP_INVALID`: keep them all (``data check`` inspects each).
        name: what the data set is, for messages.
        unpaired: files without a partner, already left out of ``pairs`` (counted as skipped).
    """

    def __init__(self, pairs: list[Pair], max_depth: float = 20.0,
                 transform: Callable[[Sample], Sample] | None = None, skip_invalid: bool | str = False,
                 cache: bool = False, name: str = "data set", unpaired: list[Path] | tuple = ()):
        super().__init__(max_depth=max_depth, transform=transform, cache=cache)
        if not pairs and skip_invalid != KEEP_INVALID:
            raise DataError(f"{name}: no image/depth pairs found; check the folder names and file extensions")
        self.pairs = list(pairs)
        self.unpaired = list(unpaired)
        self.skipped = len(self.unpaired)
        if skip_invalid is True:
            bad = {index for index, _ in self.validate()}
            self.pairs = [p for i, p in enumerate(self.pairs) if i not in bad]
            self.skipped += len(bad)
            if not self.pairs:
                raise DataError(f"{name}: every sample is invalid")
        if self.skipped and skip_invalid is True:
            log.warning("%s: skipped %d invalid or unpaired sample(s) (data.skip_invalid=true)", name, self.skipped)

    def __len__(self) -> int:
        return len(self.pairs)

    def stem(self, index: int) -> str:
        return self.pairs[index].stem or self.pairs[index].image.stem

    def describe(self, index: int) -> str:
        return str(self.pairs[index].depth)

    def get_color(self, index: int) -> np.ndarray:
        return read_rgb(self.pairs[index].image)

    def get_depth(self, index: int) -> np.ndarray:
        pair = self.pairs[index]
        return read_depth_file(pair.depth, pair.scale)


def stem_key(stem: str) -> tuple[int, int | str]:
    """Numeric stems sort as numbers ("2" before "10"), others after them alphabetically."""
    return (0, int(stem)) if stem.isdigit() else (1, stem)


def pair_by_stem(images: list[Path], depths: list[Path], where: str, skip_invalid: bool | str, scale: float = 1.0,
                 key: Callable[[Path], str] = lambda p: p.stem) -> tuple[list[Pair], list[Path]]:
    """Pair files with equal keys, in natural order; unpaired files (returned) raise, naming one, unless skipped."""
    by_image = {key(p): p for p in images}
    by_depth = {key(p): p for p in depths}
    unpaired = sorted([by_image[k] for k in by_image.keys() - by_depth.keys()]
                      + [by_depth[k] for k in by_depth.keys() - by_image.keys()])
    if unpaired and not skip_invalid:
        raise DataError(f"{unpaired[0]}: has no partner ({len(unpaired)} unpaired file(s) in {where}); add the "
                        "partner or remove the file (or pass data.skip_invalid=true)")
    keys = sorted(by_image.keys() & by_depth.keys(), key=stem_key)
    return [Pair(by_image[k], by_depth[k], scale, k) for k in keys], unpaired


def list_files(folder: Path, suffixes: tuple[str, ...], recursive: bool = False) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in suffixes)
