"""An INT8 file made from an fp32 export and scored against it (``depthforge export --quantize int8``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from depthforge.config import Config
from depthforge.data import build_dataset
from depthforge.evaluation.protocols import get_protocol
from depthforge.evaluation.report import evaluate_sources
from depthforge.export.quantize import calibration_images, quantize_onnx, record_accuracy


@dataclass
class Quantized:
    path: Path
    calibration_images: int
    cards: list[dict]  # fp32, int8 (empty when not scored)
    record: dict | None  # what was stored inside the INT8 file: both metrics and their delta


def quantize_and_check(fp32: str | Path, cfg: Config, out: str | Path | None = None, mode: str = "static",
                       calibration: str | Path | None = None, n: int = 200, method: str = "minmax",
                       exclude: str = "none", protocol: str = "standard", split: str | None = None,
                       check: bool = True, command: str = "") -> Quantized:
    """INT8 of ``fp32`` at ``out`` (default ``<fp32 stem>.int8.onnx``), calibrated (static mode) on ``calibration``
    images or the first ``n`` of the model's training split; with ``check`` both files are scored on ``split``
    (default the model's val split) under ``protocol`` and the fp32 / int8 metrics and deltas stored in the file."""
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
    scored = get_protocol(protocol)
    cards = evaluate_sources([{"onnx": str(fp32)}, {"onnx": str(int8)}], scored, split=split, command=command)
    record = record_accuracy(int8, cards[0]["metrics"], cards[1]["metrics"], scored.name, cards[0]["data"]["split"],
                             cards[0]["n"])
    return Quantized(int8, len(images or []), cards, record)
