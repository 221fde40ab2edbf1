"""Per-image latency of every registered model, PyTorch eager vs ONNX Runtime, with FLOPs and utilisation.

    python benchmarks/latency.py [--runs 5] [--sizes 144x256 480x640]

All timings come from one run on one machine and are reported as ratios (the brief: absolute times only on a
GPU): latency relative to the reference model at the first size (eager), ONNX Runtime speed-up over eager, and
achieved FLOP/s as a fraction of this machine's fp32 matmul peak measured in the same run. Milliseconds are kept
in the JSON for reference. Writes benchmarks/results/latency.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from depthforge.inference.export import OnnxModel, export_onnx
from depthforge.models import create_model, list_models

REFERENCE = "unet_efficientnet_lite0"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", nargs="+", default=["144x256", "480x640"])
    parser.add_argument("--models", nargs="+", default=list_models())
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    peak = matmul_peak()
    rows = []
    tmp = Path(tempfile.mkdtemp())
    for name in args.models:
        model = create_model(name).eval()
        try:
            session = OnnxModel(export_onnx(model, tmp / f"{name}.onnx"), threads=torch.get_num_threads())
        except Exception as err:  # not every model exports (see README)
            session, why = None, f"{type(err).__name__}"
        for h, w in sizes:
            x = torch.rand(1, 3, h, w)
            with torch.inference_mode():
                with FlopCounterMode(display=False) as counter:
                    model(x)
                flops = counter.get_total_flops()
                eager = median_time(lambda: model(x), args.runs)
            ort = median_time(lambda: session(x), args.runs) if session else None
            rows.append({"model": name, "size": f"{h}x{w}", "gflops": flops / 1e9, "eager_ms": eager * 1e3,
                         "ort_ms": ort * 1e3 if ort else None, "ort_note": None if session else why,
                         "utilisation": flops / eager / peak})
            print(f"{name} {h}x{w}: {flops / 1e9:.2f} GFLOP, eager {eager * 1e3:.1f} ms"
                  + (f", ORT {ort * 1e3:.1f} ms" if ort else ""), flush=True)
    ref = next(r["eager_ms"] for r in rows if r["model"] == REFERENCE and r["size"] == args.sizes[0])
    for r in rows:
        r["latency_vs_reference"] = r["eager_ms"] / ref
        r["ort_speedup"] = r["eager_ms"] / r["ort_ms"] if r["ort_ms"] else None
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    result = {"machine": machine, "matmul_peak_gflops": peak / 1e9, "reference": f"{REFERENCE} eager {args.sizes[0]}",
              "runs": args.runs, "rows": rows}
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/latency.json").write_text(json.dumps(result, indent=2))
    print(f"\n| model | size | GFLOPs | eager latency (x reference) | ONNX Runtime speed-up | FLOP/s / matmul peak |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        sp = f"{r['ort_speedup']:.2f}x" if r["ort_speedup"] else f"n/a ({r['ort_note']})"
        print(f"| {r['model']} | {r['size']} | {r['gflops']:.2f} | {r['latency_vs_reference']:.2f} | {sp} | "
              f"{r['utilisation']:.1%} |")


if __name__ == "__main__":
    main()
