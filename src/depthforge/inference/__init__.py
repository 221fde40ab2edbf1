"""Inference: checkpoint loading, prediction at native resolution (with test-time augmentation), tiling, export."""

from depthforge.inference.checkpoint import CheckpointError, Ensemble, load_checkpoint, load_ensemble
from depthforge.inference.native import check_scales, parse_scales, predict_native
from depthforge.inference.predictor import Predictor, expand_inputs

__all__ = ["CheckpointError", "Ensemble", "load_checkpoint", "load_ensemble", "Predictor", "check_scales",
           "expand_inputs", "parse_scales", "predict_native"]
