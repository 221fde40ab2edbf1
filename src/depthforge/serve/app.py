"""The HTTP face of the one prediction pipeline: ``POST /predict``, ``GET /health``, ``GET /metrics`` and the
OpenAPI schema FastAPI writes (``/openapi.json``, ``/docs``).

A request is read within its limits (`depthforge.serve.requests`), written to a private folder under the
name it was uploaded with, and queued for the size-aware `Batcher`, which runs
`depthforge.predict.Pipeline.stream` on a batch of same-size, same-option images exactly as
``depthforge predict`` runs a folder. The answer is the file `DepthResult.save` writes (the CLI's bytes) or
the sidecar and statistics as JSON; every refusal is a 4xx with one line, ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from depthforge.io import DataError
from depthforge.predict import DepthResult, Unreadable, load, safe_stem
from depthforge.serve import metrics
from depthforge.serve.batching import Batcher, QueueFull
from depthforge.serve.requests import (IMAGE_TYPES, RESPONSE_FORMATS, BadRequest, PredictQuery, check_image,
                                       upload)

log = logging.getLogger(__name__)
ENV = "DEPTHFORGE_SERVE"  # the settings, as JSON, for worker processes started by `depthforge serve`

# The clamped share of each image is in its answer's sidecar: while a service answers, the clamping warnings stay out
# of the server's log, which keeps to the server's events. Only there: an app made by `create_app` in someone's own
# process leaves the warnings of that process's other predictions as they are.
_answering: ContextVar[bool] = ContextVar("depthforge_serve_answering", default=False)


def _not_answering(record: logging.LogRecord) -> bool:
    return not _answering.get()


MEDIA = {"npy": "application/octet-stream", "png16": "image/png", "json": "application/json",
         "ply": "application/octet-stream", "npz": "application/octet-stream"}
EXTENSION = {"npy": ".npy", "png16": ".png", "json": ".json", "ply": ".ply", "npz": ".npz"}
BINARY = {"schema": {"type": "string", "format": "binary"}}
REQUEST_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                       "properties": {"image": {"type": "string", "format": "binary"}}}},
    **{kind: BINARY for kind in IMAGE_TYPES}}}}
ERROR = {"content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}}
RESPONSES = {200: {"description": "the depth in the format asked for; binary formats carry the sidecar in the "
                                  "X-Depth-Sidecar header", "content": {"application/octet-stream": BINARY,
                                                                        "image/png": BINARY}},
             **{code: {"description": what, **ERROR} for code, what in (
                 (400, "a multipart form that cannot be read"), (408, "the upload arrived too slowly"),
                 (413, "over the byte or pixel limit"), (415, "not an image type the service reads"),
                 (422, "options or an image that cannot be used"), (503, "loading, or the queue is full (Retry-After)"),
                 (504, "not answered within the request timeout"))}}


@dataclass
class Settings:
    """How one service runs: its source and its limits (``depthforge serve``'s options)."""

    spec: dict = field(default_factory=lambda: {"checkpoint": "runs/quickstart/checkpoints/best.ckpt"})
    device: str = "cpu"
    max_batch_size: int = 8
    batch_timeout: float = 0.01  # seconds a request waits for others of its size
    max_queue: int = 64  # requests waiting per worker; more are answered 503 with Retry-After
    timeout: float = 60.0  # seconds from the request's arrival to its answer (504 after)
    max_bytes: int = 25 * 2**20
    max_pixels: int = 40_000_000  # a 48-megapixel phone photo fits after --max-pixels 50000000
    read_timeout: float = 30.0  # seconds for the upload to arrive (a slow client gets 408)
    workdir: str | None = None  # request files live here while they are answered (default: the system's temp)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class Service:
    """One worker's state: the pipeline (loaded on a thread, so ``/health`` answers 503 meanwhile), its batcher and
    the folder request files live in."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.pipeline = None
        self.error: str | None = None
        self.batcher: Batcher | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"worker-{os.getpid()}-", dir=settings.workdir))

    def load(self) -> None:
        try:
            pipeline = load(self.settings.spec, self.settings.device)
        except Exception as err:  # the worker stays up and says why on /health
            self.error = f"{type(err).__name__}: {err}"
            log.error("depthforge serve: the model could not be loaded: %s", self.error)
            return
        s = self.settings
        self.batcher = Batcher(self.run, s.max_batch_size, s.batch_timeout, s.max_queue)
        self.pipeline = pipeline  # last: a request that sees the pipeline finds its batcher
        log.info("depthforge serve: %r ready", self.pipeline)

    async def ready(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the model (a worker started again after a crash loads it while requests
        arrive: they wait for it rather than fail); whether it is loaded."""
        deadline = time.monotonic() + seconds
        while self.pipeline is None and self.error is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.pipeline is not None

    def run(self, items: list[tuple[Path, dict]]) -> list:
        """One model run over same-size, same-option images (as ``depthforge predict`` runs a folder); when it
        fails, each image alone, so one bad request never fails the others."""
        answering = _answering.set(True)
        try:
            return self._run(items)
        finally:
            _answering.reset(answering)

    def _run(self, items: list[tuple[Path, dict]]) -> list:
        try:
            results = list(self.pipeline.stream([path for path, _ in items], errors="skip",
                                                batch_size=len(items), **items[0][1]))
        except Exception as err:
            if len(items) == 1:
                return [err]
            return [self._run([item])[0] for item in items]
        metrics.BATCH.observe(len(items))
        return results

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def summary(depth: np.ndarray) -> dict:
    """Statistics of a depth map for the JSON answer."""
    q = np.percentile(depth, [5, 50, 95])
    return {"min": float(depth.min()), "max": float(depth.max()), "mean": float(depth.mean()),
            "p5": float(q[0]), "median": float(q[1]), "p95": float(q[2])}


def encode(result: DepthResult, fmt: str, folder: Path) -> Response:
    """The answer for ``result``: the bytes `DepthResult.save` writes (npy, png16, ply) with the raw file's
    sidecar in the X-Depth-Sidecar header, that sidecar and statistics (json), or depth, valid mask and uncertainty
    in one archive with `DepthResult.meta` (npz, what `depthforge.Client` reads)."""
    if fmt == "npz":  # no file to write: the arrays and the result's metadata go into the archive
        files, sidecar = [], result.meta
    else:  # ply and json carry the sidecar of the npy file
        files = result.save(folder, formats=(fmt if fmt in ("npy", "png16") else "npy",), color=False,
                            ply=fmt == "ply")
        sidecar = json.loads(files[1].read_text())  # save() returns each raw file, then its sidecar
    if fmt == "json":
        body = {"name": result.name, "sidecar": sidecar, "summary": summary(result.depth),
                "valid_fraction": 1.0 if result.valid is None else float(result.valid.mean())}
        if result.uncertainty is not None:
            body["uncertainty"] = {"kind": result.uncertainty_kind, **summary(result.uncertainty)}
        content = json.dumps(body).encode()
    elif fmt == "npz":
        arrays = {"depth": result.depth, "sidecar": np.array(json.dumps(sidecar))}
        if result.valid is not None:
            arrays["valid"] = result.valid
        if result.uncertainty is not None:
            arrays["uncertainty"] = result.uncertainty
            arrays["uncertainty_kind"] = np.array(result.uncertainty_kind or "")
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        content = buffer.getvalue()
    else:
        content = files[-1 if fmt == "ply" else 0].read_bytes()
    headers = {"X-Depth-Sidecar": json.dumps(sidecar, separators=(",", ":")), "X-Depth-Kind": result.kind,
               "Content-Disposition": f'attachment; filename="{result.name}{EXTENSION[fmt]}"'}
    return Response(content, media_type=MEDIA[fmt], headers=headers)


def _error(status: int, reason: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service for ``settings``; its model loads when the app starts (``/health`` is 503 until then)."""
    settings = settings or Settings()
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        metrics.forget_dead_workers()
        threading.Thread(target=service.load, name="depthforge-load", daemon=True).start()
        yield
        await run_in_threadpool(service.close)  # queued requests are finished first

    logging.getLogger("depthforge.predict.outputs").addFilter(_not_answering)  # added once, however many apps
    app = FastAPI(title="depthforge", summary="Monocular depth as a service: an image in, depth in metres out.",
                  lifespan=lifespan)
    app.state.service = service

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "query")
        return _error(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.get("/health", responses={503: ERROR})
    async def health() -> JSONResponse:
        """200 once the model is loaded (``model``, ``kind``), 503 while it loads or when it failed (``error``)."""
        if service.pipeline is None:
            state = {"status": "failed", "error": service.error} if service.error else {"status": "loading"}
            return JSONResponse(state, status_code=503)
        return JSONResponse({"status": "ok", "model": service.pipeline.config.model.name,
                             "kind": service.pipeline.kind, "pid": os.getpid()})

    @app.get("/metrics", response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics: requests by status and format, latency, batch sizes, errors by reason."""
        content, media = metrics.exposition()
        return Response(content, media_type=media)

    @app.post("/predict", openapi_extra=REQUEST_BODY, responses=RESPONSES, response_class=Response)
    async def predict(request: Request, query: Annotated[PredictQuery, Query()]) -> Response:
        """Depth for one image (a multipart upload in the field ``image``, or the raw body), with the options of
        ``depthforge predict``; the answer in ``format``."""
        start = time.monotonic()
        try:
            with metrics.IN_FLIGHT.track_inprogress():
                response = await _predict(request, query, start)
        except BadRequest as err:
            response = _error(err.status, err.reason, err.headers)
            metrics.ERRORS.labels(reason=metrics.REASONS.get(err.status, "failed")).inc()
        metrics.REQUESTS.labels(status=str(response.status_code), format=query.format).inc()
        metrics.LATENCY.observe(time.monotonic() - start)
        return response

    async def _predict(request: Request, query: PredictQuery, start: float) -> Response:
        if not await service.ready(settings.timeout - (time.monotonic() - start)):
            raise BadRequest(503, service.error or "the model is still loading", {"Retry-After": "2"})
        folder = service.workdir / uuid.uuid4().hex
        try:
            with service.batcher.arriving():  # requests queued meanwhile wait for this one to join them
                data, filename = await upload(request, settings.max_bytes, settings.read_timeout)
                suffix, size = await run_in_threadpool(check_image, data, settings.max_pixels)
                options = query.options(size)
                folder.mkdir()
                path = folder / f"{query.name or safe_stem(filename)}{suffix}"
                path.write_bytes(data)
                try:
                    future = service.batcher.submit((size, json.dumps(options, sort_keys=True)), (path, options))
                except QueueFull as full:
                    raise BadRequest(503, str(full), {"Retry-After": str(full.retry_after)}) from None
            left = settings.timeout - (time.monotonic() - start)
            try:
                result = await asyncio.wait_for(asyncio.wrap_future(future), max(left, 0.001))
            except TimeoutError:
                raise BadRequest(504, f"no answer within {settings.timeout:g} s (--timeout)") from None
            except (ValueError, DataError) as err:  # options the source cannot honour, a calibration that fails
                raise BadRequest(422, str(err).splitlines()[0]) from None
            except Exception as err:  # a fault of the server's, not the request's: said in one line, logged whole
                log.exception("depthforge serve: %s failed", path.name)
                raise BadRequest(500, f"the model failed on this image ({type(err).__name__}); see the server log"
                                 ) from None
            if isinstance(result, Unreadable):
                raise BadRequest(422, result.reason)
            try:
                return await run_in_threadpool(encode, result, query.format, folder / "out")
            except ValueError as err:  # e.g. a point cloud of relative depth
                raise BadRequest(422, str(err)) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return app


def app_from_env() -> FastAPI:
    """The app of a worker process started by ``depthforge serve`` (its settings in ``$DEPTHFORGE_SERVE``)."""
    return create_app(Settings(**json.loads(os.environ[ENV])))


__all__ = ["ENV", "RESPONSE_FORMATS", "Settings", "create_app", "app_from_env", "encode"]
