"""Pure scoring: per-image metric functions, SSIM and alignment. No model runs here, no file is read.

Protocols, the evaluator, cards and reports live in `depthforge.evaluation`, the layer above.
"""

from depthforge.metrics.alignment import ALIGNMENTS, align, align_scale_shift, crop_mask
from depthforge.metrics.functional import MIN_DEPTH
from depthforge.metrics.ssim import ssim_map

__all__ = ["ALIGNMENTS", "MIN_DEPTH", "align", "align_scale_shift", "crop_mask", "ssim_map"]
