"""The one dataset base class: subclasses say where pixels come from, the base turns them into samples.

A sample is a dict with fixed keys:

- ``image``: float tensor (3, H, W), RGB in [0, 1] (normalisation belongs to the model's encoder);
- ``depth``: float tensor (1, H, W), metres, clipped to ``[0, max_depth]`` as the course protocol does;
- ``mask``: bool tensor (1, H, W), pixels with a finite, positive ground truth;
- ``meta``: dict with at least ``stem`` (str) and ``index`` (int).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from depthforge.io import DataError

Sample = dict


class DepthDataset(Dataset):
    """Base class; subclasses implement ``__len__``, ``get_color``, ``get_depth`` and ``describe``.

    Args:
        max_depth: depth cap in metres; ground truth is clipped to ``[0, max_depth]``.
        transform: joint transform applied to the finished sample (see `depthforge.data.transforms`).
    """

    def __init__(self, max_depth: float = 20.0, transform: Callable[[Sample], Sample] | None = None,
                 cache: bool = False):
        self.max_depth = float(max_depth)
        self.transform = transform
        # Decoded pairs kept in RAM: on 2 CPU cores JPEG decoding otherwise competes with the model.
        self.cache = cache
        self._cached: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        raise NotImplementedError

    def get_color(self, index: int) -> np.ndarray:
        """uint8 (H, W, 3) RGB."""
        raise NotImplementedError

    def get_depth(self, index: int) -> np.ndarray:
        """float32 (H, W) metres; non-finite or <= 0 means 'no ground truth' only if the format says so."""
        raise NotImplementedError

    def stem(self, index: int) -> str:
        return str(index)

    def describe(self, index: int) -> str:
        """Human-readable source of sample ``index`` for error messages."""
        return f"sample {index}"

    def check_depth(self, depth: np.ndarray, color: np.ndarray, index: int) -> None:
        """Raise `DataError` for a depth map that does not fit its image or holds NaN/inf."""
        if depth.shape != color.shape[:2]:
            raise DataError(f"{self.describe(index)}: depth shape {depth.shape} does not match image "
                            f"{color.shape[:2]}; depth must be saved at the image's resolution")
        if not np.isfinite(depth).all():
            bad = int((~np.isfinite(depth)).sum())
            raise DataError(f"{self.describe(index)}: depth holds {bad} NaN/inf value(s); write 0 for pixels "
                            "without ground truth (or pass data.skip_invalid=true)")

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read and check one pair (used by ``__getitem__`` and by up-front validation)."""
        if index in self._cached:
            return self._cached[index]
        color = self.get_color(index)
        depth = self.get_depth(index)
        self.check_depth(depth, color, index)
        if self.cache:
            self._cached[index] = (color, depth)
        return color, depth

    def __getitem__(self, index: int) -> Sample:
        color, depth = self.load(index)
        image = torch.from_numpy(np.ascontiguousarray(color)).permute(2, 0, 1).float().div_(255.0)
        depth_t = torch.from_numpy(np.ascontiguousarray(depth))[None]
        sample = {"image": image, "depth": depth_t, "mask": depth_t > 0,
                  "meta": {"stem": self.stem(index), "index": index}}
        if self.transform is not None:
            sample = self.transform(sample)
        # Cap after the transform: a zoom divides depth, and a capped 20 m (really 100 m, sky) must stay at the cap.
        return {**sample, "depth": sample["depth"].clamp(0.0, self.max_depth)}

    def validate(self) -> list[tuple[int, str]]:
        """Read every sample once; return ``(index, reason)`` for each that fails."""
        bad = []
        for index in range(len(self)):
            try:
                self.load(index)
            except DataError as err:
                bad.append((index, str(err)))
        return bad
