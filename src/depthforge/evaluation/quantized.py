"""An INT8 file made from an fp32 export and scored against it (``depthforge export --quantize int8``)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depthforge.config import Config
from depthforge.data import build_dataset
from depthforge.evaluation.protocols import get_protocol
from depthforge.evaluation.report import evaluate_sources
from depthforge.export.quantize import calibration_images, quantize_onnx, record_accuracy, set_metadata
from depthforge.io import IMAGE_SUFFIXES, DataError, read_rgb

log = logging.getLogger(__name__)
# Held-out images: how many rendered ones stand in for "unlike the training data" when no folder is given, and how
# much worse than on its calibration images the INT8 file may be there before it is reported as disagreeing.
HELD_OUT_RENDERED = 4
DISAGREE_RATIO, DISAGREE_FLOOR = 2.0, 0.02


def rendered_held_out(n: int = HELD_OUT_RENDERED, size: tuple[int, int] = (240, 320)) -> list[np.ndarray]:
    """Images no training set holds: rooms and streets from the procedural renderer with seeds of their own."""
    from depthforge.data.synthetic import SyntheticScenes

    return [SyntheticScenes(1, *size, seed=90_001 + i, scene=("room", "street")[i % 2]).get_color(0)
            for i in range(n)]


def _as_uint8(image) -> np.ndarray:
    """A (3, H, W) tensor in [0, 1] (a calibration sample) as the (H, W, 3) uint8 image a user would give."""
    return (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def depth_drift(fp32: str | Path, int8: str | Path, images: list[np.ndarray]) -> dict:
    """How far the INT8 file's depth is from the fp32 file's on ``images``, as ``predict`` writes it: mean and
    largest absolute difference in metres, and the mean difference relative to the fp32 depth."""
    from depthforge.predict import load

    a, b = load(str(fp32)), load(str(int8))
    diffs, depths = [], []
    for image in images:
        d32, d8 = a.predict(image).depth.astype(np.float64), b.predict(image).depth.astype(np.float64)
        diffs.append(np.abs(d8 - d32))
        depths.append(d32)
    mean = float(np.mean([d.mean() for d in diffs]))
    return {"n": len(images), "mean_abs_m": mean, "max_abs_m": float(max(d.max() for d in diffs)),
            "mean_rel": mean / max(float(np.mean([d.mean() for d in depths])), 1e-9)}


def drift_disagrees(calibration: dict, held_out: dict) -> bool:
    """Whether the held-out images tell another story than the calibration images: mean relative difference above
    both ``DISAGREE_RATIO`` times the calibration's and ``DISAGREE_FLOOR``."""
    return held_out["mean_rel"] > max(DISAGREE_RATIO * calibration["mean_rel"], DISAGREE_FLOOR)


def held_out_images(folder: str | Path | None, n: int = 8) -> tuple[list[np.ndarray], str]:
    """A few images unlike the training data: the first ``n`` of ``folder``, else :func:`rendered_held_out`."""
    if folder is None:
        return rendered_held_out(), "rendered rooms and streets (seeds no training set uses)"
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:n]
    if not files:
        raise DataError(f"{folder}: no images to check the INT8 file on; give a folder of a few photos unlike the "
                        "training data (--check-images)")
    return [read_rgb(p) for p in files], str(folder)


@dataclass
class Quantized:
    path: Path
    calibration_images: int
    cards: list[dict]  # fp32, int8 (empty when not scored)
    record: dict | None  # what was stored inside the INT8 file: both metrics and their delta
    drift: dict | None = None  # INT8 vs fp32 depth on the calibration and on held-out images (also stored inside)


def quantize_and_check(fp32: str | Path, cfg: Config, out: str | Path | None = None, mode: str = "static",
                       calibration: str | Path | None = None, n: int = 200, method: str = "minmax",
                       exclude: str = "none", protocol: str = "standard", split: str | None = None,
                       check: bool = True, command: str = "", check_images: str | Path | None = None) -> Quantized:
    """INT8 of ``fp32`` at ``out`` (default ``<fp32 stem>.int8.onnx``), calibrated (static mode) on ``calibration``
    images or the first ``n`` of the model's training split. With ``check``: both files are scored on ``split``
    (default the model's val split) under ``protocol``, and their depth compared on (up to 16 of) the calibration
    images and on held-out images unlike the training data (``check_images``, else rendered ones); a warning says
    when the two comparisons disagree. Metrics, deltas and the comparison are stored in the INT8 file."""
    fp32 = Path(fp32)
    images = None
    if mode == "static":
        if calibration:
            images = calibration_images(calibration, n)
        else:  # the first images of the model's own training split
            train_set = build_dataset(cfg.data, cfg.data.train_split, train=False)
            images = [train_set[i]["image"] for i in range(min(n, len(train_set)))]
    int8 = quantize_onnx(fp32, out or fp32.with_name(fp32.stem + ".int8.onnx"), cfg, mode, images, method, exclude)
    if not check:
        return Quantized(int8, len(images or []), [], None)
    reference = images
    if reference is None:  # dynamic INT8 had no calibration set: the training images stand in for it
        train_set = build_dataset(cfg.data, cfg.data.train_split, train=False)
        reference = [train_set[i]["image"] for i in range(min(16, len(train_set)))]
    held, where = held_out_images(check_images)
    drift = {"calibration": depth_drift(fp32, int8, [_as_uint8(x) for x in reference[:16]]),
             "held_out": {**depth_drift(fp32, int8, held), "images": where}}
    drift["disagree"] = drift_disagrees(drift["calibration"], drift["held_out"])
    set_metadata(int8, {"depthforge_int8_drift": json.dumps(drift)})
    if drift["disagree"]:
        c, h = drift["calibration"], drift["held_out"]
        log.warning("%s: INT8 depth differs from fp32 by %.1f %% (max %.2f m) on held-out images (%s), against "
                    "%.1f %% on its calibration images: the val-split check does not speak for images unlike the "
                    "training data; try --quant-exclude decoder, --calibration-method percentile, or calibrate on "
                    "images like yours (--calibration)", int8, 100 * h["mean_rel"], h["max_abs_m"], where,
                    100 * c["mean_rel"])
    scored = get_protocol(protocol)
    cards = evaluate_sources([{"onnx": str(fp32)}, {"onnx": str(int8)}], scored, split=split, command=command)
    record = record_accuracy(int8, cards[0]["metrics"], cards[1]["metrics"], scored.name, cards[0]["data"]["split"],
                             cards[0]["n"])
    return Quantized(int8, len(images or []), cards, record, drift)
