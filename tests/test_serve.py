"""``depthforge serve``: the real server in a child process (uvicorn's supervisor, two workers), spoken to over HTTP.

Every response format is compared with the file ``depthforge predict`` writes for the same image and options; the
OpenAPI schema is fuzzed with schemathesis; hostile requests, a killed worker and SIGTERM during a request are tried
on the running service. The batcher, the loading state and the queue limit are tested in-process.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

import depthforge
from depthforge.cli import main
from depthforge.serve.batching import Batcher, QueueFull
from tests.conftest import shared_tiny
from tests.demo_driver import free_port

START_TIMEOUT = 180


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny40) -> Path:
    # trained long enough that flip TTA changes its depth: a dropped option shows in the bytes
    return shared_tiny(tiny40, tmp_path_factory, "serve")


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    from depthforge.data import SyntheticScenes

    path = tmp_path_factory.mktemp("photo") / "street.png"
    Image.fromarray(SyntheticScenes(1, 96, 160, seed=4).get_color(0)).save(path)
    return path


def start_server(args: list[str], log: Path, n_workers: int = 1) -> tuple[subprocess.Popen, str]:
    """``depthforge serve ARGS`` on a free port; the process and its URL once ``/health`` has been 200 from
    ``n_workers`` worker processes (each loads its own model)."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "depthforge.cli", "serve", *args, "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline, ready = time.time() + START_TIMEOUT, set()
    while time.time() < deadline and proc.poll() is None:
        try:
            # a new connection each time: the kernel hands it to either worker
            answer = httpx.get(f"{url}/health", timeout=2, headers={"connection": "close"})
            if answer.status_code == 200:
                ready.add(answer.json()["pid"])
                if len(ready) >= n_workers:
                    return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"depthforge serve did not start: {log.read_text()[-3000:]}")


def workers(proc: subprocess.Popen) -> set[int]:
    """The worker processes under the supervisor (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    found = set()
    for pid in map(int, children):
        try:
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except FileNotFoundError:
            pass
    return found


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    proc, url = start_server(["--checkpoint", str(checkpoint), "--workers", "2", "--max-bytes", str(2**20),
                              "--max-pixels", "1000000", "--read-timeout", "2"], log, n_workers=2)
    yield url, proc  # test_sigterm_finishes_the_request_in_flight_then_stops stops it (the last to use it)
    proc.terminate()
    proc.wait(timeout=60)


def post(url: str, data: bytes, filename: str = "street.png", **params) -> httpx.Response:
    return httpx.post(f"{url}/predict", params=params, files={"image": (filename, data, "image/png")}, timeout=60)


def test_each_format_is_the_file_depthforge_predict_writes(server, checkpoint, photo, tmp_path):
    url, _ = server
    out = tmp_path / "cli"
    assert main(["predict", "--checkpoint", str(checkpoint), str(photo), "--out", str(out), "--format", "npy",
                 "png16", "--ply", "--flip-tta", "--fx", "120"]) == 0
    data = photo.read_bytes()
    sidecar = json.loads((out / "street.npy.json").read_text())
    for fmt, file, raw in (("npy", "street.npy", "street.npy"), ("png16", "street.png", "street.png"),
                           ("ply", "street.ply", "street.npy")):
        answer = post(url, data, format=fmt, flip_tta="true", fx=120)
        assert answer.status_code == 200, answer.text
        assert answer.content == (out / file).read_bytes(), fmt
        assert answer.headers["content-disposition"] == f'attachment; filename="{file}"'
        assert json.loads(answer.headers["x-depth-sidecar"]) == json.loads((out / f"{raw}.json").read_text())
    answer = post(url, data, format="json", flip_tta="true", fx=120)
    depth = np.load(out / "street.npy")
    assert answer.json()["sidecar"] == sidecar
    assert answer.json()["summary"]["max"] == pytest.approx(float(depth.max()))
    assert answer.json()["summary"]["median"] == pytest.approx(float(np.median(depth)))
    # the raw body, named by the query, is the same file
    raw = httpx.post(f"{url}/predict", params={"flip_tta": "true", "fx": 120, "name": "street"}, content=data,
                     headers={"content-type": "image/png"})
    assert raw.content == (out / "street.npy").read_bytes()
    # the options matter on this model: without the flip the bytes differ
    assert post(url, data, flip_tta="false", fx=120).content != (out / "street.npy").read_bytes()


def test_the_client_gives_the_local_pipelines_result(server, checkpoint, photo):
    url, _ = server
    points = [(20, 30, 4.0), (120, 70, 9.0), (60, 50, 6.0)]
    with depthforge.Client(url) as client:
        remote = client.predict(photo, points=points, shift=True)
        local = depthforge.load(checkpoint).predict(photo, points=points, shift=True)
        assert np.array_equal(remote.depth, local.depth)
        assert remote.meta == local.meta and remote.calibration["shift"] != 0
        assert remote.intrinsics == local.intrinsics and remote.name == local.name == "street"
        assert np.array_equal(remote.valid, local.valid)
        array = np.asarray(Image.open(photo).convert("RGB"))[::-1].copy()  # an array input, upside down
        remote, local = client.predict(array, flip_tta=True), depthforge.load(checkpoint).predict(array, flip_tta=True)
        assert np.array_equal(remote.depth, local.depth) and remote.meta == local.meta
        with pytest.raises(ValueError, match="stabilize"):
            client.predict(photo, stabilize="flow")


def test_batched_requests_equal_the_pipeline_on_the_same_batch(tmp_path, checkpoint):
    """Requests of one size run as one batch; each answer is the pipeline's result for that batch (the last bits of
    float32 may differ from a one-image run, as they do between ``predict`` on a folder and on one file)."""
    from fastapi.testclient import TestClient

    from depthforge.serve import Settings, create_app

    rng = np.random.default_rng(3)
    files = []
    for i in range(4):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (72, 96, 3), np.uint8)).save(files[-1])
    from depthforge.serve import metrics

    app = create_app(Settings(spec={"checkpoint": str(checkpoint)}, max_batch_size=4, batch_timeout=5.0))
    runs = {s.name: s.value for s in metrics.BATCH.collect()[0].samples if s.name.endswith(("_count", "_sum"))}
    with TestClient(app) as client:
        wait_loaded(client)
        # as if a fifth request were on its way in: the four wait for company (up to 5 s) and fill one batch
        with app.state.service.batcher.arriving(), ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda f: client.post("/predict", files={"image": (f.name, f.read_bytes())}),
                                    files))
    batched = list(depthforge.load(checkpoint).predict(files, batch_size=4))
    for answer, result in zip(answers, batched):
        assert np.array_equal(np.load(io.BytesIO(answer.content)), result.depth)
    after = {s.name: s.value for s in metrics.BATCH.collect()[0].samples if s.name.endswith(("_count", "_sum"))}
    assert after["depthforge_batch_size_count"] - runs["depthforge_batch_size_count"] == 1  # one model run
    assert after["depthforge_batch_size_sum"] - runs["depthforge_batch_size_sum"] == 4  # took all four


def wait_loaded(client, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while client.get("/health").status_code != 200:
        assert time.time() < deadline, client.get("/health").json()
        time.sleep(0.1)


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample on a Prometheus page (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        sample, _, rest = key.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if sample == name and got == want:
            return float(value)
    return 0.0


def test_metrics_count_requests_over_both_workers(server, photo):
    url, _ = server
    before = httpx.get(f"{url}/metrics").text
    for _ in range(5):
        assert post(url, photo.read_bytes(), format="png16").status_code == 200
    assert post(url, b"", format="png16").status_code == 422
    after = httpx.get(f"{url}/metrics").text
    ok = {"status": "200", "format": "png16"}
    assert metric(after, "depthforge_requests_total", **ok) - metric(before, "depthforge_requests_total", **ok) == 5
    bad = {"status": "422", "format": "png16"}
    assert metric(after, "depthforge_requests_total", **bad) - metric(before, "depthforge_requests_total", **bad) == 1
    assert (metric(after, "depthforge_errors_total", reason="invalid")
            - metric(before, "depthforge_errors_total", reason="invalid")) == 1
    assert (metric(after, "depthforge_request_seconds_count")
            - metric(before, "depthforge_request_seconds_count")) == 6
    assert metric(after, "depthforge_batch_size_sum") - metric(before, "depthforge_batch_size_sum") == 5
    assert "depthforge_requests_in_flight 0.0" in after  # every answered request left the gauge


def test_a_dead_workers_requests_in_flight_are_forgotten_by_the_next_worker(tmp_path, monkeypatch):
    from depthforge.serve import metrics

    # a worker killed during a request: its gauge file says 1 in flight, and its pid is gone
    dead = subprocess.run([sys.executable, "-c", "import os; from prometheus_client import Gauge; Gauge("
                           "'depthforge_requests_in_flight', 'x', multiprocess_mode='livesum').inc(); print(os.getpid())"],
                          env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}, capture_output=True,
                          text=True, check=True)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    files = {p.name for p in tmp_path.iterdir()}
    assert files == {f"gauge_livesum_{dead.stdout.strip()}.db"}
    assert metric(metrics.exposition()[0].decode(), "depthforge_requests_in_flight") == 1
    # a living worker's file beside it (this process's pid), with one more in flight
    (tmp_path / f"gauge_livesum_{os.getpid()}.db").write_bytes((tmp_path / files.pop()).read_bytes())
    assert metric(metrics.exposition()[0].decode(), "depthforge_requests_in_flight") == 2
    metrics.forget_dead_workers()
    assert metric(metrics.exposition()[0].decode(), "depthforge_requests_in_flight") == 1  # the living one's
    assert {p.name for p in tmp_path.iterdir()} == {f"gauge_livesum_{os.getpid()}.db"}


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels over a few bytes of data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
            + chunk(b"IEND", b""))


def slow_upload(url: str) -> tuple[int, bytes]:
    """A client that sends its headers and 100 of the 5000 bytes it announced, then waits for the answer: the
    status and the whole body (read until its Content-Length: the head and the body may come in two writes)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n\r\n"
                  + b"\0" * 100)
        answer = b""
        while part := s.recv(65536):
            answer += part
            head, sep, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            if sep and length and len(body) >= int(length.group(1)):
                break
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_hostile_requests_get_a_4xx_with_one_line_and_no_worker_dies(server, photo):
    url, proc = server
    alive = workers(proc)
    good = photo.read_bytes()
    boundary = "xyz"
    huge_field = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\n{'a' * 300_000}\r\n"
                  f"--{boundary}--\r\n").encode()
    cases = {
        "empty": (post(url, b""), 422, "empty"),
        "truncated": (post(url, good[:300]), 422, "truncated"),
        "bomb": (post(url, png_header_only(50000, 50000)), 413, "2500000000 pixels"),
        "over --max-pixels": (post(url, png_header_only(2000, 1000)), 413, "2000x1000"),
        "not an image": (post(url, b"GIF89a" + b"\0" * 50), 422, "Pillow"),
        "wrong content type": (httpx.post(f"{url}/predict", content=good, headers={"content-type": "text/plain"}),
                               415, "text/plain"),
        "no image field": (httpx.post(f"{url}/predict", data={"x": "1"}, files={"other": ("a.png", good)}), 422,
                           "'image'"),
        "huge form field": (httpx.post(f"{url}/predict", content=huge_field,
                                       headers={"content-type": f"multipart/form-data; boundary={boundary}"}), 400,
                            "maximum size"),
        "over --max-bytes": (post(url, os.urandom(2**20 + 10)), 413, "limit"),
        "over --max-bytes, chunked": (httpx.post(f"{url}/predict", headers={"content-type": "image/png"},
                                                 content=iter([b"\0" * 2**19] * 3)), 413, "limit"),
        "unknown option": (post(url, good, colour="red"), 422, "colour"),
        "unknown format": (post(url, good, format="tiff"), 422, "format"),
        "point outside": (post(url, good, point="500,10,3"), 422, "point 500,10,3"),
        "tiny tile": (post(url, good, tile="8x8"), 422, "tile"),
        "relative scale": (post(url, good, tta_scales="9"), 422, "scale"),
    }
    for what, (answer, status, words) in cases.items():
        assert answer.status_code == status, (what, answer.text)
        reason = answer.json()["error"]
        assert words in reason and "\n" not in reason, (what, reason)
    status, body = slow_upload(url)
    assert status == 408 and b"--read-timeout" in body
    assert workers(proc) == alive
    assert post(url, good).status_code == 200


def test_the_openapi_schema_fuzzed_gets_no_5xx_and_loses_no_worker(server):
    """schemathesis generates requests from the schema FastAPI writes (options in and out of their ranges, multipart
    and raw bodies of arbitrary bytes); a fixed seed, a few hundred requests."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings

    url, proc = server
    alive = workers(proc)
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    seen: dict[int, int] = {}
    failures = []
    for found in schema.get_all_operations():
        operation = found.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=300 if operation.path == "/predict" else 5, deadline=None, derandomize=True,
                  database=None, suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def call(case):
            answer = case.call(base_url=url, timeout=60)
            seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
            if answer.status_code >= 500:
                failures.append((case.query, answer.text))

        call()
    assert not failures
    assert sum(seen.values()) >= 300 and seen.get(200, 0) > 20 and seen.get(422, 0) > 20, seen
    assert workers(proc) == alive


def test_a_killed_worker_is_started_again_and_the_service_answers(server, photo):
    url, proc = server
    before = workers(proc)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    statuses = []
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            statuses.append(post(url, photo.read_bytes()).status_code)
        except httpx.TransportError as err:  # the killed worker's connection
            statuses.append(type(err).__name__)
        now = workers(proc)
        if len(now) == 2 and victim not in now and statuses[-1] == 200:
            break
    now = workers(proc)
    assert victim not in now and len(now) == 2, (before, now)
    assert statuses[-1] == 200 and all(s in (200, 503) or isinstance(s, str) for s in statuses), statuses
    with depthforge.Client(url) as client:
        assert client.wait_ready(60)["status"] == "ok"


def test_sigterm_finishes_the_request_in_flight_then_stops(server, tmp_path):
    # The module's service (two workers) is stopped here: the last test of this file that uses it
    url, proc = server
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (160, 240, 3), np.uint8)).save(big)
    answer = {}

    def slow():  # tiles of 48x64 over 160x240, half overlapping: about a second of work
        answer["r"] = post(url, big.read_bytes(), "big.png", tile="48x64", overlap=0.5)

    thread = threading.Thread(target=slow)
    thread.start()
    deadline = time.time() + 60
    while "depthforge_requests_in_flight 1.0" not in httpx.get(f"{url}/metrics", timeout=10).text:
        assert time.time() < deadline and thread.is_alive(), answer  # the server took the request
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    thread.join(timeout=120)
    assert proc.wait(timeout=120) == 0
    assert answer["r"].status_code == 200 and np.load(io.BytesIO(answer["r"].content)).shape == (160, 240)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=5)


def test_health_is_503_until_the_model_is_loaded(checkpoint, photo, monkeypatch):
    from fastapi.testclient import TestClient

    import depthforge.serve.app as app_module
    from depthforge.serve import Settings, create_app

    gate = threading.Event()
    real_load = app_module.load
    monkeypatch.setattr(app_module, "load", lambda *a, **k: gate.wait(60) and real_load(*a, **k))
    with TestClient(create_app(Settings(spec={"checkpoint": str(checkpoint)}, timeout=2.0))) as client:
        assert client.get("/health").status_code == 503 and client.get("/health").json()["status"] == "loading"
        refused = client.post("/predict", files={"image": ("a.png", photo.read_bytes())})  # waited its 2 s
        assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
        assert "still loading" in refused.json()["error"]
        client.app.state.service.settings.timeout = 60  # the next request waits for the model, however slow
        with ThreadPoolExecutor(1) as pool:  # a request that arrives while the model loads waits for it
            waiting = pool.submit(client.post, "/predict?name=a", files={"image": ("a.png", photo.read_bytes())})
            time.sleep(0.3)
            assert not waiting.done()
            gate.set()
            assert waiting.result(30).status_code == 200
        assert client.get("/health").json()["model"] == "unet_resnet18"


def test_health_says_why_the_model_did_not_load(tmp_path):
    from fastapi.testclient import TestClient

    from depthforge.serve import Settings, create_app

    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with TestClient(create_app(Settings(spec={"checkpoint": str(bad)}))) as client:
        deadline = time.time() + 60
        while client.get("/health").json()["status"] == "loading" and time.time() < deadline:
            time.sleep(0.1)
        state = client.get("/health")
        assert state.status_code == 503 and state.json()["status"] == "failed" and "broken.ckpt" in state.json()["error"]


def test_a_full_queue_is_answered_503_with_retry_after(checkpoint, photo):
    from fastapi.testclient import TestClient

    from depthforge.serve import Settings, create_app

    with TestClient(create_app(Settings(spec={"checkpoint": str(checkpoint)}))) as client:
        wait_loaded(client)
        service = client.app.state.service

        class Full(Batcher):
            def submit(self, key, item):
                raise QueueFull(7)

        real, service.batcher = service.batcher, Full(lambda items: items)
        try:
            answer = client.post("/predict", files={"image": ("a.png", photo.read_bytes())})
        finally:
            service.batcher = real
        assert answer.status_code == 503 and answer.headers["retry-after"] == "7"
        assert "queue is full" in answer.json()["error"]


class Recorder:
    """A batch runner that records its batches; the first one waits for ``gate`` (so others queue meanwhile)."""

    def __init__(self):
        self.batches, self.gate, self.started = [], threading.Event(), threading.Event()

    def __call__(self, items):
        self.started.set()
        self.gate.wait(10)
        self.batches.append(list(items))
        return [f"done {i}" for i in items]


def test_the_batcher_groups_by_key_and_a_full_batch_does_not_wait_behind_another_keys_window():
    run = Recorder()
    batcher = Batcher(run, max_batch=2, timeout=0.05, max_queue=10)
    first = batcher.submit("x", "x1")
    assert run.started.wait(5)
    futures = [batcher.submit(k, v) for k, v in (("a", "a1"), ("b", "b1"), ("a", "a2"), ("a", "a3"))]
    with pytest.raises(QueueFull) as full:  # max_queue counts the waiting ones only
        for i in range(7):
            batcher.submit("c", f"c{i}")
    assert full.value.retry_after >= 1 and batcher.waiting == 10
    time.sleep(0.2)  # every window is over: batches go oldest first, each of one key
    run.gate.set()
    assert first.result(5) == "done x1" and [f.result(5) for f in futures] == ["done a1", "done b1", "done a2",
                                                                             "done a3"]
    batcher.stop()
    assert run.batches[:4] == [["x1"], ["a1", "a2"], ["b1"], ["a3"]]
    assert sorted(sum(run.batches[4:], [])) == [f"c{i}" for i in range(6)]

    run = Recorder()
    run.gate.set()
    batcher = Batcher(run, max_batch=2, timeout=5.0)
    start = time.monotonic()
    assert batcher.submit("z", "z1").result(2) == "done z1"  # a lone client's request runs at once
    with batcher.arriving():  # another request is on its way in: a1 waits (up to 5 s) for it
        slow = batcher.submit("a", "a1")
        pair = [batcher.submit("b", v) for v in ("b1", "b2")]
        assert [f.result(2) for f in pair] == ["done b1", "done b2"]  # a full batch does not wait behind a1
        assert run.batches == [["z1"], ["b1", "b2"]] and not slow.done()
    batcher.stop()  # stopping runs what is queued without waiting out its window
    assert slow.result(1) == "done a1" and time.monotonic() - start < 4  # a1's window was 5 s


def test_after_a_batch_of_several_a_request_waits_for_company():
    """Concurrent clients send their next requests a little apart: after a batch of several, the first to come
    back waits (up to the timeout) for the others instead of running alone."""
    run = Recorder()
    run.gate.set()
    batcher = Batcher(run, max_batch=4, timeout=2.0)  # a window a stalled test thread cannot outlast
    with batcher.arriving():
        first = [batcher.submit("a", f"a{i}") for i in range(4)]
    assert [f.result(5) for f in first] == [f"done a{i}" for i in range(4)]
    again = batcher.submit("a", "x1")
    time.sleep(0.1)  # the second client is 100 ms later
    second = batcher.submit("a", "x2")
    assert again.result(5) == "done x1" and second.result(5) == "done x2"
    batcher.stop()
    assert run.batches[1] == ["x1", "x2"]


def test_a_batch_that_fails_is_run_again_image_by_image(checkpoint, tmp_path):
    """One image that makes the model fail fails its own request only, not the batch it was in."""
    from depthforge.serve.app import Service, Settings

    service = Service(Settings(spec={"checkpoint": str(checkpoint)}))
    service.load()
    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((40, 56, 3), 60 * i, np.uint8)).save(files[-1])
    real = service.pipeline.stream

    def stream(paths, **options):  # the model fails on any batch holding 1.png
        if files[1] in paths:
            raise RuntimeError("the model failed")
        return real(paths, **options)

    service.pipeline.stream = stream
    results = service.run([(f, {}) for f in files])
    service.close()
    assert isinstance(results[1], RuntimeError)
    for file, result in zip(files[::2], results[::2]):
        assert np.array_equal(result.depth, depthforge.load(checkpoint).predict(file).depth)


def test_the_service_keeps_clamping_warnings_of_its_answers_only_out_of_the_log(tmp_path, caplog):
    """The server's log keeps to the server's events (each answer's sidecar has its clamped share), but an app made
    in someone's own process leaves the warnings of that process's other predictions as they are."""
    import logging
    import re

    from depthforge.predict.outputs import clamp_depth
    from depthforge.serve.app import Service, Settings, create_app

    ramp = np.linspace(-3, 30, 12, dtype=np.float32).reshape(3, 4)  # -3, 0, 3 .. 30: 2/12 under 1 mm, 7/12 over 10 m

    class Pipeline:  # a metric model's clamping, as Pipeline.result does it
        def stream(self, paths, **options):
            # meanwhile another thread of the same process predicts (not an answer: its warning stays)
            other = threading.Thread(target=clamp_depth, args=(ramp, (1e-3, 10.0), "concurrent.png"))
            other.start()
            other.join()
            return [clamp_depth(ramp, (1e-3, 10.0), str(path))[1] for path in paths]

    create_app(Settings(workdir=str(tmp_path)))  # as `depthforge serve` or an embedding app does
    service = Service(Settings(workdir=str(tmp_path)))
    service.pipeline = Pipeline()
    with caplog.at_level(logging.WARNING):
        answered = service.run([(tmp_path / "request.png", {}), (tmp_path / "second.png", {})])
        clamp_depth(ramp, (1e-3, 10.0), "outside.png")  # the same process, not an answer
        after = service.run([(tmp_path / "later.png", {})])
    service.close()
    assert [a["above"] for a in answered + after] == [pytest.approx(7 / 12)] * 3  # answered, with the share
    assert re.search(r"outside.png: 16\.7% of pixels below 0.001 m and 58\.3% above 10 m", caplog.text), caplog.text
    assert caplog.text.count("concurrent.png: 16.7% of pixels below") == 2, caplog.text  # once per run
    assert not re.search("request.png|second.png|later.png", caplog.text), caplog.text
