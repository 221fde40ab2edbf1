"""Soak: 10,000 images (a few bad ones mixed in) through the CLI and the Python API, and a 20-minute video stream
with --stabilize pose: memory and throughput over the whole run, every good output written, every bad input named.

    python benchmarks/soak.py [--images 10000] [--video-minutes 20] [--checkpoint CKPT]

Images: generated scenes (depthforge.data.SyntheticScenes) at four sizes (64x48 to 160x120, JPEG and PNG), with
one bad file every 997 images in turn: 0 bytes, a JPEG cut in half, text named .png, a PNG whose header claims
50000x50000 pixels. The model: ``--checkpoint``, else a tiny U-Net trained for 20 steps here (the soak measures
the program around the model; a small model makes its share of the time large). Each run is a child process
whose resident memory (VmRSS) is sampled every 0.5 s with the number of outputs written so far: the table gives
RSS and images/s at 1k / 5k / 10k images (images/s over the preceding stretch).

Video: a generated clip (moving scene, 64x48, 10 frames/s) of ``--video-minutes`` through ``depthforge predict
--stabilize pose``; RSS sampled the same way against the frames the side-by-side video holds at the end.
Writes benchmarks/results/soak.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _results import cpu_info, save_results  # benchmarks/_results.py (scripts run from the repository root)

SIZES = [(48, 64), (72, 96), (96, 128), (120, 160)]
BAD_EVERY = 997


def write_images(folder: Path, n: int) -> tuple[int, list[str]]:
    """``n`` good images in ``folder``, one bad file after every 996 of them; returns (``n``, bad file names)."""
    from depthforge.data import SyntheticScenes

    folder.mkdir(parents=True, exist_ok=True)
    scenes = {size: SyntheticScenes(64, *size, seed=3) for size in SIZES}
    bad = []
    for i in range(n + (n - 1) // (BAD_EVERY - 1)):
        name = f"{i:05d}"
        if i % BAD_EVERY == BAD_EVERY - 1:
            kind = len(bad) % 4
            path = folder / f"{name}.{'jpg' if kind in (0, 1) else 'png'}"
            if kind == 0:
                path.write_bytes(b"")
            elif kind == 1:
                good = folder / "tmp.jpg"
                Image.fromarray(np.full((48, 64, 3), 99, np.uint8)).save(good)
                path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
                good.unlink()
            elif kind == 2:
                path.write_text("not an image\n")
            else:  # a decompression bomb's header: 50000x50000 claimed in 60 bytes
                import struct
                import zlib

                ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)
                chunk = b"IHDR" + ihdr
                path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk
                                 + struct.pack(">I", zlib.crc32(chunk)))
            bad.append(path.name)
            continue
        size = SIZES[i % len(SIZES)]
        Image.fromarray(scenes[size].get_color(i % 64)).save(folder / f"{name}.{'jpg' if i % 2 else 'png'}", quality=90)
    return n, bad


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def watch(cmd: list[str], count, log: Path, every: float = 0.5) -> tuple[list[tuple[float, int, float]], int]:
    """Run ``cmd`` (output to ``log``), sampling (seconds, count(), RSS MB) until it ends; its exit code."""
    samples = []
    with open(log, "w") as out:
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        start = time.perf_counter()
        while child.poll() is None:
            try:
                samples.append((time.perf_counter() - start, count(), rss_mb(child.pid)))
            except (FileNotFoundError, ProcessLookupError):
                break
            time.sleep(every)
        code = child.wait()
    samples.append((time.perf_counter() - start, count(), samples[-1][2] if samples else 0.0))
    return samples, code


def at(samples: list[tuple[float, int, float]], marks: list[int]) -> list[dict]:
    """RSS when ``mark`` outputs were done, and the rate over the stretch since the previous mark."""
    rows, previous = [], (0.0, 0)
    for mark in marks:
        hit = next((s for s in samples if s[1] >= mark), None)
        if hit is None:
            continue
        rate = (hit[1] - previous[1]) / max(hit[0] - previous[0], 1e-9)
        rows.append({"images": mark, "rss_mb": round(hit[2], 1), "images_per_s": round(rate, 1),
                     "seconds": round(hit[0], 1)})
        previous = (hit[0], hit[1])
    return rows


API_SCRIPT = """
import sys, json
from pathlib import Path
import depthforge
from depthforge.predict import save_predictions
ckpt, inputs, out = sys.argv[1:4]
pipeline = depthforge.load(ckpt)
written = failed = 0
for item in save_predictions(pipeline, [inputs], out):
    if item.error is not None:
        failed += 1
        print("skipped", item.input, item.error, flush=True)
    else:
        written += 1
print(json.dumps({"written": written, "failed": failed}), flush=True)
"""


def tiny_checkpoint(folder: Path) -> Path:
    run = folder / "tiny"
    subprocess.run([sys.executable, "-m", "depthforge.cli", "train", "--out", str(run), "--max-steps", "20",
                    "model.name=unet_resnet18", "data.synthetic.num_train=16", "data.synthetic.num_val=4",
                    "data.synthetic.height=48", "data.synthetic.width=64", "data.batch_size=4",
                    "train.num_previews=0", "train.progress_bar=false", "-q"], check=True)
    return run / "checkpoints" / "last.ckpt"


def image_soak(ckpt: Path, work: Path, n: int) -> dict:
    inputs = work / "inputs"
    good, bad = write_images(inputs, n)
    marks = sorted({m for m in (1000, 5000, 10000) if m < good} | {good})
    results = {}
    for face, cmd in (("cli", [sys.executable, "-m", "depthforge.cli", "predict", "--checkpoint", str(ckpt),
                               str(inputs), "--out", str(work / "cli")]),
                      ("api", [sys.executable, "-c", API_SCRIPT, str(ckpt), str(inputs), str(work / "api")])):
        out = work / face
        out.mkdir()
        seen = {"n": 0}

        def count() -> int:  # .npy files written so far (a directory scan each 0.5 s: cheap at these counts)
            seen["n"] = sum(1 for p in out.iterdir() if p.suffix == ".npy")
            return seen["n"]

        log = work / f"{face}.log"
        samples, code = watch(cmd, count, log)
        text = log.read_text()
        named = [b for b in bad if b in text]
        written = count()
        results[face] = {"exit_code": code, "written": written, "good_inputs": good, "bad_inputs": len(bad),
                         "bad_named": len(named), "rows": at(samples, marks),
                         "peak_rss_mb": round(max(s[2] for s in samples), 1),
                         "total_seconds": round(samples[-1][0], 1)}
        print(face, json.dumps(results[face]), flush=True)
    return results


def video_soak(ckpt: Path, work: Path, minutes: float, fps: int = 10) -> dict:
    import av

    from depthforge.data import SyntheticScenes

    frames = int(minutes * 60 * fps)
    clip = work / "stream.mp4"
    scenes = SyntheticScenes(8, 48, 64, seed=5)
    base = [scenes.get_color(i) for i in range(8)]
    with av.open(str(clip), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):  # a slow pan over the scenes: consecutive frames overlap, as a real stream's do
            shift = (i // 4) % 64
            frame = np.roll(base[(i // 240) % 8], shift, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    out = work / "video"
    out.mkdir()
    log = work / "video.log"
    cmd = [sys.executable, "-m", "depthforge.cli", "predict", "--checkpoint", str(ckpt), str(clip), "--out", str(out),
           "--stabilize", "pose"]
    def count() -> int:  # frames are not printed one by one: the bytes written so far show the progress
        return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())

    samples, code = watch(cmd, count, log, every=2.0)
    done = 0
    written = [p for p in out.rglob("*.mp4")]
    if written:
        with av.open(str(written[0])) as container:
            done = sum(1 for _ in container.decode(video=0))
    rss = [s[2] for s in samples if s[1] > 0]  # from the first output on: the model loaded, the stream running
    quarter = max(len(rss) // 4, 1)
    return {"exit_code": code, "frames_in": frames, "frames_out": done, "minutes": minutes, "fps": fps,
            "rss_mb_first_quarter_max": round(max(rss[:quarter]), 1) if rss else None,
            "rss_mb_last_quarter_max": round(max(rss[-quarter:]), 1) if rss else None,
            "seconds": round(samples[-1][0], 1), "log_tail": log.read_text()[-400:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--video-minutes", type=float, default=20.0)
    parser.add_argument("--checkpoint", help="default: a tiny U-Net trained here for 20 steps")
    parser.add_argument("--skip-images", action="store_true")
    parser.add_argument("--skip-video", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        ckpt = Path(args.checkpoint) if args.checkpoint else tiny_checkpoint(work)
        images = {} if args.skip_images else image_soak(ckpt, work, args.images)
        video = {} if args.skip_video else video_soak(ckpt, work, args.video_minutes)
    lines = ["| face | images | RSS (MB) | images/s (since the previous row) |", "|---|---|---|---|"]
    for face, result in images.items():
        lines += [f"| {face} | {r['images']} | {r['rss_mb']} | {r['images_per_s']} |" for r in result["rows"]]
    table = "\n".join(lines)
    print(table)
    if video:
        print(json.dumps(video, indent=2))
    save_results("soak", table, {"cpu": cpu_info(), "command": "python benchmarks/soak.py " + " ".join(sys.argv[1:]),
                                 "images": {k: {kk: vv for kk, vv in v.items() if kk != "rows"}
                                            for k, v in images.items()},
                                 "video": video}, {"rows": images})
    return 0


if __name__ == "__main__":
    sys.exit(main())
