"""Inference: checkpoint loading, prediction at native resolution, depth file I/O."""

from depthforge.inference.checkpoint import CheckpointError, load_checkpoint
from depthforge.inference.predictor import Predictor, expand_inputs, predict_native

__all__ = ["CheckpointError", "load_checkpoint", "Predictor", "expand_inputs", "predict_native"]
