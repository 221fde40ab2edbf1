"""Datasets (one file each), the procedural default, joint transforms and loader construction."""

from depthforge.data.base import DepthDataset
from depthforge.data.challenge import ChallengeDataset
from depthforge.data.datamodule import build_dataset, build_loader
from depthforge.data.synthetic import SyntheticScenes
from depthforge.io import DataError

__all__ = ["DataError", "DepthDataset", "ChallengeDataset", "SyntheticScenes", "build_dataset", "build_loader"]
