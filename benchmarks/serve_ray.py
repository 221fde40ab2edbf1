"""depthforge's service on Ray Serve: the same FastAPI app as ``depthforge serve``, two replicas on a local Ray
cluster behind Ray's HTTP proxy, and what that shows about scaling out.

    pip install "ray[serve]"
    python benchmarks/serve_ray.py --checkpoint runs/quickstart/checkpoints/best.ckpt \
        --images DATA/DepthEstimationUnreal/rgb/val [--requests 400] [--clients 8]

The app keeps no state between requests, so Ray's router may send each request to either replica: the run checks
that both replicas answered (their process ids, from ``/health``), that every answer is the file ``depthforge
predict`` writes for the same photo (bytes of the ``.npy``), and counts errors; it times ``--requests`` requests from
``--clients`` concurrent clients against the same app under ``depthforge serve`` with one worker, in the same run.
Writes benchmarks/results/serve_ray.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from _results import cpu_info, save_results  # benchmarks/_results.py (scripts run from the repository root)
from serve_load import photos, wait_ready


def app_builder(settings_json: str):
    """What each replica runs to build its app (Ray evaluates it in the replica's process)."""
    def build():
        from depthforge.serve import Settings, create_app

        return create_app(Settings(**json.loads(settings_json)))

    return build


def drive(url: str, files: list[Path], requests: int, clients: int) -> dict:
    """``requests`` posts from ``clients`` threads: requests/s, errors, the answers' bytes by photo."""
    answers: dict[str, set[bytes]] = {}
    errors = []

    def one(i: int) -> None:
        path = files[i % len(files)]
        try:
            r = httpx.post(f"{url}/predict", files={"image": (path.name, path.read_bytes(), "image/jpeg")},
                           timeout=120)
        except httpx.TransportError as err:
            errors.append(type(err).__name__)
            return
        if r.status_code != 200:
            errors.append(f"HTTP {r.status_code}")
            return
        answers.setdefault(path.name, set()).add(r.content)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(requests)))
    return {"rps": requests / (time.perf_counter() - start), "errors": errors, "answers": answers}


def replicas(url: str, tries: int = 60) -> set[int]:
    """Process ids that answered /health over ``tries`` new connections."""
    return {httpx.get(f"{url}/health", headers={"connection": "close"}).json()["pid"] for _ in range(tries)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="runs/quickstart/checkpoints/best.ckpt")
    ap.add_argument("--images", required=True)
    ap.add_argument("--n-images", type=int, default=16)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--port", type=int, default=8766)
    args = ap.parse_args()
    checkpoint = str(Path(args.checkpoint).resolve())
    files = photos(args.images, args.n_images)

    # what depthforge predict writes for each photo: the reference bytes, with both cores (as depthforge serve's
    # worker runs) and with one thread (as a Ray replica with num_cpus=1 runs: Ray sets OMP_NUM_THREADS=1, and
    # float sums in another order differ in the last bits)
    out = Path(tempfile.mkdtemp(prefix="serve-ray-"))
    expected = {}
    for threads in ("2", "1"):
        folder = out / f"cli-{threads}"
        subprocess.run([sys.executable, "-m", "depthforge.cli", "predict", "--checkpoint", checkpoint,
                        *map(str, files), "--out", str(folder), "--batch-size", "1", "-q"], check=True,
                       env={**os.environ, "OMP_NUM_THREADS": threads})
        expected[threads] = {p.name: (folder / f"{p.stem}.npy").read_bytes() for p in files}

    import ray
    from ray import serve

    from depthforge.serve import Settings

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    settings = Settings(spec={"checkpoint": checkpoint}, max_batch_size=1)  # bit-equal to one-image runs
    deployment = serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 1})(
        serve.ingress(app_builder(settings.to_json()))())
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(deployment.bind(), name="depthforge", route_prefix="/")
    url = f"http://127.0.0.1:{args.port}"
    started = time.time()
    seen: set[int] = set()
    while len(seen) < 2 and time.time() - started < 300:
        try:
            seen |= replicas(url, 10)
        except (httpx.TransportError, KeyError, ValueError):
            time.sleep(0.5)
    drive(url, files, 16, 2)  # warm-up
    ray_run = drive(url, files, args.requests, args.clients)
    seen |= replicas(url)
    serve.shutdown()
    ray.shutdown()

    # the same app under depthforge serve, one worker with both cores, in the same run
    with open(out / "serve.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "depthforge.cli", "serve", "--checkpoint", checkpoint,
                                   "--port", str(args.port + 1), "--max-batch-size", "1"], stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        local = f"http://127.0.0.1:{args.port + 1}"
        wait_ready(local)
        drive(local, files, 16, 2)
        one = drive(local, files, args.requests, args.clients)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)

    def same(run: dict, threads: str) -> bool:
        return all(answers == {expected[threads][name]} for name, answers in run["answers"].items())

    def largest_diff(run: dict, threads: str) -> float:
        return max(float(np.abs(np.load(io.BytesIO(a)) - np.load(io.BytesIO(expected[threads][name]))).max())
                   for name, answers in run["answers"].items() for a in answers)

    table = "\n".join([
        f"Ray Serve {ray.__version__}, 2 replicas (1 CPU each) on a local Ray cluster, against depthforge serve with "
        f"one worker, in one run ({cpu_info()}; {args.requests} requests from {args.clients} concurrent clients, "
        f"{len(files)} challenge val photos, `{args.checkpoint}`, --max-batch-size 1):", "",
        "| deployment | replicas that answered | requests/s | errors | every answer = `depthforge predict`'s file, "
        "bit for bit (its run with the same threads) | largest difference from the 2-thread file (m) |",
        "|---|---|---|---|---|---|",
        f"| Ray Serve, num_replicas=2, 1 thread each | {len(seen)} (pids {sorted(seen)}) | {ray_run['rps']:.2f} | "
        f"{len(ray_run['errors'])} | {same(ray_run, '1')} (1 thread) | {largest_diff(ray_run, '2'):.2g} |",
        f"| depthforge serve, 1 worker, 2 threads | 1 | {one['rps']:.2f} | {len(one['errors'])} | "
        f"{same(one, '2')} (2 threads) | {largest_diff(one, '2'):.2g} |"])
    print(table)
    save_results("serve_ray", table, {"command": " ".join(sys.argv), "replicas": sorted(seen),
                                      "ray_rps": ray_run["rps"], "ray_errors": ray_run["errors"],
                                      "ray_equal_1_thread": same(ray_run, "1"), "serve_rps": one["rps"],
                                      "serve_errors": one["errors"], "serve_equal_2_threads": same(one, "2")})


if __name__ == "__main__":
    main()
