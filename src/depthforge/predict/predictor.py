"""A loaded model as a batch runner on uint8 images: the training geometry, TTA, tiling and what a source returns
beside depth (uncertainty, Depth Pro's focal length). `Pipeline` is built on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from depthforge.config import DataConfig
from depthforge.data.transforms import to_size
from depthforge.predict.tta import check_scales, predict_native, tta_spread
from depthforge.predict.tiling import predict_tiled
from depthforge.io import read_rgb


class Predictor:
    """A loaded model plus the data geometry it was trained with."""

    def __init__(self, model: nn.Module, data_cfg: DataConfig, device: str | torch.device = "cpu",
                 flip: bool = False, scales: tuple[float, ...] = (1.0,), uncertainty: str | None = None):
        self.model = model.to(device).eval()  # an nn.Module or an OnnxModel
        self.flip = flip
        self.scales = check_scales(scales)
        self.data_cfg = data_cfg
        self.device = torch.device(device)
        self.kind = getattr(model, "kind", "metric")
        self.extras: list[dict] = []
        if uncertainty not in (None, "model", "tta"):
            raise ValueError(f"uncertainty '{uncertainty}': use model or tta")
        if uncertainty == "tta" and len(self.scales) * (2 if flip else 1) < 2:
            raise ValueError("a TTA uncertainty needs flip and/or several scales (--flip-tta, --tta-scales)")
        self.uncertainty = uncertainty
        self._images: torch.Tensor | None = None

    @torch.inference_mode()
    def batch(self, rgbs: list[np.ndarray]) -> list[np.ndarray]:
        """Depths (H, W) float32 metres for uint8 (H, W, 3) images of one size, run as one batch."""
        images = torch.stack([torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1) for rgb in rgbs])
        self._images = images.float().div(255).to(self.device)
        pred = predict_native(self.model, self._images, self.data_cfg, self.flip, self.scales)
        self.extras = self._extras(len(rgbs), tuple(pred.shape[-2:]))
        return list(pred[:, 0].float().cpu().numpy())

    def _extras(self, n: int, size: tuple[int, int]) -> list[dict]:
        """What a source returned beside depth in its last call, per image: its own uncertainty (``uncertainty``,
        HxW, and ``uncertainty_kind``: Marigold's ensemble spread, a Laplace head's standard deviation), or with
        ``uncertainty="tta"`` the spread of the TTA passes; Depth Pro's focal length in pixels (``focal_px``)."""
        extras: list[dict] = [{} for _ in range(n)]
        tta = len(self.scales) > 1 or self.flip
        unc = getattr(self.model, "last_uncertainty", None) if not tta else None  # a TTA run: the last pass's only
        kind = getattr(self.model, "uncertainty_kind", "model's own")
        if self.uncertainty == "tta" and self._images is not None:
            unc = tta_spread(self.model, self._images, self.data_cfg, self.flip, self.scales)
            kind = f"spread (std, metres) of {len(self.scales) * (2 if self.flip else 1)} TTA passes"
        if unc is not None:
            unc = to_size(unc.float().cpu(), size)
            for i in range(n):
                extras[i]["uncertainty"] = unc[i, 0].numpy()
                extras[i]["uncertainty_kind"] = kind
        for i, extra in enumerate(getattr(self.model, "last_extra", None) or []):
            if "focal_length" in extra and i < n:
                extras[i]["focal_px"] = float(extra["focal_length"])
        return extras

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """Depth in metres (H, W) float32 for a uint8 (H, W, 3) RGB image."""
        return self.batch([rgb])[0]

    def predict_file(self, path: str | Path) -> np.ndarray:
        return self(read_rgb(Path(path)))

    def tiled(self, rgb: np.ndarray, window: tuple[int, int], overlap: float = 0.25, coarse_side: int = 512
              ) -> np.ndarray:
        """Depth for a large image through `depthforge.predict.tiling.predict_tiled`."""
        image = torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1).float().div(255)
        depth = predict_tiled(self.model, image, self.data_cfg, window, overlap, coarse_side, flip=self.flip,
                              scales=self.scales)
        return depth.numpy().astype(np.float32)
