"""Pure scoring: per-image metric functions, SSIM and alignment. No model runs here, no file is read.

Protocols, the evaluator, cards and reports live in :mod:`depthforge.evaluation`. The names they had here
(``depthforge.metrics.Evaluator``, ``get_protocol``, ...) still resolve, lazily and with a DeprecationWarning, so
that importing this package never imports the layer above it.
"""

import warnings

from depthforge.metrics.alignment import ALIGNMENTS, align, align_scale_shift, crop_mask
from depthforge.metrics.functional import MIN_DEPTH
from depthforge.metrics.ssim import ssim_map

__all__ = ["ALIGNMENTS", "MIN_DEPTH", "align", "align_scale_shift", "crop_mask", "ssim_map"]

_MOVED_TO_EVALUATION = ("Evaluator", "METRICS", "Protocol", "PROTOCOLS", "get_protocol")


def __getattr__(name: str):
    if name in _MOVED_TO_EVALUATION:
        warnings.warn(f"depthforge.metrics.{name} moved to depthforge.evaluation.{name}", DeprecationWarning,
                      stacklevel=2)
        from depthforge import evaluation  # a PEP 562 alias, resolved on first use: the layer test allows it

        return getattr(evaluation, name)
    raise AttributeError(f"module 'depthforge.metrics' has no attribute '{name}'")
