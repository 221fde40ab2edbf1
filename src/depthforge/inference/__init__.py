"""Inference: checkpoint loading, prediction at native resolution, depth file I/O."""

from depthforge.inference.checkpoint import CheckpointError, Ensemble, load_checkpoint, load_ensemble
from depthforge.inference.predictor import Predictor, expand_inputs, predict_native

__all__ = ["CheckpointError", "Ensemble", "load_checkpoint", "load_ensemble", "Predictor", "expand_inputs",
           "predict_native"]
