"""Train a recipe on the challenge data for a wall-clock budget, then score val under both protocols.

Usage (the rows in BENCHMARKS.md name their exact command):
    python benchmarks/train_budget.py --config baseline --data DATA/DepthEstimationUnreal --minutes 30 \
        --name baseline-scratch-30min model.pretrained=none

Prints a table and writes benchmarks/results/<name>.json (metrics, protocol, timing, machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch

from depthforge.config import load_config
from depthforge.engine import train
from depthforge.evaluation import get_protocol
from depthforge.evaluation.card import write_card
from depthforge.evaluation.report import evaluate_sources


PROTOCOL_NAMES = ("challenge", "standard", "challenge+flip")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--data", required=True, help="unpacked DepthEstimationUnreal folder")
    parser.add_argument("--minutes", type=float, required=True, help="training wall-clock budget")
    parser.add_argument("--name", required=True)
    parser.add_argument("--runs", default="runs/bench")
    parser.add_argument("--checkpoint", default="last", choices=["last", "best"])
    parser.add_argument("--protocols", default="challenge,standard,challenge+flip",
                        help="comma-separated subset of challenge, standard, challenge+flip to score")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    wanted = args.protocols.split(",")
    unknown = sorted(set(wanted) - set(PROTOCOL_NAMES))
    if unknown:  # before training, not after it
        parser.error(f"--protocols: unknown {unknown}; choose from {list(PROTOCOL_NAMES)}")

    out = Path(args.runs) / args.name
    cfg = load_config(args.config, [f"data.root={args.data}", "data.name=challenge", f"out={out}",
                                    f"train.max_minutes={args.minutes}", "train.progress_bar=false"]
                      + args.overrides)
    start = time.perf_counter()
    train(cfg)
    train_minutes = (time.perf_counter() - start) / 60
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    steps, epochs = ckpt["global_step"], ckpt["epoch"]

    scored = out / "checkpoints" / f"{args.checkpoint}.ckpt"
    params = sum(v.numel() for k, v in ckpt["state_dict"].items() if "running_" not in k and "num_batches" not in k)
    row = {"name": args.name, "config": args.config, "overrides": args.overrides, "train_minutes": train_minutes,
           "steps": steps, "epochs_completed": epochs, "images_seen": steps * cfg.data.batch_size,
           "train_images_per_s": steps * cfg.data.batch_size / (train_minutes * 60), "params": params,
           "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                      f"torch {torch.__version__}, {'cuda' if torch.cuda.is_available() else 'cpu'}",
           "scored_checkpoint": args.checkpoint, "results": {}}
    results = Path("benchmarks/results")
    results.mkdir(parents=True, exist_ok=True)
    protocols = {"challenge": get_protocol("challenge"), "standard": get_protocol("standard"),
                 "challenge+flip": dataclasses.replace(get_protocol("challenge"), flip_tta=True)}
    protocols = {k: v for k, v in protocols.items() if k in wanted}
    for proto_name, protocol in protocols.items():
        card = evaluate_sources([{"checkpoint": str(scored)}], protocol, args.data, "val",
                                command="python " + " ".join(sys.argv))[0]
        write_card(card, results / f"{args.name}.{proto_name.replace('+', '-')}.json")
        row["results"][proto_name] = {"metrics": card["metrics"], "n": card["n"]}
    (results / f"{args.name}.json").write_text(json.dumps(row, indent=2))

    print(f"| {'run':<28} | protocol       |  RMSE  |  SSIM  | AbsRel | delta1 | min  | img/s |")
    for proto_name, result in row["results"].items():
        m = result["metrics"]
        print(f"| {args.name:<28} | {proto_name:<14} | {m['rmse']:.3f}  | {m['ssim']:.3f}  | {m['abs_rel']:.3f}  | "
              f"{m['delta1']:.3f}  | {train_minutes:.0f} | {row['train_images_per_s']:.1f} |")


if __name__ == "__main__":
    main()
