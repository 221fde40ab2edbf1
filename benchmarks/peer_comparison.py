"""Score checkpoints the way each challenge participant scored theirs: per-batch RMSE at batch 16, 32 and 64, the
pooled all-pixel RMSE, the baseline report's 224x224 centre crop (batch 16) and participant A's 224x224 squash
(batch 32), with and without test-time augmentation.

Each image is predicted once per TTA setting; the predictions are then grouped into batches of every size (64 is
a multiple of 16 and 32, so the groups are exactly the course template's sequential batches, last partial kept).

Usage (the rows in BENCHMARKS.md name their exact command):
    python benchmarks/peer_comparison.py --data DATA/DepthEstimationUnreal --name recipe-two-stage \
        --tta none,flip,flip+ms runs/cpu-s15/checkpoints/last.ckpt
    # per-epoch scan of saved checkpoints, minutes counted from --start (the training's start, ISO time):
    python benchmarks/peer_comparison.py --data DATA/DepthEstimationUnreal --name recipe-epochs --tta none \
        --start 2026-12-02T01:13:00Z runs/cpu/epochs/*.ckpt runs/cpu-s15/epochs/*.ckpt

Prints a Markdown table and writes benchmarks/results/<name>.peers.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime
from pathlib import Path

import torch

from depthforge.data import build_loader
from depthforge.evaluation import Evaluator, get_protocol
from depthforge.evaluation.report import resolve_source

BATCHES = (16, 32, 64)
TTA = {"none": {}, "flip": {"flip_tta": True}, "flip+ms": {"flip_tta": True, "tta_scales": (0.833, 1.0, 1.167)}}


def score(checkpoint: str, data: str, tta: str, device: str) -> dict:
    """Challenge metrics at every batch size, pooled RMSE, and challenge-224 at batch 16, for one TTA setting."""
    protocols = {f"challenge/b{b}": get_protocol("challenge", batch_size=b, **TTA[tta]) for b in BATCHES}
    # The baseline report's geometry and batch, and participant A's.
    protocols["challenge-224/b16"] = get_protocol("challenge-224", **TTA[tta])
    protocols["challenge-squash224/b32"] = get_protocol("challenge-squash224", batch_size=32, **TTA[tta])
    evaluators = {name: Evaluator(p, per_image=False) for name, p in protocols.items()}
    predict, dataset, *_ = resolve_source({"checkpoint": checkpoint}, data, "val",
                                            evaluators["challenge/b16"].protocol, device)
    for batch in build_loader(dataset, max(BATCHES), shuffle=False):
        pred = predict(batch)
        stems = list(batch["meta"]["stem"])
        for evaluator in evaluators.values():
            size = evaluator.protocol.batch_size
            for i in range(0, pred.shape[0], size):
                part = slice(i, i + size)
                evaluator.process(pred[part], batch["depth"][part], batch["mask"][part], stems[part])
    row = {name: {k: e.compute()[k] for k in ("rmse", "ssim", "rmse_pooled")} for name, e in evaluators.items()}
    return {"n": evaluators["challenge/b16"].n, **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--data", required=True, help="unpacked DepthEstimationUnreal folder")
    parser.add_argument("--name", required=True)
    parser.add_argument("--tta", default="none", help=f"comma-separated subset of {list(TTA)}")
    parser.add_argument("--start", help="training start (ISO time): adds each checkpoint file's minutes since it")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    settings = args.tta.split(",")
    unknown = sorted(set(settings) - set(TTA))
    if unknown:
        parser.error(f"--tta: unknown {unknown}; choose from {list(TTA)}")
    start = datetime.fromisoformat(args.start.replace("Z", "+00:00")).timestamp() if args.start else None

    rows = []
    for checkpoint in args.checkpoints:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
        info = {"checkpoint": checkpoint, "epoch": ckpt["epoch"], "global_step": ckpt["global_step"]}
        if start is not None:
            info["minutes"] = round((Path(checkpoint).stat().st_mtime - start) / 60, 1)
        for tta in settings:
            t0 = time.perf_counter()
            rows.append({**info, "tta": tta, **score(checkpoint, args.data, tta, args.device),
                         "eval_seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1]), flush=True)

    cols = [f"challenge/b{b}" for b in BATCHES] + ["challenge-224/b16", "challenge-squash224/b32"]
    head = ("| checkpoint | step | minutes | TTA | " + " | ".join(f"{c} RMSE / SSIM" for c in cols)
            + " | pooled RMSE |")
    lines = [head, "|---|---|---|---|" + "---|" * (len(cols) + 1)]
    for r in rows:
        cells = " | ".join(f"{r[c]['rmse']:.3f} / {r[c]['ssim']:.3f}" for c in cols)
        lines.append(f"| {r['checkpoint']} | {r['global_step']} | {r.get('minutes', '')} | {r['tta']} | {cells} | "
                     f"{r['challenge/b16']['rmse_pooled']:.3f} |")
    table = "\n".join(lines)
    print(table)
    out = Path(__file__).parent / "results" / args.name
    meta = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "threads": torch.get_num_threads(), "split": "val", "command": "python benchmarks/peer_comparison.py "
            + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v and k != "checkpoints")
            + " " + " ".join(args.checkpoints)}
    Path(f"{out}.peers.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    Path(f"{out}.peers.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
