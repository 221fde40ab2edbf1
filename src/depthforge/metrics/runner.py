"""Score a model, or a folder of saved predictions, on a data set split under a protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from depthforge.config import DataConfig
from depthforge.data import DepthDataset, build_loader
from depthforge.data.transforms import to_size
from depthforge.inference.predictor import predict_native
from depthforge.metrics.evaluator import Evaluator
from depthforge.metrics.protocols import Protocol


@torch.inference_mode()
def evaluate_model(model: nn.Module, dataset: DepthDataset, data_cfg: DataConfig, protocol: Protocol,
                   device: str | torch.device = "cpu") -> dict:
    """Predict every sample in order (batches of ``protocol.batch_size``) and score at native resolution."""
    evaluator = Evaluator(protocol)
    model = model.to(device).eval()
    for batch in build_loader(dataset, protocol.batch_size, shuffle=False):
        pred = predict_native(model, batch["image"].to(device), data_cfg)
        evaluator.process(pred, batch["depth"], batch["mask"])
    return evaluator.result()


def load_prediction(path: Path) -> torch.Tensor:
    """A saved prediction (HxW or 1xHxW float metres) as (1, 1, H, W)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: prediction missing; save one <stem>.npy (metres, HxW) per target image")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: unreadable .npy ({err}); save predictions with numpy.save") from err
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"{path}: prediction must be HxW or 1xHxW, got shape {arr.shape}")
    return torch.from_numpy(arr.astype(np.float32))[None, None]


def evaluate_predictions(pred_dir: str | Path, dataset: DepthDataset, protocol: Protocol) -> dict:
    """Score ``pred_dir/<stem>.npy`` against ``dataset``; predictions are resized to each target, never the reverse."""
    pred_dir = Path(pred_dir)
    evaluator = Evaluator(protocol)
    for batch in build_loader(dataset, protocol.batch_size, shuffle=False):
        size = tuple(batch["depth"].shape[-2:])
        preds = [to_size(load_prediction(pred_dir / f"{stem}.npy"), size) for stem in batch["meta"]["stem"]]
        evaluator.process(torch.cat(preds), batch["depth"], batch["mask"])
    return evaluator.result()
