"""An INT8 file made from an fp32 export and scored against it (``depthforge export --quantize int8``)."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from depthforge.config import Config
from depthforge.data import build_dataset
from depthforge.evaluation.protocols import get_protocol
from depthforge.evaluation.report import evaluate_sources
from depthforge.export.quantize import (blocks, calibration_images, quant_pre_process_model, quantize_onnx,
                                       quantize_openvino, record_accuracy, set_metadata)
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
    """How far the INT8 file's depth is from the fp32 file's on ``images``, as ``predict`` writes it: mean, 99th
    percentile and largest absolute difference in metres, and the mean difference relative to the fp32 depth."""
    from depthforge.predict import load

    a, b = load(str(fp32)), load(str(int8))
    diffs, depths = [], []
    for image in images:
        d32, d8 = a.predict(image).depth.astype(np.float64), b.predict(image).depth.astype(np.float64)
        diffs.append(np.abs(d8 - d32))
        depths.append(d32)
    mean = float(np.mean([d.mean() for d in diffs]))
    return {"n": len(images), "mean_abs_m": mean, "max_abs_m": float(max(d.max() for d in diffs)),
            "p99_abs_m": float(np.percentile(np.concatenate([d.ravel() for d in diffs]), 99)),
            "mean_rel": mean / max(float(np.mean([d.mean() for d in depths])), 1e-9)}


def drift_disagrees(calibration: dict, held_out: dict) -> bool:
    """Whether the held-out images tell another story than the calibration images: mean relative difference above
    both ``DISAGREE_RATIO`` times the calibration's and ``DISAGREE_FLOOR``."""
    return held_out["mean_rel"] > max(DISAGREE_RATIO * calibration["mean_rel"], DISAGREE_FLOOR)


def held_out_images(folder: str | Path | None, n: int = 8) -> tuple[list[np.ndarray], str]:
    """A few images unlike the training data: the first ``n`` of ``folder``, else `rendered_held_out`."""
    if folder is None:
        return rendered_held_out(), "rendered rooms and streets (seeds no training set uses)"
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:n]
    if not files:
        raise DataError(f"{folder}: no images to check the INT8 file on; give a folder of a few photos unlike the "
                        "training data (--check-images)")
    return [read_rgb(p) for p in files], str(folder)


# The sensitivity report scores on training images the calibration did not use (the val split stays for the final
# check); the automatic choice keeps the most sensitive blocks in fp32, this many at a time, until the budget is met.
SELECTION_N = 48
KEEP_STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)


def onnx_latency_ms(path: str | Path, runs: int = 10, size: tuple[int, int] = (144, 256)) -> float:
    """Median ONNX Runtime time (ms) of one image at ``size``, batch 1, after a warm-up."""
    from depthforge.export.onnx import OnnxModel, latency_ms

    return latency_ms(OnnxModel(path, threads=torch.get_num_threads()), size, runs)


def onnx_rmse(path: str | Path, samples, cfg: Config, protocol) -> float:
    """RMSE of an ONNX file on ``samples`` (a dataset) under ``protocol``."""
    from depthforge.evaluation.runner import model_predictor, run_evaluation
    from depthforge.export.onnx import OnnxModel

    return run_evaluation(samples, model_predictor(OnnxModel(path), cfg.data, protocol), protocol).compute()["rmse"]


@dataclass
class Sensitivity:
    """What INT8 costs block by block, and the blocks kept in fp32 to stay within an RMSE budget."""

    fp32_rmse: float
    blocks: list[dict]  # {block, nodes, rmse, delta}: only that block in INT8; most sensitive first
    steps: list[dict]  # {kept_fp32, blocks, rmse, delta}: every measured choice, in the order tried
    budget: float | None
    chosen: list[str]  # the blocks kept in fp32
    met: bool  # the chosen model's delta is within the budget (True when there is no budget)
    latency_ms: dict = field(default_factory=dict)  # ONNX Runtime, batch 1 at 144x256: fp32, int8_all, int8_chosen
    samples: str = ""
    kept_nodes: list[str] = field(default_factory=list)  # the chosen blocks' node names (quantize_onnx keep_fp32)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("fp32_rmse", "blocks", "steps", "budget", "chosen", "met",
                                              "latency_ms", "samples")}

    def table(self, top: int = 12) -> str:
        lines = [f"INT8 sensitivity on {self.samples} (RMSE change when only that block is INT8; fp32 RMSE "
                 f"{self.fp32_rmse:.4f}):"]
        lines += [f"  {b['delta']:+.4f} m  {b['block']} ({b['nodes']} nodes)" for b in self.blocks[:top]]
        if len(self.blocks) > top:
            lines.append(f"  ... {len(self.blocks) - top} more blocks, each {self.blocks[top]['delta']:+.4f} m or less")
        for step in self.steps:
            lines.append(f"  {step['kept_fp32']:3d} most sensitive blocks in fp32: RMSE {step['rmse']:.4f} "
                         f"({step['delta']:+.4f} m)")
        if self.budget is not None:
            verdict = "met" if self.met else "NOT met (the closest choice is kept)"
            lines.append(f"  budget {self.budget:g} m {verdict}: {len(self.chosen)} block(s) kept in fp32")
        lat = self.latency_ms
        if lat:
            lines.append(f"  ONNX Runtime, batch 1 at 144x256: fp32 {lat['fp32']:.1f} ms, all INT8 "
                         f"{lat['int8_all']:.1f} ms, chosen {lat['int8_chosen']:.1f} ms "
                         f"(x{lat['fp32'] / lat['int8_chosen']:.2f} of fp32, the choice costs "
                         f"x{lat['int8_chosen'] / lat['int8_all']:.2f} of all-INT8 time)")
        return "\n".join(lines)


def sensitivity(fp32: str | Path, cfg: Config, images: list[torch.Tensor], samples, protocol,
                budget: float | None = None, method: str = "minmax", where: str = "",
                latency_runs: int = 10) -> Sensitivity:
    """Score ``fp32`` on ``samples`` with each block (`blocks`) alone in INT8,
    then, with a ``budget`` (m of RMSE), keep the most sensitive blocks in fp32 (`KEEP_STEPS` at a time)
    until the whole model's INT8 RMSE is within it; the speed of the choice is measured against fp32 and all-INT8."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = onnx_rmse(fp32, samples, cfg, protocol)
        prepared = quant_pre_process_model(fp32, work / "prepared.onnx")  # once, for the many files below
        report = []
        nodes_of = blocks(prepared)
        for name, nodes in nodes_of.items():
            one = quantize_onnx(prepared, work / "block.onnx", cfg, "static", images, method, only=nodes,
                                preprocess=False)
            rmse = onnx_rmse(one, samples, cfg, protocol)
            report.append({"block": name, "nodes": len(nodes), "rmse": rmse, "delta": rmse - base})
        report.sort(key=lambda b: -b["delta"])
        steps, paths = [], {}
        for k in (0, *(k for k in KEEP_STEPS if k < len(report))) if budget is not None else (0,):
            kept = [b["block"] for b in report[:k]]
            path = quantize_onnx(prepared, work / f"keep{k}.onnx", cfg, "static", images, method,
                                 keep_fp32=[n for b in kept for n in nodes_of[b]], preprocess=False)
            rmse = onnx_rmse(path, samples, cfg, protocol)
            steps.append({"kept_fp32": k, "blocks": kept, "rmse": rmse, "delta": rmse - base})
            paths[k] = path
            if budget is not None and rmse - base <= budget:
                break
        within = [s for s in steps if budget is None or s["delta"] <= budget]
        best = within[0] if within else min(steps, key=lambda s: s["delta"])
        latency = {"fp32": onnx_latency_ms(fp32, latency_runs), "int8_all": onnx_latency_ms(paths[0], latency_runs),
                   "int8_chosen": onnx_latency_ms(paths[best["kept_fp32"]], latency_runs)}
    return Sensitivity(base, report, steps, budget, best["blocks"], bool(within), latency,
                       where or f"{len(samples)} images", [n for b in best["blocks"] for n in nodes_of[b]])


class _Numbered(torch.utils.data.Dataset):
    """A dataset whose samples are named by their position in it (stems repeat across KITTI drives and cameras)."""

    def __init__(self, samples):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        sample = self.samples[i]
        return {**sample, "meta": {**sample["meta"], "stem": str(i)}}


def image_rmse(runner, samples, cfg: Config, protocol, indices: list[int] | None = None) -> dict[int, float]:
    """Each image's RMSE of a model or exported runner on ``samples`` (or those of them at ``indices``) under
    ``protocol``, by its position in ``samples``; images without a valid pixel have none."""
    from depthforge.evaluation.runner import model_predictor, run_evaluation

    numbered = _Numbered(samples)
    chosen = numbered if indices is None else Subset(numbered, indices)
    rows = run_evaluation(chosen, model_predictor(runner, cfg.data, protocol), protocol).image_rows
    return {int(row["stem"]): row["rmse"] for row in rows}


def change_bound(changes: list[float]) -> float:
    """The upper end of the two-sigma (~95 %) confidence interval of the mean of per-image RMSE changes: what an
    INT8 choice may cost on images like these, not only on these (the mean of a few dozen images under-reads it)."""
    d = np.asarray(changes, dtype=np.float64)
    return float(d.mean() + (2 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0))


def openvino_int8(fp32: Path, out: Path, cfg: Config, images: list[torch.Tensor], samples=None, where: str = "",
                  protocol=None, budget: float | None = None) -> tuple[Path, dict | None]:
    """The OpenVINO INT8 IR of ``fp32`` (`quantize_openvino`); with a ``budget``
    (m), NNCF's accuracy control keeps layers in fp32 until the `change_bound` of the per-image RMSE change on
    ``samples`` is within it, and the choice's own numbers there are returned (and stored in the file)."""
    from depthforge.export.onnx import OpenVINOModel

    if budget is None:
        return quantize_openvino(fp32, out, cfg, images), None
    base = image_rmse(OpenVINOModel(fp32), samples, cfg, protocol)
    if not base:
        raise DataError(f"{where}: no valid depth pixel in any image to score the INT8 choice on")

    def pessimistic_rmse(runner, indices: list[int]) -> float:  # the fp32 mean plus the change's upper bound
        scored = image_rmse(runner, samples, cfg, protocol, indices)
        return float(np.mean([base[k] for k in scored])) + change_bound([v - base[k] for k, v in scored.items()])

    int8 = quantize_openvino(fp32, out, cfg, images, pessimistic_rmse, budget, sorted(base))  # scored images only
    rmse = image_rmse(OpenVINOModel(int8), samples, cfg, protocol)
    bound = change_bound([v - base[k] for k, v in rmse.items()])
    selection = {"samples": where, "protocol": protocol.name, "budget_m": budget, "bound_m": bound,
                 "fp32_rmse": float(np.mean(list(base.values()))), "int8_rmse": float(np.mean(list(rmse.values()))),
                 "met": bound <= budget}
    set_metadata(int8, {"depthforge_selection": json.dumps(selection)})
    return int8, selection


@dataclass
class Quantized:
    path: Path
    calibration_images: int
    cards: list[dict]  # fp32, int8 (empty when not scored)
    record: dict | None  # what was stored inside the INT8 file: both metrics and their delta
    drift: dict | None = None  # INT8 vs fp32 depth on the calibration and on held-out images (also stored inside)
    sensitivity: Sensitivity | None = None  # the per-block report and the blocks kept in fp32 (also stored inside)
    selection: dict | None = None  # OpenVINO with a budget: fp32 and INT8 RMSE on the images the choice was made on


def quantize_and_check(fp32: str | Path, cfg: Config, out: str | Path | None = None, mode: str = "static",
                       calibration: str | Path | None = None, n: int = 200, method: str = "minmax",
                       exclude: str = "none", protocol: str = "standard", split: str | None = None,
                       check: bool = True, command: str = "", check_images: str | Path | None = None,
                       report_sensitivity: bool = False, max_rmse_delta: float | None = None,
                       selection_n: int = SELECTION_N) -> Quantized:
    """INT8 of ``fp32`` (an ONNX file, or an OpenVINO IR: then with NNCF, `openvino_int8`) at ``out`` (default
    ``<fp32 stem>.int8.onnx`` / ``.xml``), calibrated (static mode) on ``calibration`` images or ``n`` images spread
    over the model's training split. With ``check``: both files are scored on ``split``
    (default the model's val split) under ``protocol``, and their depth compared on (up to 16 of) the calibration
    images, on (up to 16 of) the ``split`` images and on held-out images unlike the training data (``check_images``, else rendered ones); a warning says
    when the two comparisons disagree. Metrics, deltas and the comparison are stored in the INT8 file.

    ``report_sensitivity`` / ``max_rmse_delta`` (static): the per-block report (`sensitivity`) on
    ``selection_n`` training images the calibration did not use, and with a budget the blocks it keeps in fp32."""
    fp32 = Path(fp32)
    openvino = fp32.suffix == ".xml"
    if openvino and (mode != "static" or method != "minmax" or exclude != "none" or report_sensitivity):
        raise ValueError("OpenVINO INT8 (NNCF) is static, min-max calibrated and chooses its fp32 layers itself "
                         "with --max-rmse-delta: drop --quant-mode / --calibration-method / --quant-exclude / "
                         "--sensitivity, or export --format onnx for ONNX Runtime's INT8")
    images, used = None, []
    if mode == "static":
        if calibration:
            images = calibration_images(calibration, n)
        else:  # images spread over the model's own training split (its first ones are often a single scene)
            train_set = build_dataset(cfg.data, cfg.data.train_split, train=False)
            used = spread(len(train_set), n)
            images = [train_set[i]["image"] for i in used]
    report, selection = None, None
    if report_sensitivity or max_rmse_delta is not None:
        if mode != "static":
            raise ValueError("the sensitivity report and --max-rmse-delta need static INT8 (--quant-mode static)")
        samples, where = _selection(cfg, used, selection_n)
        scored = get_protocol(protocol)
        if not openvino:  # (OpenVINO: NNCF's accuracy control chooses, below)
            report = sensitivity(fp32, cfg, images, samples, scored, max_rmse_delta, method, where)
            log.info("%s", report.table())
    if openvino:
        chosen_on = (samples, where, scored) if max_rmse_delta is not None else (None, "", None)
        int8, selection = openvino_int8(fp32, out or fp32.with_name(fp32.stem + ".int8.xml"), cfg, images,
                                        *chosen_on, max_rmse_delta)
    else:
        keep = report.kept_nodes if report and max_rmse_delta is not None else []
        int8 = quantize_onnx(fp32, out or fp32.with_name(fp32.stem + ".int8.onnx"), cfg, mode, images, method,
                             exclude, keep_fp32=keep)
    if report is not None:
        set_metadata(int8, {"depthforge_sensitivity": json.dumps(report.to_dict())})
    if not check:
        return Quantized(int8, len(images or []), [], None, sensitivity=report, selection=selection)
    reference = images
    if reference is None:  # dynamic INT8 had no calibration set: the training images stand in for it
        train_set = build_dataset(cfg.data, cfg.data.train_split, train=False)
        reference = [train_set[i]["image"] for i in range(min(16, len(train_set)))]
    held, where = held_out_images(check_images)
    val_set = build_dataset(cfg.data, split or cfg.data.val_split, train=False)
    drift = {"calibration": depth_drift(fp32, int8, [_as_uint8(x) for x in reference[:16]]),
             "val": depth_drift(fp32, int8, [_as_uint8(val_set[i]["image"]) for i in range(min(16, len(val_set)))]),
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
    return Quantized(int8, len(images or []), cards, record, drift, report, selection)


def spread(length: int, n: int, skip: list[int] | tuple = ()) -> list[int]:
    """``n`` indices of ``range(length)`` spread evenly over it, none of ``skip`` (all that are left if fewer)."""
    skipped = set(skip)
    pool = [i for i in range(length) if i not in skipped]
    if n >= len(pool):
        return pool
    return [pool[round(k)] for k in np.linspace(0, len(pool) - 1, n)] if n > 1 else pool[:n]


def _selection(cfg: Config, used: list[int], n: int) -> tuple[object, str]:
    """The images an INT8 choice is scored on (the sensitivity report, OpenVINO's accuracy control): ``n`` training
    images spread over the split, none of the calibration's ``used`` ones (the val split stays for the final check)."""
    train_set = build_dataset(cfg.data, cfg.data.train_split, train=False)
    indices = spread(len(train_set), n, used)
    if not indices:
        raise DataError(f"{cfg.data.root}: the training split has {len(train_set)} images and calibration takes "
                        f"{len(used)}: none is left to score the INT8 choice on; lower --calibration-n")
    return Subset(train_set, indices), (f"{len(indices)} training images ({cfg.data.train_split} "
                                        f"#{indices[0]}-{indices[-1]} spread, none used for calibration)")
