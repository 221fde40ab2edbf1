"""Build datasets and loaders from a :class:`~depthforge.config.DataConfig`."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import DataLoader

from depthforge.config import DataConfig
from depthforge.data.base import DataError, DepthDataset
from depthforge.data.challenge import ChallengeDataset
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
    if cfg.name == "challenge":
        if not cfg.root:
            raise DataError("data.name=challenge needs data.root (or --data ROOT): the folder holding rgb/ and depth/")
        return ChallengeDataset(Path(cfg.root), split, cfg.max_depth, tf, cfg.skip_invalid, cfg.cache)
    raise DataError(f"unknown data.name '{cfg.name}'; use 'synthetic' or 'challenge'")


def build_loader(dataset: DepthDataset, batch_size: int, shuffle: bool, num_workers: int = 0,
                 drop_last: bool = False) -> DataLoader:
    """A loader; evaluation keeps order and the last partial batch, as the challenge protocol requires."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      drop_last=drop_last, persistent_workers=num_workers > 0)
