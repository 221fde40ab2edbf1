"""NYU Depth v2 and KITTI depth in the layouts most PyTorch projects use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from depthforge.data.base import DepthDataset, Sample
from depthforge.data.pairs import Pair, PairDataset, list_files
from depthforge.io import DataError

# DenseDepth's NYU CSV layout stores training depth as 8-bit PNGs scaled to 10 m (255 = 10 m), test depth as
# 16-bit millimetres.
NYU_8BIT_MAX_M = 10.0
KITTI_SCALE = 256.0  # KITTI depth PNGs: metres = value / 256; 0 = no LiDAR return


class NYUFolderDataset(PairDataset):
    """``ROOT/<scene>/<n>.jpg`` with ``<n>.png`` depth: 8-bit PNGs mean 0..10 m, 16-bit PNGs millimetres."""

    def __init__(self, root: str | Path, max_depth: float = 10.0,
                 transform: Callable[[Sample], Sample] | None = None, skip_invalid: bool = False,
                 cache: bool = False):
        root = Path(root)
        pairs, unpaired = [], []
        for image in list_files(root, (".jpg", ".jpeg"), recursive=True):
            depth = image.with_suffix(".png")
            if depth.is_file():
                pairs.append(Pair(image, depth, 1.0, f"{image.parent.name}/{image.stem}"))
            elif not skip_invalid:
                raise DataError(f"{image}: no depth {depth.name} beside it; NYU scene folders pair <n>.jpg "
                                "with <n>.png")
            else:
                unpaired.append(image)
        super().__init__(pairs, max_depth, transform, skip_invalid, cache, str(root), unpaired)

    def get_depth(self, index: int) -> np.ndarray:
        from PIL import Image

        path = self.pairs[index].depth
        with Image.open(path) as img:
            raw = np.asarray(img)
        if raw.dtype == np.uint8:
            return raw.astype(np.float32) / 255.0 * NYU_8BIT_MAX_M
        return raw.astype(np.float32) / 1000.0


class NYUMatDataset(DepthDataset):
    """The official ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5): ``images`` (N,3,W,H) uint8 and ``depths``
    (N,W,H) metres, stored transposed by MATLAB; optional index list selects a split."""

    def __init__(self, path: str | Path, indices: list[int] | None = None, max_depth: float = 10.0,
                 transform: Callable[[Sample], Sample] | None = None, cache: bool = False):
        super().__init__(max_depth, transform, cache)
        import h5py

        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as err:
            raise DataError(f"{self.path}: not an HDF5 .mat file ({err}); the labeled NYU v2 file is MATLAB "
                            "v7.3") from err
        for key in ("images", "depths"):
            if key not in self._file:
                raise DataError(f"{self.path}: no '{key}' dataset; expected nyu_depth_v2_labeled.mat")
        n = self._file["images"].shape[0]
        self.indices = list(indices) if indices is not None else list(range(n))

    def __len__(self) -> int:
        return len(self.indices)

    def stem(self, index: int) -> str:
        return f"{self.indices[index]:05d}"

    def describe(self, index: int) -> str:
        return f"{self.path}[{self.indices[index]}]"

    def get_color(self, index: int) -> np.ndarray:
        return np.ascontiguousarray(self._file["images"][self.indices[index]].transpose(2, 1, 0))

    def get_depth(self, index: int) -> np.ndarray:
        return np.ascontiguousarray(self._file["depths"][self.indices[index]].T).astype(np.float32)


class KITTIDepthDataset(PairDataset):
    """KITTI depth: a file list of ``image_path depth_path`` lines (BTS / AdaBins style), 16-bit PNG / 256, sparse.

    Lines whose depth is ``None`` (test images without ground truth) are skipped.
    """

    def __init__(self, root: str | Path, file_list: str | Path, max_depth: float = 80.0,
                 transform: Callable[[Sample], Sample] | None = None, skip_invalid: bool = False,
                 cache: bool = False):
        root, file_list = Path(root), Path(file_list)
        if not file_list.is_file():
            raise DataError(f"{file_list}: KITTI file list not found")
        pairs = []
        for line in file_list.read_text().splitlines():
            parts = line.split()
            if len(parts) < 2 or parts[1] == "None":
                continue
            image, depth = root / parts[0], root / parts[1]
            pairs.append(Pair(image, depth, KITTI_SCALE, image.stem))
        super().__init__(pairs, max_depth, transform, skip_invalid, cache, str(file_list))
