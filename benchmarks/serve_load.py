"""The load ``depthforge serve`` holds, against the bare pipeline in the same run, and what a killed worker costs.

    python benchmarks/serve_load.py --checkpoint runs/quickstart/checkpoints/best.ckpt \
        --images DATA/DepthEstimationUnreal/rgb/val [--seconds 30] [--long-seconds 120] [--rss-requests 5000]

1. In-process baseline: ``Pipeline.predict`` on the same photos, one at a time (latency p50 / p95 / p99, images/s)
   and in batches of 8 (images/s), in this process before the server starts.
2. The service (``depthforge serve``, its defaults, one worker) driven by Locust (benchmarks/serve_locustfile.py,
   closed loop, multipart uploads) at 1, 4 and 16 concurrent users, ``--seconds`` each: requests/s, p50 / p95 / p99,
   errors, and the mean batch size from the service's own /metrics.
3. A long run at 16 users (``--long-seconds``, then on until ``--rss-requests`` requests in all): the error rate and
   the worker's resident memory after warm-up and at the end.
4. SIGKILL of the worker during a 4-user run: what the users see (failures by reason) and the seconds until /health
   is 200 again (the supervisor starts a new worker; nobody restarts anything by hand).

Locust runs on the same two cores as the server, so the service's figures include the load generator's share of
the CPU; the ratios to the bare pipeline are the figure. Writes benchmarks/results/serve_load.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from _results import cpu_info, save_results  # benchmarks/_results.py (scripts run from the repository root)

HERE = Path(__file__).parent


def baseline(checkpoint: str, files: list[Path], seconds: float) -> dict:
    """The bare pipeline on the photos: one at a time for ``seconds``, then in batches of 8."""
    import depthforge

    pipeline = depthforge.load(checkpoint)
    for f in files[:4]:
        pipeline.predict(f)  # warm-up
    latencies, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        pipeline.predict(files[len(latencies) % len(files)])
        latencies.append(time.perf_counter() - t)
    single = len(latencies) / (time.perf_counter() - start)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        chunk = [files[(done + i) % len(files)] for i in range(8)]
        done += len(list(pipeline.predict(chunk, batch_size=8)))
    ms = np.array(latencies) * 1000
    return {"rps": single, "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99)), "batched_rps": done / (time.perf_counter() - start),
            "n": len(latencies)}


def photos(folder: str | Path, n: int) -> list[Path]:
    """The first ``n`` images of ``folder`` in name order (what Locust's users send too)."""
    from depthforge.io import IMAGE_SUFFIXES

    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:n]


def worker_pids(server: subprocess.Popen) -> list[int]:
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return [int(p) for p in children if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()]


def rss_mb(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def wait_ready(url: str, timeout: float = 300) -> float:
    """Seconds until /health answers 200 on a new connection."""
    start = time.time()
    while time.time() - start < timeout:
        try:
            if httpx.get(f"{url}/health", timeout=2, headers={"connection": "close"}).status_code == 200:
                return time.time() - start
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready in {timeout} s")


def batch_stats(url: str) -> tuple[float, float]:
    """(runs, images) so far from the service's depthforge_batch_size histogram."""
    text = httpx.get(f"{url}/metrics").text
    value = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
             if line.startswith(("depthforge_batch_size_count", "depthforge_batch_size_sum"))}
    return value.get("depthforge_batch_size_count", 0.0), value.get("depthforge_batch_size_sum", 0.0)


def locust(url: str, users: int, seconds: float, images: Path, n: int, out: Path) -> dict:
    """One headless Locust run; its aggregated stats and failures."""
    prefix = out / f"u{users}-{int(seconds)}"
    env = {**os.environ, "DEPTHFORGE_LOAD_IMAGES": str(images), "DEPTHFORGE_LOAD_N": str(n)}
    subprocess.run([sys.executable, "-m", "locust", "-f", str(HERE / "serve_locustfile.py"), "--headless",
                    "--host", url, "-u", str(users), "-r", str(users), "-t", f"{int(seconds)}s", "--csv",
                    str(prefix), "--only-summary", "--stop-timeout", "30", "--loglevel", "WARNING"],
                   env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(f"{prefix}_stats.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    with open(f"{prefix}_failures.csv") as f:
        failures = {r["Error"][:120]: int(r["Occurrences"]) for r in csv.DictReader(f)}
    return {"users": users, "requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
            "rps": float(row["Requests/s"]), "p50": float(row["50%"]), "p95": float(row["95%"]),
            "p99": float(row["99%"]), "failure_reasons": failures}


def start(checkpoint: str, port: int, log: Path, options: list[str]) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "depthforge.cli", "serve", "--checkpoint", checkpoint,
                                 "--port", str(port), *options], stdout=out, stderr=subprocess.STDOUT)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="runs/quickstart/checkpoints/best.ckpt")
    ap.add_argument("--images", required=True, help="a folder of photos (the challenge val split's rgb/val)")
    ap.add_argument("--n-images", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--long-seconds", type=float, default=120)
    ap.add_argument("--rss-requests", type=int, default=5000)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--serve-options", default="", help="more options of depthforge serve, e.g. '--batch-timeout 0'")
    ap.add_argument("--skip-baseline", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    images = Path(args.images)
    files = photos(images, args.n_images)
    size = __import__("PIL.Image", fromlist=["Image"]).open(files[0]).size

    base = baseline(args.checkpoint, files, args.seconds)
    print(f"bare pipeline: {base['rps']:.2f} images/s one at a time (p50 {base['p50']:.0f} ms), "
          f"{base['batched_rps']:.2f} in batches of 8", flush=True)

    url, out = f"http://127.0.0.1:{args.port}", Path(tempfile.mkdtemp(prefix="serve-load-"))
    server = start(args.checkpoint, args.port, out / "serve.log", args.serve_options.split())
    rows, long, kill = [], {}, {}
    try:
        wait_ready(url)
        locust(url, 4, 5, images, args.n_images, out)  # warm-up
        for users in (1, 4, 16):
            before = batch_stats(url)
            row = locust(url, users, args.seconds, images, args.n_images, out)
            after = batch_stats(url)
            row["mean_batch"] = (after[1] - before[1]) / max(after[0] - before[0], 1)
            rows.append(row)
            print(row, flush=True)

        worker = worker_pids(server)[0]
        long["rss_start_mb"] = rss_mb(worker)
        first = locust(url, 16, args.long_seconds, images, args.n_images, out)
        runs = [first]
        while sum(r["requests"] for r in runs) < args.rss_requests:
            left = args.rss_requests - sum(r["requests"] for r in runs)
            runs.append(locust(url, 16, left / max(first["rps"], 0.1) + 5, images, args.n_images, out))
        long.update({"seconds": args.long_seconds, "requests_long_run": first["requests"],
                     "failures_long_run": first["failures"], "rps": first["rps"], "p99": first["p99"],
                     "requests": sum(r["requests"] for r in runs), "failures": sum(r["failures"] for r in runs),
                     "rss_end_mb": rss_mb(worker), "same_worker": worker in worker_pids(server)})
        print(long, flush=True)

        # SIGKILL of the worker 10 s into a 4-user, 40 s run
        import threading

        result = {}
        thread = threading.Thread(target=lambda: result.update(locust(url, 4, 40, images, args.n_images, out)))
        thread.start()
        time.sleep(10)
        victim = worker_pids(server)[0]
        os.kill(victim, signal.SIGKILL)
        killed = time.time()
        wait_ready(url)  # a new connection waits in the socket's backlog until the new worker takes it
        kill["back_after_s"] = time.time() - killed
        thread.join()
        kill.update({"requests": result["requests"], "failures": result["failures"],
                     "failure_reasons": result["failure_reasons"], "new_worker": worker_pids(server) != [victim]})
        print(kill, flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)

    table = [f"Service vs bare pipeline ({cpu_info()}; {size[1]}x{size[0]} photos from {images}; "
             f"`{args.checkpoint}`):", "",
             "| load | requests/s | vs bare pipeline (one at a time) | p50 ms | p95 ms | p99 ms | errors | "
             "mean batch |", "|---|---|---|---|---|---|---|---|",
             f"| bare `Pipeline.predict`, one at a time | {base['rps']:.2f} | 1.00x | {base['p50']:.0f} | "
             f"{base['p95']:.0f} | {base['p99']:.0f} | - | 1 |",
             f"| bare `Pipeline.predict`, batches of 8 | {base['batched_rps']:.2f} | "
             f"{base['batched_rps'] / base['rps']:.2f}x | - | - | - | - | 8 |"]
    for r in rows:
        table.append(f"| service, {r['users']} concurrent user(s) | {r['rps']:.2f} | {r['rps'] / base['rps']:.2f}x | "
                     f"{r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | {r['failures']} / {r['requests']} | "
                     f"{r['mean_batch']:.2f} |")
    table += ["", f"Long run: 16 users for {args.long_seconds:.0f} s: {long['requests_long_run']} requests, "
              f"{long['failures_long_run']} errors, {long['rps']:.2f} requests/s, p99 {long['p99']:.0f} ms; "
              f"{long['requests']} requests in all ({long['failures']} errors): worker RSS "
              f"{long['rss_start_mb']:.0f} MB after warm-up, {long['rss_end_mb']:.0f} MB at the end.",
              f"SIGKILL of the worker 10 s into a 4-user 40 s run: {kill['failures']} of {kill['requests']} requests "
              f"failed ({kill['failure_reasons']}); /health 200 again {kill['back_after_s']:.1f} s after the kill, "
              "from the worker the supervisor started."]
    text = "\n".join(table)
    print(text)
    save_results("serve_load", text, {"command": " ".join(sys.argv), "baseline": base, "service": rows,
                                      "long": long, "kill": kill})


if __name__ == "__main__":
    main()
