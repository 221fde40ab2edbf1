"""Where a model's squared error comes from on the challenge val split: near depth edges, or by depth range.

    python benchmarks/error_analysis.py --data DATA/DepthEstimationUnreal \
        --checkpoint runs/bench/cpu-lite2-unet-90min/checkpoints/last.ckpt [--flip]

Targets are clipped to [0, 20] m and predictions scored as they are (the `challenge` protocol's pixel values); the
error is pooled over all val pixels (not per batch), so its RMSE differs slightly from the protocol's per-batch
mean. A pixel is "within r px of a depth edge" when the ground truth in its (2r+1)x(2r+1) neighbourhood spans more
than 3 m. Also: the far-field pixels predicted nearer than 15 m, and the challenge protocol's RMSE and SSIM as
they are and with every prediction above 19.5 m set to the 20 m cap (what a head that saturates exactly at the cap
could at best gain: the course's SSIM, computed on metres with tiny constants, punishes any ripple in the flat
clipped far field). Prints a table per checkpoint and writes benchmarks/results/error-analysis-<run>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from depthforge.data import build_loader
from depthforge.evaluation import get_protocol
from depthforge.evaluation.evaluator import Evaluator
from depthforge.evaluation.report import resolve_source

EDGE_JUMP_M = 3.0
RADII = (1, 2, 4)
DEPTH_RANGES = ((0, 5), (5, 10), (10, 15), (15, 20), (20, 20))  # (20, 20): the clipped far field / sky
MISTAKEN_NEAR_M = 15.0  # far-field pixels predicted nearer than this: the far field taken for an object
SATURATED_M = 19.9  # the far field predicted (all but) at the cap
SNAP_ABOVE_M = 19.5  # a censored/saturating head's best case: predictions above this set to the cap


def near_edge(gt: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels whose (2r+1)^2 neighbourhood of ground truth spans more than EDGE_JUMP_M metres."""
    k = 2 * radius + 1
    high = F.max_pool2d(gt, k, 1, radius)
    low = -F.max_pool2d(-gt, k, 1, radius)
    return (high - low) > EDGE_JUMP_M


def in_range(gt: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return gt >= hi if lo == hi else (gt >= lo) & (gt < hi)


def analyse(checkpoint: str, data: str, flip: bool) -> dict:
    protocol = dataclasses.replace(get_protocol("challenge"), flip_tta=flip)
    predict, dataset, *_ = resolve_source({"checkpoint": checkpoint}, data, "val", protocol, "cpu")
    groups = {f"within {r} px of a depth edge": (lambda g, p, r=r: near_edge(g, r)) for r in RADII}
    groups |= {(f"gt = {lo:g} m (clipped far field)" if lo == hi else f"gt in [{lo:g}, {hi:g}) m"):
               (lambda g, p, lo=lo, hi=hi: in_range(g, lo, hi)) for lo, hi in DEPTH_RANGES}
    groups[f"gt = 20 m, predicted < {MISTAKEN_NEAR_M:g} m"] = \
        lambda g, p: (g >= protocol.max_depth) & (p < MISTAKEN_NEAR_M)
    groups[f"gt = 20 m, predicted above {SATURATED_M:g} m"] = \
        lambda g, p: (g >= protocol.max_depth) & (p > SATURATED_M)
    sums = {name: [0.0, 0] for name in groups}
    total_sq, total_n, snapped_sq = 0.0, 0, 0.0
    as_is, snapped_scores = Evaluator(protocol), Evaluator(protocol)
    for batch in build_loader(dataset, protocol.batch_size, shuffle=False):
        gt = batch["depth"].double().clamp(0, protocol.max_depth)
        pred = predict(batch).double()
        sq = (pred - gt) ** 2
        total_sq += sq.sum().item()
        total_n += sq.numel()
        snapped = torch.where(pred > SNAP_ABOVE_M, torch.full_like(pred, protocol.max_depth), pred)
        snapped_sq += ((snapped - gt) ** 2).sum().item()
        as_is.process(pred, batch["depth"], batch["mask"])
        snapped_scores.process(snapped, batch["depth"], batch["mask"])
        for name, select in groups.items():
            m = select(gt, pred)
            sums[name][0] += sq[m].sum().item()
            sums[name][1] += int(m.sum())
    rows = []
    for name, (s, n) in sums.items():
        rows.append({"pixels": name, "pixel_share": n / total_n, "sq_error_share": s / total_sq,
                     "rmse_inside": (s / max(n, 1)) ** 0.5,
                     "pooled_rmse_if_zero_there": ((total_sq - s) / total_n) ** 0.5})
    return {"checkpoint": checkpoint, "flip_tta": flip, "pooled_rmse": (total_sq / total_n) ** 0.5,
            "edge_jump_m": EDGE_JUMP_M, "rows": rows,
            f"pooled_rmse_if_pred_above_{SNAP_ABOVE_M:g}_set_to_cap": (snapped_sq / total_n) ** 0.5,
            **{key: {k: metrics[k] for k in ("rmse", "ssim")} for key, metrics in
               (("challenge", as_is.compute()),
                (f"challenge_if_pred_above_{SNAP_ABOVE_M:g}_set_to_cap", snapped_scores.compute()))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="unpacked DepthEstimationUnreal folder")
    parser.add_argument("--checkpoint", required=True, nargs="+")
    parser.add_argument("--flip", action="store_true", help="flip test-time augmentation")
    args = parser.parse_args()
    out_dir = Path("benchmarks/results")
    out_dir.mkdir(parents=True, exist_ok=True)
    for checkpoint in args.checkpoint:
        result = analyse(checkpoint, args.data, args.flip)
        result["command"] = "python " + " ".join(sys.argv)
        result["machine"] = f"{platform.machine()}, torch {torch.__version__}"
        run = Path(checkpoint).parent.parent.name
        (out_dir / f"error-analysis-{run}.json").write_text(json.dumps(result, indent=2))
        print(f"\n{run} ({Path(checkpoint).name}, flip TTA {args.flip}): pooled RMSE {result['pooled_rmse']:.3f} m")
        print("| pixels | share of pixels | share of squared error | RMSE there (m) | pooled RMSE if zero there |")
        print("|---|---|---|---|---|")
        for r in result["rows"]:
            print(f"| {r['pixels']} | {r['pixel_share']:.1%} | {r['sq_error_share']:.1%} | {r['rmse_inside']:.2f} | "
                  f"{r['pooled_rmse_if_zero_there']:.3f} |")
        snap = result[f"pooled_rmse_if_pred_above_{SNAP_ABOVE_M:g}_set_to_cap"]
        print(f"pooled RMSE with predictions above {SNAP_ABOVE_M:g} m set to the cap: {snap:.3f} m")
        for label, key in (("as predicted", "challenge"),
                           (f"predictions above {SNAP_ABOVE_M:g} m set to the cap",
                            f"challenge_if_pred_above_{SNAP_ABOVE_M:g}_set_to_cap")):
            print(f"challenge protocol, {label}: RMSE {result[key]['rmse']:.3f} m, SSIM {result[key]['ssim']:.3f}")


if __name__ == "__main__":
    main()
