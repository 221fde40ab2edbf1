"""Scoring on video sequences with ground truth: per-frame accuracy next to temporal consistency (TAE when the
sequence has poses and intrinsics, the pose-free flicker measure always), for each stabilisation mode."""

from __future__ import annotations

import numpy as np
import torch

from depthforge.evaluation.evaluator import Evaluator
from depthforge.evaluation.protocols import get_protocol
from depthforge.predict.predictor import Predictor
from depthforge.sources.loading import LoadedSource, protocol_for
from depthforge.video.stabilize import stabilize
from depthforge.metrics.temporal import flicker, tae

PER_FRAME = ("rmse", "abs_rel", "delta1")


def evaluate_sequence(loaded: LoadedSource, seq: dict, modes: tuple[str, ...] = ("none",), max_depth: float = 20.0,
                      flow: str = "farneback", device: str = "cpu") -> dict[str, dict]:
    """``{mode: {"rmse", "abs_rel", "delta1", "tae", "flicker"}}`` for a sequence from
    `load_sequence`; the model runs once, every mode filters its raw output.

    Per-frame metrics: the ``standard`` protocol capped at ``max_depth`` (a non-metric source aligned per frame as
    ``evaluate`` does), averaged over frames. TAE (x 100; needs ``K`` and ``poses``, else NaN) over pixels with
    ground truth in (0, max_depth]; flicker (x 100) over the pixels valid in every frame.
    """
    predictor = Predictor(loaded.model, loaded.cfg.data, device)
    raw = np.stack([predictor(rgb) for rgb in seq["rgb"]]).astype(np.float32)
    gt = seq["depth"]
    valid = np.isfinite(gt) & (gt > 0) & (gt <= max_depth)
    protocol, _ = protocol_for(get_protocol("standard", max_depth), loaded.kind)
    results = {}
    for mode in modes:
        if mode == "pose" and seq.get("K") is None:
            raise ValueError("--stabilize pose needs the camera: write the sequence's intrinsics.txt (fx fy cx cy)")
        if mode == "pose" and loaded.kind != "metric":
            raise ValueError(f"--stabilize pose makes 3D points from the depth, and this source predicts "
                             f"{loaded.kind} depth: use flow")
        out = stabilize(raw, mode, seq["rgb"], flow, k=seq.get("K"))
        evaluator = Evaluator(protocol)
        for pred, depth in zip(out, gt):
            evaluator.process(torch.from_numpy(pred)[None, None], torch.from_numpy(depth)[None, None])
        metrics = evaluator.compute()
        row = {k: metrics[k] for k in PER_FRAME}
        clipped = np.clip(out, 1e-3, max_depth)
        row["tae"] = (tae(clipped, gt, seq["K"], seq["poses"], valid) if seq.get("K") is not None
                      and seq.get("poses") is not None else float("nan"))
        row["flicker"] = flicker(clipped, valid.all(axis=0))
        results[mode] = row
    return results


def evaluate_sequences(specs: list[dict], folders: list[str], modes: tuple[str, ...] = ("none",),
                       max_depth: float | None = None, flow: str = "farneback", device: str = "cpu") -> list[dict]:
    """One row per source, sequence folder and stabilisation mode (``evaluate --sequence``); ``max_depth`` defaults
    to each source's own range."""
    from depthforge.data.sequence import load_sequence
    from depthforge.sources.loading import load_source

    rows = []
    for spec in specs:
        loaded = load_source(spec, device)
        for folder in folders:
            seq = load_sequence(folder)
            for mode, m in evaluate_sequence(loaded, seq, modes, max_depth or loaded.cfg.data.max_depth, flow,
                                             device).items():
                rows.append({"source": next(iter(spec.values())), "sequence": str(folder), "stabilize": mode,
                             "frames": len(seq["rgb"]), **m})
    return rows


def sequence_table(rows: list[dict]) -> str:
    """The rows of `evaluate_sequences` as a Markdown table."""
    lines = ["| source | sequence | stabilize | RMSE | AbsRel | delta1 | TAE | flicker |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['source']} | {r['sequence']} | {r['stabilize']} | {r['rmse']:.3f} | {r['abs_rel']:.4f} | "
              f"{r['delta1']:.3f} | {r['tae']:.3f} | {r['flicker']:.3f} |" for r in rows]
    return "\n".join(lines)
