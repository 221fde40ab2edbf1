"""Run a model on images at their native resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from depthforge.config import DataConfig
from depthforge.data.base import read_rgb
from depthforge.data.pairs import IMAGE_SUFFIXES
from depthforge.data.transforms import model_input, to_size



def predict_native(model: nn.Module, image: torch.Tensor, data_cfg: DataConfig, flip: bool = False) -> torch.Tensor:
    """Depth (N, 1, H, W) for RGB (N, 3, H, W) in [0, 1]: fed at the training geometry, returned at input size.

    ``flip``: test-time augmentation, the mean of the prediction and the (un-flipped) prediction of the mirrored
    image, as ZoeDepth and BTS evaluate.
    """
    x = model_input(image, data_cfg)
    pred = model(x)
    if flip:
        pred = 0.5 * (pred + model(x.flip(-1)).flip(-1))
    return to_size(pred, tuple(image.shape[-2:]))


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
                 flip: bool = False):
        self.model = model.to(device).eval()  # an nn.Module or an OnnxModel
        self.flip = flip
        self.data_cfg = data_cfg
        self.device = torch.device(device)

    @torch.inference_mode()
    def batch(self, rgbs: list[np.ndarray]) -> list[np.ndarray]:
        """Depths (H, W) float32 metres for uint8 (H, W, 3) images of one size, run as one batch."""
        images = torch.stack([torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1) for rgb in rgbs])
        pred = predict_native(self.model, images.float().div(255).to(self.device), self.data_cfg, self.flip)
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
        depth = predict_tiled(self.model, image, self.data_cfg, window, overlap, coarse_side, flip=self.flip)
        return depth.numpy().astype(np.float32)
