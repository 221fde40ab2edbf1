"""Datasets (one file each), the procedural default, joint transforms and loader construction."""

from depthforge.data.base import DataError, DepthDataset
from depthforge.data.challenge import ChallengeDataset
from depthforge.data.datamodule import build_dataset, build_loader
from depthforge.data.synthetic import SyntheticScenes

__all__ = ["DataError", "DepthDataset", "ChallengeDataset", "SyntheticScenes", "build_dataset", "build_loader"]
