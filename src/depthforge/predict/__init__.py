"""Running a depth source: :func:`load` gives a :class:`Pipeline` whose ``predict`` turns images, folders, globs,
arrays and videos into :class:`DepthResult` objects (pre-processing, test-time augmentation (:mod:`.tta`), tiling
(:mod:`.tiling`), clamping, calibration, intrinsics, uncertainty, stabilisation); :func:`save_predictions` writes
them as ``depthforge predict`` does. :class:`Predictor` is the low-level batch runner underneath."""

from depthforge.predict.pipeline import Options, Pipeline, Unreadable, load
from depthforge.predict.predictor import Predictor
from depthforge.predict.result import DepthResult
from depthforge.predict.tta import check_scales, parse_scales, predict_native, tta_spread
from depthforge.predict.writer import Saved, save_predictions

__all__ = ["DepthResult", "Options", "Pipeline", "Predictor", "Saved", "check_scales", "load", "parse_scales",
           "predict_native", "save_predictions", "tta_spread", "Unreadable"]
