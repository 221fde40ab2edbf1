"""Run a model on images at their native resolution, with test-time augmentation (flip, multi-scale).

The scales are validated here, where they are defined: protocols and the command line call `check_scales`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from depthforge.config import DataConfig
from depthforge.data.transforms import model_input, to_size


def check_scales(scales) -> tuple[float, ...]:
    """Multi-scale TTA factors as a tuple of positive floats; anything else is a clear error."""
    values = tuple(float(s) for s in scales)
    if not values or not all(s > 0 for s in values):
        raise ValueError(f"TTA scales must be one or more positive factors (e.g. 0.83,1,1.17), got {scales}")
    return values


def predict_native(model: nn.Module, image: torch.Tensor, data_cfg: DataConfig, flip: bool = False,
                   scales: tuple[float, ...] = (1.0,)) -> torch.Tensor:
    """Depth (N, 1, H, W) for RGB (N, 3, H, W) in [0, 1]: fed at the training geometry, returned at input size.

    Test-time augmentation (the prediction is the mean in metres over all passes):

    - ``flip``: also the (un-flipped) prediction of the mirrored image, as ZoeDepth and BTS evaluate.
    - ``scales``: multi-scale, the network run on the input resized by each factor relative to the training
      geometry (1.0 = as trained; a model with ``input_scale`` applies its own factor on top), each prediction
      resized back. ``flip`` and ``scales`` together cost ``2 * len(scales)`` passes.
    """
    scales = check_scales(scales)
    x = network_input(model, image, data_cfg, scales)
    total = None
    for s in scales:
        if min(int(d * s) for d in x.shape[-2:]) < 1:
            raise ValueError(f"TTA scale {s:g} makes the {x.shape[-2]}x{x.shape[-1]} model input smaller than a pixel; "
                             "use scales nearer 1 or a larger image")
        xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False,
                                              antialias=s < 1)
        pred = model(xs)
        if flip:
            pred = 0.5 * (pred + model(xs.flip(-1)).flip(-1))
        pred = to_size(pred, tuple(x.shape[-2:]))
        total = pred if total is None else total + pred
    return to_size(total / len(scales), tuple(image.shape[-2:]))


def parse_scales(text: str | None) -> tuple[float, ...] | None:
    """``"0.83,1,1.17"`` -> ``(0.83, 1.0, 1.17)``; None stays None (the command-line form of ``scales``)."""
    if text is None:
        return None
    try:
        return check_scales(v for v in text.split(",") if v.strip())
    except ValueError as err:
        raise ValueError(f"--tta-scales '{text}': {err}; give comma-separated positive numbers, e.g. 0.83,1,1.17"
                         ) from None


def network_input(model: nn.Module, image: torch.Tensor, data_cfg: DataConfig, scales: tuple[float, ...]
                  ) -> torch.Tensor:
    """What ``model`` is fed for ``image``: the training geometry (`model_input`), or the image as it is for an
    exported file that resizes inside itself (``end_to_end``: `depthforge.export.app.EndToEnd`; the same image
    when the model was trained at native size), which then runs one scale only if it resizes."""
    if not getattr(model, "end_to_end", False):
        return model_input(image, data_cfg)
    if tuple(scales) != (1.0,) and data_cfg.resize_short:  # the file would resize a scaled input right back
        raise ValueError(f"{getattr(model, 'path', 'this exported model')} resizes to its training geometry inside "
                         "itself, so it runs at one scale: drop the TTA scales (--flip-tta still works), or run the "
                         "checkpoint for multi-scale TTA")
    return image


def tta_spread(model: nn.Module, image: torch.Tensor, data_cfg: DataConfig, flip: bool = True,
               scales: tuple[float, ...] = (1.0,)) -> torch.Tensor:
    """Uncertainty from test-time augmentation: the standard deviation (metres, (N, 1, H, W) at input size) over
    the passes `predict_native` averages (each flip and scale alone). Needs two or more passes."""
    scales = check_scales(scales)
    if len(scales) * (2 if flip else 1) < 2:
        raise ValueError("a TTA spread needs two or more passes: flip and/or several scales")
    x = network_input(model, image, data_cfg, scales)
    passes = []
    for s in scales:
        if min(int(d * s) for d in x.shape[-2:]) < 1:
            raise ValueError(f"TTA scale {s:g} makes the {x.shape[-2]}x{x.shape[-1]} model input smaller than a pixel; "
                             "use scales nearer 1 or a larger image")
        xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False,
                                              antialias=s < 1)
        passes.append(to_size(model(xs), tuple(image.shape[-2:])))
        if flip:
            passes.append(to_size(model(xs.flip(-1)).flip(-1), tuple(image.shape[-2:])))
    return torch.stack(passes).std(0, unbiased=False)
