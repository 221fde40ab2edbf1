"""Running a depth source: `load` gives a `Pipeline` whose ``predict`` turns images, folders, globs,
arrays and videos into `DepthResult` objects (pre-processing, test-time augmentation (`.tta`), tiling
(`.tiling`), clamping, calibration, intrinsics, uncertainty, stabilisation); `save_predictions` writes
them as ``depthforge predict`` does. `Predictor` is the low-level batch runner underneath."""

from depthforge.predict.pipeline import Options, Pipeline, Unreadable, load
from depthforge.predict.predictor import Predictor
from depthforge.predict.result import DepthResult, safe_stem
from depthforge.predict.tta import check_scales, parse_scales, predict_native, tta_spread
from depthforge.predict.writer import Saved, save_predictions

__all__ = ["DepthResult", "Options", "Pipeline", "Predictor", "Saved", "check_scales", "load", "parse_scales",
           "predict_native", "safe_stem", "save_predictions", "tta_spread", "Unreadable"]
