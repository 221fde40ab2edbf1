"""Per-image latency of registered models on the CPU: PyTorch eager, ONNX Runtime fp32 and INT8, OpenVINO fp32 and
INT8, batch 1 and 8, with FLOPs, utilisation and peak memory.

    python benchmarks/latency.py [--runs 5] [--sizes 144x256 480x640] [--models ...] [--batches 1 8]

All timings come from one run on one machine and are reported as ratios (the brief: absolute times only on a
GPU): latency per image relative to the reference model (eager, batch 1, first size), and achieved FLOP/s as a
fraction of this machine's fp32 matmul peak measured in the same run. Each model runs in its own process, so its
peak resident memory (``ru_maxrss``, all variants and sizes of that model together) is its own. INT8 here is static
QDQ calibrated on 8 random images: right for speed (the kernels do not depend on the ranges), not for accuracy
(benchmarks/int8.py scores INT8 accuracy on real data). Milliseconds are kept in the JSON. Writes
benchmarks/results/latency.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from _results import save_results  # benchmarks/_results.py (scripts run from the repository root)

from depthforge.config import Config
from depthforge.export.onnx import OnnxModel, OpenVINOModel, export_onnx
from depthforge.export.quantize import quantize_onnx
from depthforge.models import create_model, list_models

REFERENCE = "unet_efficientnet_lite0"
VARIANTS = ("eager", "ort-fp32", "ort-int8", "openvino-fp32", "openvino-int8")


def median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(n: int = 2048, runs: int = 5) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    return 2 * n**3 / median_time(lambda: a @ b, runs)


def one_model(name: str, sizes: list[tuple[int, int]], batches: list[int], runs: int) -> dict:
    """Every variant of one model: ``{"rows": [...], "peak_rss_mb": ...}`` (run in a child process)."""
    warnings.filterwarnings("ignore")
    model = create_model(name).eval()
    threads = torch.get_num_threads()
    tmp = Path(tempfile.mkdtemp())
    runners, notes = {"eager": model}, {}
    try:
        fp32 = export_onnx(model, tmp / "m.onnx")
        int8 = quantize_onnx(fp32, tmp / "m.int8.onnx", Config(), "static",
                             [torch.rand(3, *sizes[0]) for _ in range(8)])
        runners.update({"ort-fp32": OnnxModel(fp32, threads), "ort-int8": OnnxModel(int8, threads),
                        "openvino-fp32": OpenVINOModel(fp32, threads),
                        "openvino-int8": OpenVINOModel(int8, threads, allow_int8=True)})
    except Exception as err:  # not every model exports (see README)
        notes["onnx"] = f"{type(err).__name__}: {str(err).splitlines()[0][:80]}"
    rows = []
    for h, w in sizes:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(torch.rand(1, 3, h, w))
        flops = counter.get_total_flops()
        for batch in batches:
            x = torch.rand(batch, 3, h, w)
            for variant, run in runners.items():
                with torch.inference_mode():
                    seconds = median_time(lambda: run(x), runs) / batch
                rows.append({"model": name, "size": f"{h}x{w}", "batch": batch, "variant": variant,
                             "gflops": flops / 1e9, "ms_per_image": seconds * 1e3, "flops_per_s": flops / seconds})
                print(f"{name} {h}x{w} b{batch} {variant}: {seconds * 1e3:.1f} ms/image", file=sys.stderr, flush=True)
    return {"rows": rows, "notes": notes, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", nargs="+", default=["144x256", "480x640"])
    parser.add_argument("--models", nargs="+",
                        default=[n for n in list_models() if n not in ("hf", "diffusion_efficientnet_lite2")])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: one model, JSON on stdout
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    if args.one:
        print(json.dumps(one_model(args.one, sizes, args.batches, args.runs)))
        return
    peak = matmul_peak()
    rows, rss, notes = [], {}, {}
    for name in args.models:
        child = subprocess.run([sys.executable, __file__, "--one", name, "--runs", str(args.runs), "--sizes",
                                *args.sizes, "--batches", *map(str, args.batches)], capture_output=True, text=True)
        if child.returncode:
            notes[name] = child.stderr.strip().splitlines()[-1][:120]
            continue
        out = json.loads(child.stdout.strip().splitlines()[-1])
        rows += out["rows"]
        rss[name] = out["peak_rss_mb"]
        notes.update({name: out["notes"]["onnx"]} if out["notes"] else {})
    ref = next(r["ms_per_image"] for r in rows if r["model"] == REFERENCE and r["size"] == args.sizes[0]
               and r["batch"] == args.batches[0] and r["variant"] == "eager")
    for r in rows:
        r["vs_reference"] = r["ms_per_image"] / ref
        r["utilisation"] = r["flops_per_s"] / peak
    head = (f"| model | size | GFLOPs | peak RSS (MB) | " + " | ".join(
        f"{v} b{b}" for b in args.batches for v in VARIANTS) + " |\n|" + "---|" * (4 + len(VARIANTS) * len(args.batches)))
    lines = [head]
    for name in rss:
        for size in args.sizes:
            cells = {(r["variant"], r["batch"]): r for r in rows if r["model"] == name and r["size"] == size}
            first = next(iter(cells.values()))
            values = [f"{cells[(v, b)]['vs_reference']:.2f} ({cells[(v, b)]['utilisation']:.0%})"
                      if (v, b) in cells else "-" for b in args.batches for v in VARIANTS]
            lines.append(f"| {name} | {size} | {first['gflops']:.2f} | {rss[name]:.0f} | " + " | ".join(values) + " |")
    table = "\n".join(lines)
    print(table)
    if notes:
        print("not exported / not run:", json.dumps(notes, indent=1))
    meta = {"command": "python " + " ".join(sys.argv), "machine": f"{platform.machine()}, {torch.get_num_threads()} "
            f"threads, torch {torch.__version__}", "matmul_peak_gflops": peak / 1e9,
            "reference": f"{REFERENCE} eager batch {args.batches[0]} {args.sizes[0]}", "runs": args.runs,
            "cell": "per-image latency as a ratio to the reference (FLOP/s / matmul peak)"}
    save_results("latency", table, meta, {"rows": rows, "peak_rss_mb": rss, "notes": notes})


if __name__ == "__main__":
    main()
