"""The recipe model on CPU: eager PyTorch vs ONNX Runtime and OpenVINO, fp32 and INT8, speed and accuracy.

    python benchmarks/int8.py --checkpoint runs/cpu/checkpoints/last.ckpt --data DATA/DepthEstimationUnreal

Latency at the data's 144x256, batch 1 and batch 8, as ratios to eager PyTorch at batch 1 measured in the same run
(milliseconds kept in the JSON; the brief: absolute times only on a GPU); accuracy of every variant on the challenge
val split under the challenge protocol (batch 16) and the standard one. Static INT8 is calibrated on the first
``--calibration-n`` training images: MinMax over every layer, and percentile calibration with the first convolution
and the depth head kept in fp32 (``--quant-exclude ends``), MinMax on the encoder only (``--quant-exclude
decoder``); the fp32 file also runs through OpenVINO (``--backend openvino``; it gave wrong depth on the INT8
files, which it is therefore not given); ``--dynamic`` adds dynamic INT8. Writes benchmarks/results/<--name>.{json,md} (default int8).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import torch

from _results import median_ms, save_results  # benchmarks/_results.py (scripts run from the repository root)

from depthforge.data import build_dataset
from depthforge.evaluation import get_protocol
from depthforge.evaluation.report import evaluate_sources
from depthforge.sources import load_checkpoint
from depthforge.export.onnx import OnnxModel, OpenVINOModel, export_onnx
from depthforge.export.quantize import quantize_onnx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--calibration-n", type=int, default=200)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--dynamic", action="store_true", help="also dynamic INT8 (slow and inaccurate here)")
    parser.add_argument("--name", default="int8", help="results file name")
    args = parser.parse_args()
    model, cfg = load_checkpoint(args.checkpoint)
    cfg.data.root, cfg.data.name = args.data, "challenge"
    tmp = Path(tempfile.mkdtemp())
    fp32 = export_onnx(model, tmp / "model.onnx", cfg)
    train_set = build_dataset(cfg.data, cfg.data.train_split, train=False)
    images = [train_set[i]["image"] for i in range(args.calibration_n)]
    variants = {"ort-fp32": fp32,
                "ort-int8-static": quantize_onnx(fp32, tmp / "static.onnx", cfg, "static", images),
                "ort-int8-static-ends": quantize_onnx(fp32, tmp / "minmax_ends.onnx", cfg, "static", images,
                                                      "minmax", "ends"),
                "ort-int8-static-percentile-ends": quantize_onnx(fp32, tmp / "ends.onnx", cfg, "static", images,
                                                                 "percentile", "ends"),
                "ort-int8-static-encoder": quantize_onnx(fp32, tmp / "encoder.onnx", cfg, "static", images,
                                                         exclude="decoder")}
    if args.dynamic:
        variants["ort-int8-dynamic"] = quantize_onnx(fp32, tmp / "dynamic.onnx", cfg, "dynamic")
    threads = torch.get_num_threads()
    # (runner, the file it runs, backend): every ONNX file through ONNX Runtime, fp32 also at the basic level
    runs = {name: (OnnxModel(path, threads=threads), path, "onnxruntime") for name, path in variants.items()}
    runs["ort-fp32-basic"] = (OnnxModel(fp32, threads=threads, opt_level="basic"), fp32, "onnxruntime")
    # OpenVINO runs the fp32 file; it ran the INT8 (QDQ) files fast but with wrong depth (RMSE 11 m on the recipe
    # model, BENCHMARKS.md), so depthforge refuses them there and latency.py times them for speed only.
    runs["openvino-fp32"] = (OpenVINOModel(fp32, threads=threads), fp32, "openvino")
    runners = {"eager": model.eval(), **{k: r for k, (r, _, _) in runs.items()}}
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
        # ONNX Runtime fp32 at the basic level computes what it computes at all (checked by the tests): not rescored
        scored = {k: v for k, v in runs.items() if k != "ort-fp32-basic"}
        sources = [{"checkpoint": args.checkpoint}] + [{"onnx": str(p), "backend": b, "threads": threads}
                                                       for _, p, b in scored.values()]
        cards = evaluate_sources(sources, get_protocol(proto), args.data, "val", command="python " + " ".join(sys.argv))
        for name, card in zip(["eager", *scored], cards):
            rows[name][proto] = {k: card["metrics"][k] for k in ("rmse", "ssim", "abs_rel", "delta1")}
    head = ("| variant | per image, batch 1 (x eager) | per image, batch 8 (x eager b1) | challenge RMSE | challenge SSIM "
            "| standard RMSE | standard AbsRel |\n|---|---|---|---|---|---|---|")
    rows["ort-fp32-basic"].update({p: rows["ort-fp32"][p] for p in ("challenge", "standard")})
    lines = [head] + [f"| {n} | {r['b1_vs_eager_b1']:.2f} | {r['b8_vs_eager_b1']:.2f} | {r['challenge']['rmse']:.3f} | "
                      f"{r['challenge']['ssim']:.3f} | {r['standard']['rmse']:.3f} | {r['standard']['abs_rel']:.3f} |"
                      for n, r in rows.items()]
    table = "\n".join(lines)
    print(table)
    meta = {"command": "python " + " ".join(sys.argv), "machine": f"{platform.machine()}, {threads} threads, "
            f"torch {torch.__version__}", "calibration_images": args.calibration_n, "size": "144x256",
            "eager_b1_ms": rows["eager"]["b1_ms"]}
    save_results(args.name, table, meta, {"rows": rows})


if __name__ == "__main__":
    main()
