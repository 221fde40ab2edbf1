"""depthforge's overhead over the bare transformers pipeline, on the same model and images.

Both paths run the same tiny random Depth Anything (built from a config and saved with ``save_pretrained``: no
network here) on the same images, each in its own fresh process so that peak memory (``ru_maxrss``) belongs to one
path only:

- ``pipeline``: ``transformers.pipeline("depth-estimation", model=FOLDER)`` on PIL images, ``predicted_depth`` kept;
- ``depthforge``: ``depthforge predict --model hf:FOLDER`` 's library path: ``depthforge.load(...).predict(array)``
  (uint8 arrays in, depth arrays at input size out), one image per call as the pipeline does.

Each pair of processes runs ``--repeats`` times, alternating, and the table gives the median time ratio.

Usage (the row in BENCHMARKS.md names the exact command):
    python benchmarks/hf_overhead.py --images 20 --size 480 640 --repeats 3

Writes benchmarks/results/hf-overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import save_results  # benchmarks/_results.py (scripts run from the repository root)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_model(folder: Path, hidden: int) -> None:
    import torch
    from transformers import (DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config,
                              DPTImageProcessor)

    torch.manual_seed(0)
    backbone = Dinov2Config(image_size=518, patch_size=14, hidden_size=hidden, num_hidden_layers=4,
                            num_attention_heads=max(1, hidden // 64), intermediate_size=hidden * 4,
                            out_features=["stage1", "stage2", "stage3", "stage4"], reshape_hidden_states=False)
    DepthAnythingForDepthEstimation(DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=hidden, patch_size=14,
        neck_hidden_sizes=[hidden // 4, hidden // 2, hidden, hidden], fusion_hidden_size=hidden // 2)
    ).save_pretrained(folder)
    # Depth Anything V2's processor settings: short side 518, aspect kept, multiple of 14, ImageNet mean/std.
    DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)


def worker(path: str, folder: str, n: int, h: int, w: int) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(int(os.environ.get("THREADS", torch.get_num_threads())))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]
    if path == "pipeline":
        from transformers import pipeline

        pipe = pipeline("depth-estimation", model=folder)
        pil = [Image.fromarray(a) for a in images]
        pipe(pil[0])  # warm-up
        start = time.perf_counter()
        out = [pipe(p)["predicted_depth"].numpy() for p in pil]
    else:
        import depthforge

        m = depthforge.load(f"hf:{folder}")
        m.predict(images[0])  # warm-up
        start = time.perf_counter()
        out = [m.predict(a).depth for a in images]
    seconds = time.perf_counter() - start
    return {"path": path, "seconds": seconds, "per_image_ms": 1000 * seconds / n,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "checksum": float(sum(float(np.abs(o).mean()) for o in out))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    parser.add_argument("--hidden", type=int, default=64, help="width of the random Depth Anything")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", choices=["pipeline", "depthforge"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.folder, args.images, *args.size)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "da"
        build_model(folder, args.hidden)
        runs: dict[str, list[dict]] = {"pipeline": [], "depthforge": []}
        for _ in range(args.repeats):
            for path in runs:
                proc = subprocess.run([sys.executable, __file__, "--worker", path, "--folder", str(folder),
                                       "--images", str(args.images), "--size", *map(str, args.size)],
                                      capture_output=True, text=True, check=True)
                runs[path].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    pipe, ours = runs["pipeline"], runs["depthforge"]
    ratios = [o["seconds"] / p["seconds"] for p, o in zip(pipe, ours)]
    same = all(abs(o["checksum"] - p["checksum"]) < 1e-3 * max(1.0, abs(p["checksum"])) for p, o in zip(pipe, ours))
    row = {"command": "python " + " ".join(sys.argv), "images": args.images, "size": list(args.size),
           "hidden": args.hidden, "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "time_ratio_median": statistics.median(ratios), "time_ratios": ratios,
           "pipeline_ms_per_image_median": statistics.median(p["per_image_ms"] for p in pipe),
           "depthforge_ms_per_image_median": statistics.median(o["per_image_ms"] for o in ours),
           "pipeline_peak_rss_mb": max(p["peak_rss_mb"] for p in pipe),
           "depthforge_peak_rss_mb": max(o["peak_rss_mb"] for o in ours), "same_outputs": same}
    table = ("| path | ms / image (median) | peak RSS MB | time ratio vs pipeline |\n|---|---|---|---|\n"
             f"| transformers pipeline | {row['pipeline_ms_per_image_median']:.1f} | "
             f"{row['pipeline_peak_rss_mb']:.0f} | 1 |\n"
             f"| depthforge (load + predict) | {row['depthforge_ms_per_image_median']:.1f} | "
             f"{row['depthforge_peak_rss_mb']:.0f} | {row['time_ratio_median']:.3f} |")
    print(table)
    print(f"same outputs: {same}")
    save_results("hf-overhead", table, row, {"runs": runs})


if __name__ == "__main__":
    main()
