"""A client of ``depthforge serve`` that gives what the local pipeline gives: ``depthforge.Client(url).predict(x)``
returns the same `DepthResult` as ``depthforge.load(...).predict(x)`` (the same depth, bit for bit, the same
sidecar, intrinsics and valid mask), so code moves from local to remote by changing one line.

Needs ``httpx`` (the ``serve`` extra).
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from depthforge.geometry.camera import Intrinsics
from depthforge.io import read_rgb
from depthforge.predict.pipeline import Options, expand
from depthforge.predict.result import DepthResult

# the sidecar keys DepthResult.meta computes; the rest is the result's info
COMPUTED = ("calibration", "units", "points_left_out", "intrinsics")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # the names the service writes files under
LOCAL_ONLY = ("batch_size", "sequence", "stabilize", "flow", "max_frames", "errors", "shard", "done")


class ServiceError(Exception):
    """The service refused or failed a request: its HTTP ``status`` and its one-line ``reason``."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"HTTP {status}: {reason}")
        self.status, self.reason = status, reason


def query(options: dict) -> list[tuple[str, str]]:
    """`Options` keywords as the service's query parameters (those a single image over HTTP can use)."""
    local = [k for k in LOCAL_ONLY if k in options]
    if local:
        raise ValueError(f"{', '.join(local)}: not options of the service (it takes one image at a time); "
                         "use depthforge.load(...) for videos and sharded runs")
    o = Options(**options)
    params = [("flip_tta", str(o.flip_tta).lower()), ("overlap", str(o.overlap)), ("hfov", str(o.hfov))]
    if o.tta_scales != (1.0,):
        params.append(("tta_scales", ",".join(f"{s:g}" for s in o.tta_scales)))
    if o.tile:
        params.append(("tile", "x".join(str(v) for v in o.tile)))
    if o.uncertainty:
        params.append(("uncertainty", o.uncertainty))
    params += [("point", f"{x},{y},{m:g}") for x, y, m in o.points]
    if o.shift:
        params.append(("shift", "true"))
    params += [(k, repr(float(getattr(o, k)))) for k in ("fx", "fy", "cx", "cy") if getattr(o, k) is not None]
    return params


def result_from_npz(content: bytes, kind: str, image: np.ndarray, name: str, path: Path | None) -> DepthResult:
    """The `DepthResult` an ``npz`` answer holds (``kind``: the X-Depth-Kind header)."""
    with np.load(io.BytesIO(content)) as z:
        meta = json.loads(str(z["sidecar"]))
        info = {k: v for k, v in meta.items() if k not in COMPUTED}
        unc_kind = str(z["uncertainty_kind"]) if "uncertainty_kind" in z else None
        return DepthResult(z["depth"], kind, image, Intrinsics(**meta["intrinsics"]),
                           z["uncertainty"] if "uncertainty" in z else None, unc_kind or None, name,
                           z["valid"] if "valid" in z else None, info, meta.get("calibration"), path)


class Client:
    """``depthforge.Client("http://host:8000").predict("photo.jpg", flip_tta=True)``: depth from a running
    ``depthforge serve``. A 503 (loading, or a full queue) is retried after its Retry-After, ``retries`` times."""

    def __init__(self, url: str = "http://127.0.0.1:8000", timeout: float = 120.0, retries: int = 3):
        try:
            import httpx
        except ModuleNotFoundError:
            raise ModuleNotFoundError("depthforge.Client needs httpx: pip install 'depthforge[serve]'") from None
        self.url, self.retries = url.rstrip("/"), retries
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def health(self) -> dict:
        """The service's ``/health`` answer (``status``: ok, loading or failed)."""
        return self.http.get("/health").json()

    def wait_ready(self, timeout: float = 120.0) -> dict:
        """Wait until the service has loaded its model; its health. TimeoutError after ``timeout`` seconds."""
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            try:
                state = self.health()
                if state.get("status") == "ok":
                    return state
                if state.get("status") == "failed":
                    raise ServiceError(503, state.get("error", "the model could not be loaded"))
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.url}: not ready within {timeout:g} s")
            time.sleep(0.2)

    def predict(self, x: Any, **options: Any) -> DepthResult | Iterator[DepthResult]:
        """Like `depthforge.Pipeline.predict` for still images: one result for one image (a path, a PIL
        image, an HxWx3 uint8 array), an iterator of them for a folder, a glob or a list."""
        params = query(options)
        items = ((name, item) for what, (name, item) in expand(x))
        if isinstance(x, (list, tuple)) or (isinstance(x, (str, Path)) and not Path(x).is_file()):
            return (self._one(name, item, params) for name, item in items)
        return self._one(*next(items), params)

    def _one(self, name: str, item: Any, params: list[tuple[str, str]]) -> DepthResult:
        if isinstance(item, np.ndarray):
            from PIL import Image

            buffer = io.BytesIO()
            Image.fromarray(item).save(buffer, format="PNG")  # lossless: the service decodes the same pixels
            data, image, path = buffer.getvalue(), item, None
            filename = f"{name}.png"
        else:
            path = Path(item)
            data, image, filename = path.read_bytes(), read_rgb(path), path.name
        params = [*params, ("format", "npz"), *([("name", name)] if SAFE_NAME.fullmatch(name) else [])]
        for attempt in range(self.retries + 1):
            answer = self.http.post("/predict", params=params, files={"image": (filename, data)})
            if answer.status_code != 503 or attempt == self.retries:
                break
            time.sleep(float(answer.headers.get("retry-after", "1")))
        if answer.status_code != 200:
            try:
                reason = answer.json().get("error", answer.text)
            except ValueError:
                reason = answer.text
            raise ServiceError(answer.status_code, f"{filename}: {reason}")
        return result_from_npz(answer.content, answer.headers["x-depth-kind"], image, name, path)
