"""Training: the LightningModule, optimisers and schedules, callbacks, and the ``train`` entry point."""

from depthforge.engine.module import DepthModule
from depthforge.engine.train import train

__all__ = ["DepthModule", "train"]
