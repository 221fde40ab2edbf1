"""Build datasets and loaders from a :class:`~depthforge.config.DataConfig`."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import DataLoader

from depthforge.config import DataConfig
from depthforge.data.base import DataError, DepthDataset
from depthforge.data.cache import CachedDataset
from depthforge.data.challenge import ChallengeDataset
from depthforge.data.folder import FolderDataset, ManifestDataset
from depthforge.data.nyu_kitti import KITTIDepthDataset, NYUFolderDataset, NYUMatDataset
from depthforge.data.synthetic import SyntheticScenes
from depthforge.data.transforms import build_transform


def build_dataset(cfg: DataConfig, split: str, train: bool, transform: bool = True) -> DepthDataset:
    """The dataset for ``split``; ``train`` selects the random training transform.

    Evaluation datasets get no transform: targets stay at native resolution and the model's input is resized
    by :func:`depthforge.data.transforms.model_input`.
    """
    tf = build_transform(cfg, train=True) if (train and transform) else None
    if cfg.name == "synthetic":
        s = cfg.synthetic
        n = s.num_train if split == cfg.train_split else s.num_val
        return SyntheticScenes(n, s.height, s.width, s.seed, split="train" if split == cfg.train_split else "val",
                               max_depth=cfg.max_depth, transform=tf)
    if not cfg.root:
        raise DataError(f"data.name={cfg.name} needs data.root (or --data ROOT)")
    root = Path(cfg.root)
    common = {"max_depth": cfg.max_depth, "transform": tf}
    if cfg.name == "challenge":
        return ChallengeDataset(root, split, skip_invalid=cfg.skip_invalid, cache=cfg.cache, **common)
    if cfg.name == "folder":
        return FolderDataset(root, split, skip_invalid=cfg.skip_invalid, cache=cfg.cache, image_dir=cfg.image_dir,
                             depth_dir=cfg.depth_dir, depth_scale=cfg.depth_scale, **common)
    if cfg.name == "manifest":
        return ManifestDataset(root, split, skip_invalid=cfg.skip_invalid, cache=cfg.cache,
                               depth_scale=cfg.depth_scale, **common)
    if cfg.name == "nyu":
        return NYUFolderDataset(root / split if (root / split).is_dir() else root, skip_invalid=cfg.skip_invalid,
                                cache=cfg.cache, **common)
    if cfg.name == "nyu-mat":
        index_file = Path(split)
        indices = [int(v) for v in index_file.read_text().split()] if index_file.is_file() else None
        return NYUMatDataset(root, indices, cache=cfg.cache, **common)
    if cfg.name == "kitti":
        return KITTIDepthDataset(root, root / split, skip_invalid=cfg.skip_invalid, cache=cfg.cache, **common)
    if cfg.name == "cache":
        return CachedDataset(root / split if (root / split / "index.json").is_file() else root, **common)
    raise DataError(f"unknown data.name '{cfg.name}'; use synthetic, challenge, folder, manifest, nyu, nyu-mat, "
                    "kitti or cache")


def build_loader(dataset: DepthDataset, batch_size: int, shuffle: bool, num_workers: int = 0,
                 drop_last: bool = False) -> DataLoader:
    """A loader; evaluation keeps order and the last partial batch, as the challenge protocol requires."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      drop_last=drop_last, persistent_workers=num_workers > 0)
