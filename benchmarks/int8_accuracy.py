"""INT8 that keeps the accuracy (#41): fp32 vs post-training INT8 (every layer, and with the sensitivity report's
fp32 choice) vs quantisation-aware fine-tuning, in ONNX Runtime and OpenVINO, on one CPU.

    python benchmarks/int8_accuracy.py --checkpoint RUN/checkpoints/last.ckpt --qat QAT_RUN/checkpoints/last.ckpt \
        --data DATA/DepthEstimationUnreal --name int8-accuracy-cpu

Rows: the fp32 export in ONNX Runtime and OpenVINO; static INT8 of every layer (ONNX Runtime, MinMax, calibrated on
the first ``--calibration-n`` training images); the same with the blocks the sensitivity report keeps in fp32 to stay
within ``--max-rmse-delta`` on ``--selection-n`` further training images (``depthforge export --quantize int8
--max-rmse-delta``); the QAT checkpoint (``train.qat=true``) as its INT8 QDQ ONNX file (ONNX Runtime) and its
OpenVINO IR (OpenVINO). Columns: challenge-protocol RMSE / SSIM on the val split; the depth difference to fp32 in
metres (mean and 99th percentile) on 16 val images and on rendered rooms and streets no training set holds (out of
domain); latency at 144x256, batch 1, as a ratio to the fastest fp32 backend measured in the same run (median of
``--runs``, the runners timed in turns). Writes benchmarks/results/<--name>.{json,md}.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from _results import save_results  # benchmarks/_results.py (scripts run from the repository root)

from depthforge.data import build_dataset
from depthforge.evaluation import get_protocol
from depthforge.evaluation.quantized import rendered_held_out, sensitivity
from depthforge.evaluation.report import evaluate_sources
from depthforge.export.onnx import OnnxModel, OpenVINOModel, export_onnx, export_openvino, latency_ms
from depthforge.export.quantize import quantize_onnx
from depthforge.predict.tta import predict_native
from depthforge.sources import load_checkpoint


def vector_extensions() -> str:
    """The CPU's model and the SIMD extensions that matter for INT8 (from /proc/cpuinfo)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    wanted = ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16"]
    return f"{model}; {', '.join(f for f in wanted if f in flags) or 'no AVX2'}"


def drift(reference, runner, images: list[torch.Tensor], cfg) -> dict:
    """Mean and 99th percentile of |runner - reference| depth (m) over ``images`` (1, 3, H, W)."""
    diffs = []
    with torch.inference_mode():
        for x in images:
            diffs.append((predict_native(runner, x, cfg.data) - predict_native(reference, x, cfg.data)).abs().ravel())
    every = torch.cat(diffs).double().numpy()
    return {"mean_m": float(every.mean()), "p99_m": float(np.percentile(every, 99))}


def timed(runners: dict, runs: int) -> dict[str, float]:
    """Median ms per image (batch 1, 144x256) of each runner, one runner after the other, each after a pause and a
    warm-up. (Timed in turns instead, ONNX Runtime sessions' spinning worker threads took the cores from whichever
    runner came next: a first run of this script measured the INT8 files slower than fp32 that way.)"""
    ms = {}
    for name, run in runners.items():
        time.sleep(1.0)
        ms[name] = latency_ms(run, (144, 256), runs)
    return ms


FP32 = ("ort-fp32", "openvino-fp32", "openvino-fp32-ir")  # the fp32 runners the speed column is a ratio to


def files(folder: Path) -> dict[str, tuple[Path, str]]:
    """The variants' files in a --keep folder: name -> (path, backend)."""
    found = {"ort-fp32": ("fp32.onnx", "onnxruntime"), "openvino-fp32": ("fp32.onnx", "openvino"),
             "openvino-fp32-ir": ("fp32.xml", "openvino"),
             "ort-int8-ptq-all": ("all.onnx", "onnxruntime"), "ort-int8-ptq-sensitivity": ("chosen.onnx", "onnxruntime"),
             "ort-int8-qat": ("qat.onnx", "onnxruntime"), "openvino-int8-qat": ("qat.xml", "openvino"),
             "openvino-int8-ptq-all": ("ov-all.xml", "openvino"), "openvino-int8-ptq-budget": ("ov-budget.xml", "openvino")}
    return {k: (folder / f, b) for k, (f, b) in found.items() if (folder / f).is_file()}


def runner(path: Path, backend: str, threads: int):
    return OnnxModel(path, threads=threads) if backend == "onnxruntime" else OpenVINOModel(path, threads=threads)


def retime(args, threads: int) -> None:
    """--timing-only: time the files a --keep folder holds again and rewrite the saved results' speed column."""
    import json

    from _results import RESULTS

    saved = json.loads((RESULTS / f"{args.name}.json").read_text())
    rows = saved["rows"]
    ms = timed({name: runner(p, b, threads) for name, (p, b) in files(Path(args.timing_only)).items()}, args.runs)
    fastest = min(ms[k] for k in FP32 if k in ms)
    for name in rows:
        rows[name].update({"ms": ms[name], "x_fastest_fp32": fastest / ms[name]})
    meta = {**{k: v for k, v in saved.items() if k not in ("rows", "sensitivity")}, "timing_command": "python " + " ".join(sys.argv), "fastest_fp32_ms": fastest,
            "fastest_fp32": min((k for k in FP32 if k in ms), key=ms.get)}
    report = saved["sensitivity"]
    save_results(args.name, table(rows), meta, {"rows": rows, "sensitivity": report})
    print(table(rows))


def table(rows: dict) -> str:
    base, std = rows["ort-fp32"]["rmse"], rows["ort-fp32"].get("rmse_standard")
    head = ("| variant | val RMSE | Δ RMSE vs fp32 | val SSIM | Δ RMSE, standard protocol | val depth diff. mean / p99 "
            "(m) | out-of-domain depth diff. mean / p99 (m) | speed, batch 1 (x fastest fp32) |\n"
            "|---|---|---|---|---|---|---|---|")
    return "\n".join([head] + [f"| {n} | {r['rmse']:.3f} | {r['rmse'] - base:+.3f} | {r['ssim']:.3f} | "
                               + (f"{r['rmse_standard'] - std:+.3f} | " if std and "rmse_standard" in r else "- | ")
                               + f"{r['val_drift']['mean_m']:.3f} / {r['val_drift']['p99_m']:.3f} | "
                               f"{r['ood_drift']['mean_m']:.3f} / {r['ood_drift']['p99_m']:.3f} | "
                               f"{r['x_fastest_fp32']:.2f} |" for n, r in rows.items()])


def add_openvino(args, threads: int) -> None:
    """--openvino DIR: add OpenVINO's own INT8 (NNCF post-training quantisation of the IR, all layers and with
    ``--max-rmse-delta`` accuracy control, as ``depthforge export --format openvino --quantize int8`` makes them)
    to the saved results, score every row under the standard protocol too, and time every file again in one run."""
    import json

    from _results import RESULTS

    from depthforge.evaluation.quantized import _selection, openvino_int8, spread

    saved = json.loads((RESULTS / f"{args.name}.json").read_text())
    rows, folder = saved["rows"], Path(args.openvino)
    model, cfg = load_checkpoint(args.checkpoint)
    cfg.data.root, cfg.data.name = args.data, "challenge"
    fp32 = export_openvino(model, folder / "fp32.xml", cfg)
    train_set = build_dataset(cfg.data, cfg.data.train_split, train=False)
    used = spread(len(train_set), args.openvino_calibration_n)
    images = [train_set[i]["image"] for i in used]
    samples, where = _selection(cfg, used, args.selection_n)
    standard = get_protocol("standard")
    start = time.perf_counter()
    made = {"openvino-int8-ptq-all": openvino_int8(fp32, folder / "ov-all.xml", cfg, images),
            "openvino-int8-ptq-budget": openvino_int8(fp32, folder / "ov-budget.xml", cfg, images, samples, where,
                                                      standard, args.max_rmse_delta)}
    minutes = (time.perf_counter() - start) / 60
    every = {**files(folder), **{n: (p, "openvino") for n, (p, _) in made.items()}}
    runners = {name: runner(p, b, threads) for name, (p, b) in every.items()}
    sources = [{"onnx": str(p), "backend": b, "threads": threads} for p, b in every.values()]
    challenge = evaluate_sources(sources, get_protocol("challenge"), args.data, "val", command="python " + " ".join(sys.argv))
    std = evaluate_sources(sources, standard, args.data, "val")
    val_set = build_dataset(cfg.data, "val", train=False)
    val_images = [val_set[i]["image"][None] for i in range(16)]
    ood = [torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255 for im in rendered_held_out(8)]
    for (name, run), card, card_std in zip(runners.items(), challenge, std):
        if name not in rows:
            rows[name] = {"val_drift": drift(runners["ort-fp32"], run, val_images, cfg),
                          "ood_drift": drift(runners["ort-fp32"], run, ood, cfg)}
        elif abs(rows[name]["rmse"] - card["metrics"]["rmse"]) > 1e-6:  # the same files as the saved rows?
            print(f"warning: {name} scores {card['metrics']['rmse']:.5f} now, {rows[name]['rmse']:.5f} when saved")
        row = rows[name]
        row.update(rmse=card["metrics"]["rmse"], ssim=card["metrics"]["ssim"], rmse_standard=card_std["metrics"]["rmse"])
    ms = timed(runners, args.runs)
    fastest = min(ms[k] for k in FP32 if k in ms)
    for name in rows:
        rows[name].update({"ms": ms[name], "x_fastest_fp32": fastest / ms[name]})
    from depthforge.export.quantize import read_metadata

    layers = {n: read_metadata(p)["depthforge_quantization"] for n, (p, _) in made.items()}
    meta = {**{k: v for k, v in saved.items() if k not in ("rows", "sensitivity", "openvino")},
            "openvino_command": "python " + " ".join(sys.argv), "fastest_fp32_ms": fastest,
            "fastest_fp32": min((k for k in FP32 if k in ms), key=ms.get)}
    openvino = {"calibration_images": len(images), "minutes": minutes, "selection": made["openvino-int8-ptq-budget"][1],
                "fp32_layers": {n: m["kept_fp32"] for n, m in layers.items()},
                "int8_layers": {n: m["int8_layers"] for n, m in layers.items()}}
    save_results(args.name, table(rows) + "\n\nOpenVINO INT8: " + json.dumps(openvino), meta,
                 {"rows": rows, "sensitivity": saved["sensitivity"], "openvino": openvino})
    print(table(rows))
    print(json.dumps(openvino, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="the fp32 model")
    parser.add_argument("--qat", help="its train.qat=true fine-tuning (optional)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--calibration-n", type=int, default=100)
    parser.add_argument("--selection-n", type=int, default=48)
    parser.add_argument("--max-rmse-delta", type=float, default=0.02)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--name", default="int8-accuracy")
    parser.add_argument("--keep", help="write the variants' files to this folder (default: a temporary one)")
    parser.add_argument("--timing-only", metavar="DIR", help="only time the files of a --keep folder again and "
                        "rewrite the speed column of results/<--name>.json")
    parser.add_argument("--openvino", metavar="DIR", help="add OpenVINO's INT8 rows (NNCF) to results/<--name>.json, "
                        "beside the files of a --keep folder DIR, and time every row again")
    parser.add_argument("--openvino-calibration-n", type=int, default=300)
    args = parser.parse_args()
    command = "python " + " ".join(sys.argv)
    threads = torch.get_num_threads()
    if args.timing_only:
        return retime(args, threads)
    if args.openvino:
        return add_openvino(args, threads)
    model, cfg = load_checkpoint(args.checkpoint)
    cfg.data.root, cfg.data.name = args.data, "challenge"
    tmp = Path(args.keep or tempfile.mkdtemp())
    tmp.mkdir(parents=True, exist_ok=True)
    fp32 = export_onnx(model, tmp / "fp32.onnx", cfg)
    train_set = build_dataset(cfg.data, cfg.data.train_split, train=False)
    images = [train_set[i]["image"] for i in range(args.calibration_n)]
    selection = Subset(train_set, range(args.calibration_n, args.calibration_n + args.selection_n))
    challenge = get_protocol("challenge")
    start = time.perf_counter()
    report = sensitivity(fp32, cfg, images, selection, challenge, args.max_rmse_delta,
                         where=f"{args.selection_n} training images after the calibration's")
    sensitivity_minutes = (time.perf_counter() - start) / 60
    print(report.table())
    files = {"ort-int8-ptq-all": (quantize_onnx(fp32, tmp / "all.onnx", cfg, "static", images), "onnxruntime"),
             "ort-int8-ptq-sensitivity": (quantize_onnx(fp32, tmp / "chosen.onnx", cfg, "static", images,
                                                        keep_fp32=report.kept_nodes),
                                          "onnxruntime")}
    runners = {"ort-fp32": OnnxModel(fp32, threads=threads), "openvino-fp32": OpenVINOModel(fp32, threads=threads)}
    sources = {"ort-fp32": (fp32, "onnxruntime"), "openvino-fp32": (fp32, "openvino")}
    for name, (path, backend) in files.items():
        runners[name] = OnnxModel(path, threads=threads)
        sources[name] = (path, backend)
    if args.qat:
        qat_model, qat_cfg = load_checkpoint(args.qat)
        qdq = export_onnx(qat_model, tmp / "qat.onnx", qat_cfg)
        ir = export_openvino(qat_model, tmp / "qat.xml", qat_cfg)
        runners["ort-int8-qat"] = OnnxModel(qdq, threads=threads)
        runners["openvino-int8-qat"] = OpenVINOModel(ir, threads=threads)
        sources.update({"ort-int8-qat": (qdq, "onnxruntime"), "openvino-int8-qat": (ir, "openvino")})
    ms = timed(runners, args.runs)
    fastest = min(ms[k] for k in FP32 if k in ms)
    cards = evaluate_sources([{"onnx": str(p), "backend": b, "threads": threads} for p, b in sources.values()],
                             challenge, args.data, "val", command=command)
    val_set = build_dataset(cfg.data, "val", train=False)
    val_images = [val_set[i]["image"][None] for i in range(16)]
    ood = [torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255 for im in rendered_held_out(8)]
    reference = runners["ort-fp32"]
    rows = {}
    for (name, runner), card in zip(runners.items(), cards):
        rows[name] = {"ms": ms[name], "x_fastest_fp32": fastest / ms[name],
                      "rmse": card["metrics"]["rmse"], "ssim": card["metrics"]["ssim"],
                      "val_drift": drift(reference, runner, val_images, cfg),
                      "ood_drift": drift(reference, runner, ood, cfg)}
    print(table(rows))
    meta = {"command": command, "machine": f"{vector_extensions()}; {threads} threads, torch {torch.__version__}",
            "size": "144x256", "calibration_images": args.calibration_n, "selection_images": args.selection_n,
            "budget_m": args.max_rmse_delta, "sensitivity_minutes": sensitivity_minutes,
            "fastest_fp32_ms": fastest, "fastest_fp32": min((k for k in FP32 if k in ms), key=ms.get)}
    save_results(args.name, table(rows) + "\n\n" + report.table(), meta, {"rows": rows, "sensitivity": report.to_dict()})


if __name__ == "__main__":
    main()
