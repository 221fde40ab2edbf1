"""Run a model on images at their native resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from depthforge.config import DataConfig
from depthforge.data.base import read_rgb
from depthforge.data.pairs import IMAGE_SUFFIXES
from depthforge.data.transforms import model_input, to_size
from depthforge.metrics.protocols import check_scales



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
    x = model_input(image, data_cfg)
    total = None
    for s in scales:
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


def expand_inputs(inputs: list[str | Path]) -> list[Path]:
    """Files as given, folders expanded to their images (sorted); a missing path is an error naming it."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    if not paths:
        raise FileNotFoundError(f"no images found in {[str(i) for i in inputs]} (looked for {IMAGE_SUFFIXES})")
    return paths


class Predictor:
    """A loaded model plus the data geometry it was trained with."""

    def __init__(self, model: nn.Module, data_cfg: DataConfig, device: str | torch.device = "cpu",
                 flip: bool = False, scales: tuple[float, ...] = (1.0,)):
        self.model = model.to(device).eval()  # an nn.Module or an OnnxModel
        self.flip = flip
        self.scales = check_scales(scales)
        self.data_cfg = data_cfg
        self.device = torch.device(device)

    @torch.inference_mode()
    def batch(self, rgbs: list[np.ndarray]) -> list[np.ndarray]:
        """Depths (H, W) float32 metres for uint8 (H, W, 3) images of one size, run as one batch."""
        images = torch.stack([torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1) for rgb in rgbs])
        pred = predict_native(self.model, images.float().div(255).to(self.device), self.data_cfg, self.flip,
                              self.scales)
        return list(pred[:, 0].float().cpu().numpy())

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """Depth in metres (H, W) float32 for a uint8 (H, W, 3) RGB image."""
        return self.batch([rgb])[0]

    def predict_file(self, path: str | Path) -> np.ndarray:
        return self(read_rgb(Path(path)))

    def tiled(self, rgb: np.ndarray, window: tuple[int, int], overlap: float = 0.25, coarse_side: int = 512
              ) -> np.ndarray:
        """Depth for a large image through :func:`depthforge.inference.tiling.predict_tiled`."""
        from depthforge.inference.tiling import predict_tiled

        image = torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1).float().div(255)
        depth = predict_tiled(self.model, image, self.data_cfg, window, overlap, coarse_side, flip=self.flip,
                              scales=self.scales)
        return depth.numpy().astype(np.float32)
