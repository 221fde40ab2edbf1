"""Raw depth files that open correctly anywhere, each with a JSON sidecar saying what the numbers mean.

| format | content | precision |
|---|---|---|
| ``npy``  | float32 metres | exact |
| ``png16``| uint16 = round(metres * scale), default scale 1000 (millimetres, max 65.535 m; 0 = invalid) | 1 / scale m |
| ``pfm``  | float32 metres, Portable Float Map (little-endian, rows bottom to top, as MiDaS writes it) | exact |
| ``exr``  | float32 metres in channel ``Z``, through the official ``OpenEXR`` bindings (extra ``formats``) | exact |

The sidecar ``<file>.json`` holds units, scale, valid range, model, checkpoint, input size and intrinsics.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

FORMATS = ("npy", "png16", "pfm", "exr")
SUFFIX = {"npy": ".npy", "png16": ".png", "pfm": ".pfm", "exr": ".exr"}


def _openexr():
    try:
        import OpenEXR
    except ImportError as err:
        raise RuntimeError("EXR needs the OpenEXR bindings: pip install OpenEXR (or depthforge[formats]); "
                           "or write npy / pfm / png16") from err
    return OpenEXR


def write_pfm(path: Path, depth: np.ndarray) -> None:
    h, w = depth.shape
    with open(path, "wb") as f:
        f.write(f"Pf\n{w} {h}\n-1\n".encode())  # negative scale = little-endian
        f.write(np.flipud(depth).astype("<f4").tobytes())


def read_pfm(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        kind = f.readline().strip()
        if kind != b"Pf":
            raise ValueError(f"{path}: not a single-channel PFM (header {kind!r})")
        w, h = map(int, f.readline().split())
        scale = float(f.readline())
        data = np.frombuffer(f.read(), dtype="<f4" if scale < 0 else ">f4")
    if data.size != w * h:
        raise ValueError(f"{path}: truncated PFM ({data.size} of {w * h} values)")
    return np.flipud(data.reshape(h, w)).astype(np.float32)


def write_depth(path: str | Path, depth: np.ndarray, fmt: str = "npy", scale: float = 1000.0,
                meta: dict | None = None) -> tuple[Path, Path]:
    """Write ``depth`` (H, W metres) in ``fmt`` plus ``<file>.json``; returns both paths."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown depth format '{fmt}'; use one of {FORMATS}")
    path = Path(path).with_suffix(SUFFIX[fmt])
    path.parent.mkdir(parents=True, exist_ok=True)
    depth = np.asarray(depth, dtype=np.float32)
    sidecar = {"units": "metres", "format": fmt, "shape": list(depth.shape),
               "valid_range": [float(np.nanmin(depth)), float(np.nanmax(depth))], **(meta or {})}
    if fmt == "npy":
        np.save(path, depth)
        sidecar["scale"] = 1.0
    elif fmt == "png16":
        limit = 65535 / scale
        Image.fromarray(np.clip(np.round(depth * scale), 0, 65535).astype(np.uint16)).save(path)
        sidecar.update(scale=scale, encoding=f"metres = value / {scale:g}; 0 = invalid; saturates at {limit:g} m")
    elif fmt == "pfm":
        write_pfm(path, depth)
        sidecar["scale"] = 1.0
    else:
        exr = _openexr()
        with exr.File({"type": exr.scanlineimage}, {"Z": depth}) as f:
            f.write(str(path))
        sidecar["scale"] = 1.0
    side = path.with_name(path.name + ".json")
    side.write_text(json.dumps(sidecar, indent=2))
    return path, side


def read_depth(path: str | Path) -> tuple[np.ndarray, dict]:
    """Depth in metres and the sidecar (``{}`` if absent; 16-bit PNGs then assume millimetres)."""
    path = Path(path)
    side = path.with_name(path.name + ".json")
    meta = json.loads(side.read_text()) if side.is_file() else {}
    suffix = path.suffix.lower()
    if suffix == ".npy":
        depth = np.load(path, allow_pickle=False).astype(np.float32)
    elif suffix == ".png":
        raw = np.asarray(Image.open(path))
        if raw.dtype != np.uint16 and raw.dtype != np.int32:
            raise ValueError(f"{path}: an 8-bit PNG carries no metric depth; write 16-bit PNGs (format png16)")
        depth = raw.astype(np.float32) / float(meta.get("scale", 1000.0))
    elif suffix == ".pfm":
        depth = read_pfm(path)
    elif suffix == ".exr":
        with _openexr().File(str(path)) as f:
            channels = f.channels()
            key = "Z" if "Z" in channels else next(iter(channels))
            depth = np.asarray(channels[key].pixels, dtype=np.float32)
    else:
        raise ValueError(f"{path}: unknown depth file type; use one of {[SUFFIX[f] for f in FORMATS]}")
    return depth, meta
