"""Temporal consistency of a model on rendered sequences with known camera motion: per-frame accuracy and TAE,
without stabilisation, causal, offline, flow-guided and pose-guided (both causal), with the time per frame of each
as a ratio to the per-frame model.

    python benchmarks/video_temporal.py --checkpoint runs/cpu/checkpoints/last.ckpt --sequences 4 --frames 40

Sequences: ``depthforge.data.synthetic.render_sequence`` (street scenes at 144x256, the challenge data's size; the
camera walks forward 0.25 m a frame, turns and shakes a little); sky (100 m) and surfaces nearer than 0.5 m are left
out of every metric. Per-frame
metrics under the standard protocol (20 m cap, no alignment); TAE as Video Depth Anything computes it (one scale
and shift per clip in disparity, reprojection AbsRel both ways, x 100). Writes benchmarks/results/<--name>.* (default
video-temporal).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch

from _results import save_results  # benchmarks/_results.py (scripts run from the repository root)

from depthforge.data.synthetic import SKY_DEPTH, render_sequence
import depthforge
from depthforge.video.stabilize import CausalStabilizer, FlowStabilizer, stabilize_offline
from depthforge.metrics.temporal import tae


def per_frame(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, cap: float) -> dict:
    rmse, absrel = [], []
    for p, g, v in zip(pred, gt, valid):
        v = v & (g <= cap)
        p = np.clip(p[v], 1e-3, cap)
        rmse.append(np.sqrt(np.mean((p - g[v]) ** 2)))
        absrel.append(np.mean(np.abs(p - g[v]) / g[v]))
    return {"rmse": float(np.mean(rmse)), "abs_rel": float(np.mean(absrel))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--sequences", type=int, default=4)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--flow", default="farneback", help="optical flow of the flow- and pose-guided filters")
    parser.add_argument("--first-seed", type=int, default=100,
                        help="renderer seed of the first sequence (settings were chosen on 200 and up)")
    parser.add_argument("--name", default="video-temporal", help="results file name")
    args = parser.parse_args()
    pipeline = depthforge.load(args.checkpoint)
    predictor = pipeline.runner()  # raw per-frame depth: the filters below are measured on it
    cap = pipeline.config.data.max_depth
    totals: dict[str, dict[str, list]] = {m: {"rmse": [], "abs_rel": [], "tae": [], "seconds": []}
                                          for m in ("per-frame", "causal", "offline", "flow", "pose")}
    used, seed = [], args.first_seed
    while len(used) < args.sequences:
        seq = render_sequence(seed, args.frames, 144, 256)
        seed += 1
        gt, k, poses = seq["depth"], seq["K"], seq["poses"]
        # Sky, and surfaces nearer than 0.5 m are left out; a path that runs into a box (a frame with less than
        # half its pixels valid) is skipped: the renderer's camera does not avoid obstacles.
        valid = (gt < SKY_DEPTH) & (gt > 0.5)
        if valid.reshape(len(gt), -1).mean(1).min() < 0.5:
            continue
        used.append(seed - 1)
        start = time.perf_counter()
        raw = np.stack([predictor(rgb) for rgb in seq["rgb"]])
        model_s = time.perf_counter() - start
        start = time.perf_counter()
        causal = CausalStabilizer()
        causal_out = np.stack([causal(d) for d in raw])
        causal_s = model_s + time.perf_counter() - start
        start = time.perf_counter()
        offline_out = stabilize_offline(raw)
        offline_s = 2 * model_s + time.perf_counter() - start  # predict_video's offline mode runs the model twice
        outputs = [("per-frame", raw, model_s), ("causal", causal_out, causal_s), ("offline", offline_out, offline_s)]
        for name, k_filter in (("flow", None), ("pose", k)):
            start = time.perf_counter()
            filt = FlowStabilizer(flow=args.flow, k=k_filter)
            out = np.stack([filt(d, rgb) for d, rgb in zip(raw, seq["rgb"])])
            outputs.append((name, out, model_s + time.perf_counter() - start))
        for name, out, secs in outputs:
            scores = per_frame(out, gt, valid, cap)
            totals[name]["rmse"].append(scores["rmse"])
            totals[name]["abs_rel"].append(scores["abs_rel"])
            totals[name]["tae"].append(tae(np.clip(out, 1e-3, cap), gt, k, poses, valid & (gt <= cap)))
            totals[name]["seconds"].append(secs)
    base = sum(totals["per-frame"]["seconds"])
    rows = {name: {"rmse": float(np.mean(t["rmse"])), "abs_rel": float(np.mean(t["abs_rel"])),
                   "tae": float(np.mean(t["tae"])), "time_vs_per_frame": sum(t["seconds"]) / base}
            for name, t in totals.items()}
    table = "\n".join(["| mode | per-frame RMSE (m) | per-frame AbsRel | TAE | time per frame (x per-frame model) |",
                       "|---|---|---|---|---|"] + [
        f"| {n} | {r['rmse']:.3f} | {r['abs_rel']:.4f} | {r['tae']:.3f} | {r['time_vs_per_frame']:.3f} |"
        for n, r in rows.items()])
    print(table)
    meta = {"command": "python " + " ".join(sys.argv), "machine": f"{platform.machine()}, "
            f"{torch.get_num_threads()} threads", "sequences": args.sequences, "frames": args.frames,
            "size": "144x256", "cap_m": cap, "seeds": used, "flow": args.flow}
    save_results(args.name, table, meta, {"rows": rows, "per_sequence": totals})


if __name__ == "__main__":
    main()
