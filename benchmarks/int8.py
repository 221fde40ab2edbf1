"""The recipe model on CPU: eager PyTorch vs ONNX Runtime fp32 vs INT8 (static QDQ and dynamic), speed and accuracy.

    python benchmarks/int8.py --checkpoint runs/cpu/checkpoints/last.ckpt --data DATA/DepthEstimationUnreal

Latency at the data's 144x256, batch 1 and batch 8, as ratios to eager PyTorch at batch 1 measured in the same run
(milliseconds kept in the JSON; the brief: absolute times only on a GPU); accuracy of every variant on the challenge
val split under the challenge protocol (batch 16) and the standard one. Static INT8 is calibrated on the first
``--calibration-n`` training images. Writes benchmarks/results/int8.{json,md}.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from _results import save_results  # benchmarks/_results.py (scripts run from the repository root)

from depthforge.data import build_dataset
from depthforge.evaluation import get_protocol
from depthforge.evaluation.report import evaluate_sources
from depthforge.inference import load_checkpoint
from depthforge.inference.export import OnnxModel, export_onnx
from depthforge.inference.quantize import quantize_onnx


def median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--calibration-n", type=int, default=200)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    model, cfg = load_checkpoint(args.checkpoint)
    cfg.data.root, cfg.data.name = args.data, "challenge"
    tmp = Path(tempfile.mkdtemp())
    fp32 = export_onnx(model, tmp / "model.onnx", cfg)
    train_set = build_dataset(cfg.data, cfg.data.train_split, train=False)
    images = [train_set[i]["image"] for i in range(args.calibration_n)]
    variants = {"ort-fp32": fp32, "ort-int8-static": quantize_onnx(fp32, tmp / "static.onnx", cfg, "static", images),
                "ort-int8-dynamic": quantize_onnx(fp32, tmp / "dynamic.onnx", cfg, "dynamic")}
    threads = torch.get_num_threads()
    runners = {"eager": model.eval(), **{k: OnnxModel(p, threads=threads) for k, p in variants.items()}}
    rows = {}
    for name, run in runners.items():
        rows[name] = {}
        for batch in (1, 8):
            x = torch.rand(batch, 3, 144, 256)
            with torch.inference_mode():
                rows[name][f"b{batch}_ms"] = median_ms(lambda: run(x), args.runs) / batch  # per image
    ref = rows["eager"]["b1_ms"]
    for name in rows:
        rows[name].update({f"b{b}_vs_eager_b1": rows[name][f"b{b}_ms"] / ref for b in (1, 8)})
    for proto in ("challenge", "standard"):
        sources = [{"checkpoint": args.checkpoint}] + [{"onnx": str(p)} for p in variants.values()]
        cards = evaluate_sources(sources, get_protocol(proto), args.data, "val", command="python " + " ".join(sys.argv))
        for name, card in zip(runners, cards):
            rows[name][proto] = {k: card["metrics"][k] for k in ("rmse", "ssim", "abs_rel", "delta1")}
    head = ("| variant | per image, batch 1 (x eager) | per image, batch 8 (x eager b1) | challenge RMSE | challenge SSIM "
            "| standard RMSE | standard AbsRel |\n|---|---|---|---|---|---|---|")
    lines = [head] + [f"| {n} | {r['b1_vs_eager_b1']:.2f} | {r['b8_vs_eager_b1']:.2f} | {r['challenge']['rmse']:.3f} | "
                      f"{r['challenge']['ssim']:.3f} | {r['standard']['rmse']:.3f} | {r['standard']['abs_rel']:.3f} |"
                      for n, r in rows.items()]
    table = "\n".join(lines)
    print(table)
    meta = {"command": "python " + " ".join(sys.argv), "machine": f"{platform.machine()}, {threads} threads, "
            f"torch {torch.__version__}", "calibration_images": args.calibration_n, "size": "144x256"}
    save_results("int8", table, meta, {"rows": rows})


if __name__ == "__main__":
    main()
