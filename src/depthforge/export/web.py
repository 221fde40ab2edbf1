"""A folder that runs the model in a browser with no server of its own: ``depthforge export --format web``.

It holds the end-to-end ONNX file (`depthforge.export.app.EndToEnd`: any photo size in, metres at that size out),
ONNX Runtime Web (from the npm registry, copied in at export time: nothing is fetched from a CDN when the page runs)
and one HTML page: drop a photo, see its depth in colour, read the metres under the cursor. WebAssembly everywhere;
WebGPU where the browser offers an adapter. Any static file server serves it (``python -m http.server``); opened
as a ``file://`` URL the browser refuses to load the WebAssembly, so the page says to serve it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from importlib import resources
from pathlib import Path

ORT_WEB_VERSION = "1.30.0"
NPM_TIMEOUT_S = 600  # npm pack of about 30 MB; a stalled registry must not hang the export
# What the page loads: the WebAssembly build, and the WebGPU build (which brings its own WebAssembly)
ORT_WEB_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",
                 "ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm")
PAGE_MAX_SIDE = 640  # photos with a longer side are shrunk by the browser first (?max_side=0 turns it off)


class OrtWebError(RuntimeError):
    """ONNX Runtime Web could not be found or fetched."""


def ort_web_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "depthforge" / \
        f"onnxruntime-web-{ORT_WEB_VERSION}"


def find_ort_web(given: str | Path | None = None) -> Path:
    """The ``dist`` folder of onnxruntime-web: ``given`` (an unpacked npm package, its ``dist`` folder or the
    ``.tgz`` that ``npm pack`` writes), else $DEPTHFORGE_ORT_WEB, else the cached copy, else ``npm pack
    onnxruntime-web@ORT_WEB_VERSION`` from the npm registry into the cache (once)."""
    given = given or os.environ.get("DEPTHFORGE_ORT_WEB")
    if given:
        return _dist_of(Path(given))
    cache = ort_web_cache()
    if (cache / "package" / "dist" / ORT_WEB_FILES[0]).is_file():
        return cache / "package" / "dist"
    npm = shutil.which("npm")
    if npm is None:
        raise OrtWebError(f"the web export bundles onnxruntime-web {ORT_WEB_VERSION} from the npm registry, and npm "
                          "is not installed: install Node.js's npm, or pass --ort-web DIR (an unpacked "
                          "onnxruntime-web package or its .tgz)")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            done = subprocess.run([npm, "pack", f"onnxruntime-web@{ORT_WEB_VERSION}", "--silent"], cwd=tmp,
                                  capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise OrtWebError(f"npm pack onnxruntime-web@{ORT_WEB_VERSION} gave no answer within {NPM_TIMEOUT_S} s "
                              "(is the npm registry reachable?); pass --ort-web DIR (an unpacked onnxruntime-web "
                              "package or its .tgz)") from None
        packs = list(Path(tmp).glob("*.tgz"))
        if done.returncode or not packs:
            why = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no .tgz written"]
            raise OrtWebError(f"npm pack onnxruntime-web@{ORT_WEB_VERSION} failed ({why[0][:160]}); with no "
                              "network, pass --ort-web DIR (an unpacked onnxruntime-web package or its .tgz)")
        partial = cache.with_name(cache.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        _unpack(packs[0], partial)
        shutil.rmtree(cache, ignore_errors=True)
        partial.rename(cache)
    return _dist_of(cache)


def _unpack(tgz: Path, into: Path) -> None:
    into.mkdir(parents=True)
    with tarfile.open(tgz) as tar:
        tar.extractall(into, filter="data")  # the "data" filter: no absolute paths, links or devices


def _dist_of(path: Path) -> Path:
    if path.is_file() and path.name.endswith((".tgz", ".tar.gz")):
        cache = ort_web_cache().with_name(f"{path.name}.unpacked")
        if not cache.is_dir():
            _unpack(path, cache)
        path = cache
    for dist in (path, path / "dist", path / "package" / "dist"):
        if all((dist / name).is_file() for name in ORT_WEB_FILES):
            return dist
    raise OrtWebError(f"{path}: not an onnxruntime-web package (its dist/ folder with {', '.join(ORT_WEB_FILES[:3])}"
                      f", ...); get one with: npm pack onnxruntime-web@{ORT_WEB_VERSION}")


def _ort_web_license(dist: Path) -> str:
    package = dist.parent / "package.json"
    meta = json.loads(package.read_text()) if package.is_file() else {}
    return f"onnxruntime-web {meta.get('version', '?')} (Microsoft, {meta.get('license', 'MIT')} licence), " \
           "from the npm registry: https://www.npmjs.com/package/onnxruntime-web"


def write_web(folder: str | Path, onnx_file: Path, facts: dict, ort_web: str | Path | None = None) -> Path:
    """Fill ``folder`` (made anew) with the page, ``onnx_file`` as model.onnx and ONNX Runtime Web; the page's
    constants (facts, max side) are written into it. Built beside it, then renamed: a failure leaves no half
    folder, and an earlier folder stays until the new one is whole."""
    folder = Path(folder)
    dist = find_ort_web(ort_web)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "ort").mkdir(parents=True)
    for name in ORT_WEB_FILES:
        shutil.copy2(dist / name, tmp / "ort" / name)
    shutil.copy2(onnx_file, tmp / "model.onnx")
    page = resources.files("depthforge.export").joinpath("web_page.html").read_text()
    facts = {**facts, "page_max_side": PAGE_MAX_SIDE}
    page = page.replace("__DEPTHFORGE_FACTS__", json.dumps(facts).replace("</", "<\\/"))
    (tmp / "index.html").write_text(page)
    (tmp / "NOTICE.txt").write_text(
        "This folder was written by depthforge export --format web.\n"
        f"ort/: {_ort_web_license(dist)}\n"
        "model.onnx: the exported model; its licences: "
        + ("; ".join(f"{r.get('of', '?')}: {r.get('license', 'unknown')}" for r in facts.get("licenses", []))
           or "unknown") + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder
