"""Score a model, or a folder of saved predictions, on a data set split under a protocol."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from depthforge.config import DataConfig
from depthforge.data import DepthDataset, build_loader
from depthforge.data.transforms import to_size
from depthforge.predict.tta import predict_native, tta_spread
from depthforge.evaluation.evaluator import Evaluator
from depthforge.evaluation.protocols import Protocol

Predict = Callable[[dict], torch.Tensor]


def model_predictor(model: nn.Module, data_cfg: DataConfig, protocol: Protocol, device: str | torch.device = "cpu",
                    uncertainty: str | None = None) -> Predict:
    """Batch -> native-resolution prediction for a model (with the protocol's flip and multi-scale TTA).

    ``uncertainty``: ``model`` (the model's own, e.g. a Laplace head; no TTA) or ``tta`` (the spread of the TTA
    passes): the predictor then returns ``(depth, uncertainty)``.
    """
    model = model.to(device).eval()
    if uncertainty == "model" and not getattr(model, "uncertainty_kind", None):
        raise ValueError("this source predicts no uncertainty of its own (a Laplace head or a Marigold ensemble "
                         "does); use --uncertainty tta with --flip-tta or --tta-scales")
    if uncertainty == "model" and (protocol.flip_tta or len(protocol.tta_scales) > 1):
        raise ValueError("--uncertainty model scores the model's own uncertainty: drop the TTA options")

    def one(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        depth = predict_native(model, image, data_cfg, protocol.flip_tta, protocol.tta_scales)
        if uncertainty == "tta":
            return depth, tta_spread(model, image, data_cfg, protocol.flip_tta, protocol.tta_scales)
        if uncertainty == "model":
            if getattr(model, "last_uncertainty", None) is None:
                raise ValueError("the source gave no uncertainty for this batch (Marigold: --ensemble-size 3 or more)")
            return depth, to_size(model.last_uncertainty, tuple(image.shape[-2:]))
        return depth, None

    @torch.inference_mode()
    def predict(batch: dict):
        image = batch["image"].to(device)
        if "size" not in batch["meta"]:
            depth, unc = one(image)
        else:
            depth = torch.zeros(image.shape[0], 1, *image.shape[-2:], device=image.device)
            unc = torch.zeros_like(depth) if uncertainty else None
            for i, (h, w) in enumerate(batch["meta"]["size"]):  # each image alone, at its own size
                d, u = one(image[i:i + 1, :, :h, :w])
                depth[i, :, :h, :w] = d[0]
                if unc is not None:
                    unc[i, :, :h, :w] = u[0]
        return (depth.cpu(), unc.cpu()) if uncertainty else depth.cpu()

    return predict


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


def folder_predictor(pred_dir: str | Path) -> Predict:
    """Batch -> predictions read from ``pred_dir/<stem>.npy``, resized to each target (never the reverse)."""
    pred_dir = Path(pred_dir)

    def predict(batch: dict) -> torch.Tensor:
        full = tuple(batch["depth"].shape[-2:])
        sizes = batch["meta"].get("size") or [full] * len(batch["meta"]["stem"])
        out = torch.zeros(len(sizes), 1, *full)
        for i, (stem, (h, w)) in enumerate(zip(batch["meta"]["stem"], sizes)):
            out[i, :, :h, :w] = to_size(load_prediction(pred_dir / f"{stem}.npy"), (h, w))[0]
        return out

    return predict


def run_evaluation(dataset: DepthDataset, predict: Predict, protocol: Protocol) -> Evaluator:
    """Score every sample in order, in batches of ``protocol.batch_size`` (the last partial batch kept)."""
    return run_evaluations(dataset, predict, [protocol])[0]


def run_evaluations(dataset: DepthDataset, predict: Predict, protocols: list[Protocol],
                    shard: tuple[int, int] | None = None) -> list[Evaluator]:
    """Score every sample under each protocol from one prediction pass (the predictor's TTA is its own: the
    protocols are scoring rules here). A per-batch protocol's batches are the loader's, so those must agree.

    ``shard=(rank, world)`` (an initialised torch.distributed group, e.g. gloo under torchrun): this process scores
    every world-th batch of the one-process order, then every rank gathers all batches' scores and merges them in
    that order, so each rank returns the one-process numbers exactly (the course's batches stay the course's)."""
    batch = {p.batch_size for p in protocols if p.per_batch} or {protocols[0].batch_size}
    if len(batch) > 1:
        raise ValueError(f"per-batch protocols with different batch sizes {sorted(batch)} cannot share one pass; "
                         "evaluate them separately")
    evaluators = [Evaluator(p) for p in protocols]
    parts: dict[int, list[Evaluator]] = {}
    for index, loaded in enumerate(build_loader(dataset, batch.pop(), shuffle=False)):
        if shard is not None and index % shard[1] != shard[0]:
            continue
        out = predict(loaded)
        pred, unc = out if isinstance(out, tuple) else (out, None)  # (depth, uncertainty) when one is scored
        scoring = evaluators if shard is None else [Evaluator(p) for p in protocols]
        for evaluator in scoring:
            evaluator.process(pred, loaded["depth"], loaded["mask"], list(loaded["meta"]["stem"]),
                              loaded["meta"].get("size"), uncertainty=unc)
        if shard is not None:
            parts[index] = scoring
    if shard is None:
        return evaluators
    import torch.distributed as dist

    gathered: list[dict[int, list[Evaluator]]] = [{} for _ in range(shard[1])]
    dist.all_gather_object(gathered, parts)
    everything = {index: part for ranked in gathered for index, part in ranked.items()}
    for i, evaluator in enumerate(evaluators):
        evaluator.merge([everything[index][i] for index in sorted(everything)])
    return evaluators
