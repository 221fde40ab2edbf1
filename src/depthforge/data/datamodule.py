"""Build datasets and loaders from a `DataConfig`."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, default_collate

from depthforge.config import DataConfig
from depthforge.data.base import DepthDataset
from depthforge.data.cache import CachedDataset
from depthforge.data.challenge import ChallengeDataset
from depthforge.data.folder import FolderDataset, ManifestDataset
from depthforge.data.nyu_kitti import KITTIDepthDataset, NYUFolderDataset, NYUMatDataset
from depthforge.data.synthetic import SyntheticScenes
from depthforge.data.transforms import build_transform
from depthforge.io import DataError


def build_dataset(cfg: DataConfig, split: str, train: bool, transform: bool = True) -> DepthDataset:
    """The dataset for ``split``; ``train`` selects the random training transform.

    Evaluation datasets get no transform: targets stay at native resolution and the model's input is resized
    by `depthforge.data.transforms.model_input`.
    """
    tf = build_transform(cfg, train=True) if (train and transform) else None
    if cfg.name == "synthetic":
        s = cfg.synthetic
        n = s.num_train if split == cfg.train_split else s.num_val
        return SyntheticScenes(n, s.height, s.width, s.seed, split="train" if split == cfg.train_split else "val",
                               max_depth=cfg.max_depth, transform=tf, scene=s.scene)
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


def pad_collate(samples: list[dict]) -> dict:
    """Stack samples; if their sizes differ, zero-pad to the largest (mask False there) and record each size.

    ``meta["size"]`` then holds each sample's own (h, w), so predictions and per-image metrics use the real
    pixels only. Training on mixed sizes should crop or resize instead (``data.random_crop``, ``resize_short``).
    """
    sizes = [tuple(s["image"].shape[-2:]) for s in samples]
    if len(set(sizes)) == 1:
        return default_collate(samples)
    h, w = max(s[0] for s in sizes), max(s[1] for s in sizes)

    def pad(t: torch.Tensor, value: float | bool = 0) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2]), value=value)

    batch = default_collate([{**s, "image": pad(s["image"]), "depth": pad(s["depth"]), "mask": pad(s["mask"], False)}
                             for s in samples])
    batch["meta"]["size"] = [list(size) for size in sizes]
    return batch


def build_loader(dataset: DepthDataset, batch_size: int, shuffle: bool, num_workers: int = 0,
                 drop_last: bool = False) -> DataLoader:
    """A loader; evaluation keeps order and the last partial batch, as the challenge protocol requires."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      drop_last=drop_last, persistent_workers=num_workers > 0, collate_fn=pad_collate)


def cache_splits(cfg: DataConfig, splits: list[str], out: str | Path) -> list[tuple[str, Path]]:
    """Each split decoded once into ``out/<split>`` (``data.name=cache``): raw depth, no cap, no transform."""
    import dataclasses

    from depthforge.data.cache import write_cache

    raw = dataclasses.replace(cfg, max_depth=float("inf"), cache=False)
    return [(split, write_cache(build_dataset(raw, split, train=False), Path(out) / split)) for split in splits]
