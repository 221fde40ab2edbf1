"""Phones and browsers (#52): every app format of one checkpoint against eager PyTorch, on the challenge val split
and on two real photos, with latency per image in the same run.

    python benchmarks/mobile_export.py --checkpoint runs/realtime/checkpoints/last.ckpt \
        --data DATA/DepthEstimationUnreal

Formats, each exported as ``depthforge export`` writes it (the end-to-end graph: the photo as RGB / 255 in, metres
out): ONNX (ONNX Runtime, and the same file through OpenVINO), LiteRT fp32, INT8 (dynamic range) and INT8
weights (weight-only; the LiteRT interpreter), the web folder (its
model.onnx run by ONNX Runtime Web in Debian's chromium, WebAssembly, one thread: the page is served without the
COOP/COEP headers threads need), and Core ML fp16 / fp32 (converted and checked with `check_coreml`; Core ML runs
only on Apple systems, so no numbers). Per format: max and 99th-percentile |exported - eager| over the pixels of the
first ``--n`` val images and of each photo (scikit-image's ``coffee`` and ``chelsea``, real photographs: the
dynamic-size formats take them at their own size; the fixed-size LiteRT files get them resized to the file's size,
and eager PyTorch gets the same resized pixels), the challenge-protocol RMSE / SSIM over the whole val split and its
change from eager, and latency per image at 144x256 (batch 1; five interleaved rounds of ``--runs`` / 5 calls per
runner, the median of the round medians) as a ratio to eager in the same run.
Writes benchmarks/results/<--name>.{json,md}.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import io
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _results import median_ms, save_results  # benchmarks/_results.py (scripts run from the repository root)

from depthforge.cli import main as cli
from depthforge.data import build_dataset
from depthforge.evaluation import get_protocol
from depthforge.evaluation.report import evaluate_sources
from depthforge.export.litert import LiteRTModel
from depthforge.export.onnx import OnnxModel, OpenVINOModel
from depthforge.predict.tta import predict_native
from depthforge.sources import load_checkpoint


def photos() -> dict[str, np.ndarray]:
    import skimage.data

    return {"coffee": skimage.data.coffee(), "chelsea": skimage.data.chelsea()}


def tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255


def diff_stats(diffs: list[np.ndarray]) -> dict:
    d = np.concatenate([x.ravel() for x in diffs]).astype(np.float64)
    return {"max": float(d.max()), "p99": float(np.percentile(d, 99))}


class Browser:
    """The exported web folder served locally and driven in chromium: depth of an image, and the page's time."""

    def __init__(self, folder: Path, chromium: str):
        from playwright.sync_api import sync_playwright

        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a: None
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        self.page = self.browser.new_page()
        self.page.goto(f"http://127.0.0.1:{self.server.server_address[1]}/?ep=wasm&max_side=0")
        self.page.wait_for_function("document.getElementById('status').textContent.startsWith('Ready')",
                                    timeout=300_000)

    def depth(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")  # lossless: the browser decodes the same pixels
        out = self.page.evaluate("""async (bytes) => {
            await window.depthforge.predict(new Blob([new Uint8Array(bytes)], {type: "image/png"}));
            const s = window.depthforge;
            return [Array.from(s.depth), s.width, s.height, s.ms];
        }""", list(buf.getvalue()))
        values, w, h, ms = out
        return np.asarray(values, dtype=np.float32).reshape(h, w), float(ms)

    def close(self) -> None:
        self.browser.close()
        self.pw.stop()
        self.server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True, help="the challenge data (DepthEstimationUnreal)")
    parser.add_argument("--n", type=int, default=600, help="val images for the pixel differences (>= 100)")
    parser.add_argument("--web-n", type=int, default=100, help="of those, run in the browser (slower to drive)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--ort-web", help="an unpacked onnxruntime-web package (default: cached / npm)")
    parser.add_argument("--name", default="mobile_export")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    ck = args.checkpoint
    model, cfg = load_checkpoint(ck)
    size = (144, 256)
    exports = {"onnx": ["--format", "onnx", "--out", str(tmp / "m.onnx")],
               "litert-fp32": ["--format", "litert", "--input-size", "144x256", "--out", str(tmp / "m.tflite")],
               "litert-int8": ["--format", "litert", "--input-size", "144x256", "--quantize", "int8",
                               "--out", str(tmp / "q.tflite")],
               "litert-int8-weights": ["--format", "litert", "--input-size", "144x256", "--quantize", "int8-weights",
                                       "--out", str(tmp / "w.tflite")],
               "coreml-fp16": ["--format", "coreml", "--input-size", "144x256", "--out", str(tmp / "h.mlpackage")],
               "coreml-fp32": ["--format", "coreml", "--input-size", "144x256", "--precision", "fp32",
                               "--out", str(tmp / "f.mlpackage")],
               "web": ["--format", "web", "--out", str(tmp / "web"),
                       *(["--ort-web", args.ort_web] if args.ort_web else [])]}
    export_s = {}
    for name, extra in exports.items():
        start = time.perf_counter()
        assert cli(["export", "--checkpoint", ck, *extra]) == 0, name
        export_s[name] = time.perf_counter() - start
    from depthforge.export.coreml import check_coreml

    coreml = {"coreml-fp16": check_coreml(tmp / "h.mlpackage", model),
              "coreml-fp32": check_coreml(tmp / "f.mlpackage", model)}
    threads = torch.get_num_threads()
    runners = {"eager": model.eval(), "onnx": OnnxModel(tmp / "m.onnx", threads=threads),
               "onnx-openvino": OpenVINOModel(tmp / "m.onnx", threads=threads),
               "litert-fp32": LiteRTModel(tmp / "m.tflite", threads),
               "litert-int8": LiteRTModel(tmp / "q.tflite", threads),
               "litert-int8-weights": LiteRTModel(tmp / "w.tflite", threads)}
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    browser = Browser(tmp / "web", chromium) if chromium else None

    val = build_dataset(dataclass_data(cfg, args.data), "val", train=False)
    n = min(args.n, len(val))
    diffs = {k: [] for k in [*runners, "web"] if k != "eager"}
    web_ms = []
    with torch.inference_mode():
        for i in range(n):
            x = val[i]["image"][None]
            ref = predict_native(model, x, cfg.data)[0, 0].numpy()
            for name, run in runners.items():
                if name != "eager":
                    diffs[name].append(np.abs(predict_native(run, x, cfg.data)[0, 0].numpy() - ref))
            if browser and i < args.web_n:
                rgb = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # the pixels it came from
                depth, ms = browser.depth(rgb)
                web_ms.append(ms)
                diffs["web"].append(np.abs(depth - predict_native(model, tensor(rgb), cfg.data)[0, 0].numpy()))
        photo_diffs = {}
        for pname, rgb in photos().items():
            x = tensor(rgb)
            ref = predict_native(model, x, cfg.data)[0, 0].numpy()
            small = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            ref_small = predict_native(model, small, cfg.data)[0, 0].numpy()
            for name, run in runners.items():
                if name == "eager":
                    continue
                fixed = name.startswith("litert")
                got = predict_native(run, small if fixed else x, cfg.data)[0, 0].numpy()
                photo_diffs.setdefault(name, {})[pname] = diff_stats([np.abs(got - (ref_small if fixed else ref))])
            if browser:
                depth, _ = browser.depth(rgb)
                photo_diffs.setdefault("web", {})[pname] = diff_stats([np.abs(depth - ref)])
    if browser:
        browser.close()

    time.sleep(5)  # the browser's processes gone before anything is timed
    # interleaved rounds (each runner a few calls per round, the median of the round medians): a shared machine's
    # drift over the minutes of a run lands on every runner alike instead of on whichever ran at that moment
    x = torch.rand(1, 3, *size)
    rounds: dict[str, list[float]] = {name: [] for name in runners}
    with torch.inference_mode():
        for _ in range(5):
            for name, run in runners.items():
                rounds[name].append(median_ms(lambda: run(x), max(1, args.runs // 5)))
    latency = {name: statistics.median(values) for name, values in rounds.items()}
    if web_ms:
        latency["web"] = statistics.median(web_ms)
    cards = evaluate_sources([{"checkpoint": ck}, {"onnx": str(tmp / "m.onnx"), "threads": threads},
                              {"onnx": str(tmp / "m.onnx"), "backend": "openvino", "threads": threads},
                              {"onnx": str(tmp / "m.tflite"), "threads": threads},
                              {"onnx": str(tmp / "q.tflite"), "threads": threads},
                              {"onnx": str(tmp / "w.tflite"), "threads": threads}],
                             get_protocol("challenge"), args.data, "val", command="python " + " ".join(sys.argv))
    scores = dict(zip(["eager", "onnx", "onnx-openvino", "litert-fp32", "litert-int8", "litert-int8-weights"],
                      (c["metrics"] for c in cards)))

    rows = {}
    for name in ["eager", "onnx", "onnx-openvino", "litert-fp32", "litert-int8", "litert-int8-weights", "web",
                 "coreml-fp16", "coreml-fp32"]:
        row = {"export_s": export_s.get(name)}
        if name in diffs and diffs[name]:
            row["val"] = diff_stats(diffs[name])
            row["val_images"] = len(diffs[name])
        if name in photo_diffs:
            row["photos"] = photo_diffs[name]
        if name in scores:
            row["rmse"], row["ssim"] = scores[name]["rmse"], scores[name]["ssim"]
            row["rmse_change"] = scores[name]["rmse"] - scores["eager"]["rmse"]
        if name in latency:
            row["ms"], row["vs_eager"] = latency[name], latency[name] / latency["eager"]
        if name in coreml:
            row["coreml_check"] = coreml[name]
        rows[name] = row

    def cell(v, fmt):
        return "-" if v is None else format(v, fmt)

    head = ("| format | val: max / p99 abs diff (m) | coffee: max / p99 | chelsea: max / p99 | challenge RMSE | "
            "RMSE change | SSIM | latency 144x256 (x eager) |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for name, r in rows.items():
        v, p = r.get("val"), r.get("photos", {})
        pair = lambda d: f"{d['max']:.2g} / {d['p99']:.2g}" if d else "-"  # noqa: E731
        note = " (not run: Core ML runs only on Apple systems)" if name.startswith("coreml") else ""
        images = f" ({r['val_images']} images)" if v else ""
        lines.append(f"| {name}{note} | {pair(v)}{images} | "
                     f"{pair(p.get('coffee'))} | {pair(p.get('chelsea'))} | {cell(r.get('rmse'), '.4f')} | "
                     f"{cell(r.get('rmse_change'), '+.4f')} | {cell(r.get('ssim'), '.4f')} | "
                     f"{cell(r.get('vs_eager'), '.2f')} |")
    table = "\n".join(lines)
    print(table)
    meta = {"command": "python " + " ".join(sys.argv),
            "machine": f"{platform.machine()}, {threads} threads, torch {torch.__version__}",
            "val_images_diff": n, "web_images": len(web_ms), "eager_ms": latency["eager"], "size": "144x256"}
    save_results(args.name, table, meta, {"rows": rows})


def dataclass_data(cfg, root: str):
    import dataclasses

    return dataclasses.replace(cfg.data, root=root, name="challenge")


if __name__ == "__main__":
    main()
