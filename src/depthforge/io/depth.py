"""Raw depth files that open correctly anywhere, each with a JSON sidecar saying what the numbers mean.

| format | content | precision |
|---|---|---|
| ``npy``  | float32 metres | exact |
| ``png16``| uint16 = round(metres * scale), default scale 1000 (millimetres, max 65.535 m; 0 = invalid) | 1 / scale m |
| ``pfm``  | float32 metres, Portable Float Map (little-endian, rows bottom to top, as MiDaS writes it) | exact |
| ``exr``  | float32 metres in channel ``Z``, through the official ``OpenEXR`` bindings (extra ``formats``) | exact |

The sidecar ``<file>.json`` holds units, scale, valid range, model, checkpoint, input size and intrinsics.
Readers return float32 (H, W) metres and raise `DataError` naming the file and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from depthforge.io.errors import DataError

FORMATS = ("npy", "png16", "pfm", "exr")
SUFFIX = {"npy": ".npy", "png16": ".png", "pfm": ".pfm", "exr": ".exr"}
DEPTH_SUFFIXES = (".npy", ".png", ".pfm", ".exr")


def _openexr():
    try:
        import OpenEXR
    except ImportError as err:
        raise ImportError("EXR needs the OpenEXR bindings: pip install 'depthforge[formats]' (or write npy, pfm or "
                          "png16)", name="OpenEXR") from err
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
               "value_range": [float(np.nanmin(depth)), float(np.nanmax(depth))], **(meta or {})}
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


def read_npy_depth(path: Path) -> np.ndarray:
    """Load a ``.npy`` depth map in metres as float32 (H, W); accepts (1, H, W)."""
    try:
        depth = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: unreadable .npy depth ({err}); save it with numpy.save as a float array "
                        "(or pass data.skip_invalid=true)") from err
    if depth.ndim == 3 and depth.shape[0] == 1:
        depth = depth[0]
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
        raise DataError(f"{path}: depth must be a numeric HxW array, got dtype {depth.dtype} shape {depth.shape}")
    return depth.astype(np.float32, copy=False)


def _read_png_depth(path: Path, scale: float, require_16bit: bool) -> np.ndarray:
    try:
        with Image.open(path) as img:
            raw = np.asarray(img)
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"{path}: unreadable depth PNG ({err}); re-export it as 16-bit PNG") from err
    if raw.ndim != 2:
        raise DataError(f"{path}: depth PNG must be single-channel, got shape {raw.shape}")
    if require_16bit and raw.dtype not in (np.uint16, np.int32):
        raise DataError(f"{path}: an 8-bit PNG carries no metric depth; write 16-bit PNGs (format png16)")
    return raw.astype(np.float32) / float(scale)


def read_depth_file(path: Path, scale: float = 1.0, require_16bit: bool = False) -> np.ndarray:
    """Depth in metres (float32 HxW) from any supported file; ``scale`` divides 16-bit PNG values."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return read_npy_depth(path)
    if suffix == ".png":
        return _read_png_depth(path, scale, require_16bit)
    try:
        if suffix == ".pfm":
            return read_pfm(path)
        if suffix == ".exr":
            with _openexr().File(str(path)) as f:
                channels = f.channels()
                key = "Z" if "Z" in channels else next(iter(channels))
                return np.asarray(channels[key].pixels, dtype=np.float32)
    except (OSError, ValueError, RuntimeError) as err:
        raise DataError(f"{path}: unreadable depth file ({err})") from err
    raise DataError(f"{path}: unsupported depth file type; use one of {DEPTH_SUFFIXES}")


def read_sidecar(path: str | Path) -> dict:
    """The JSON sidecar ``<file>.json`` written beside a depth file, or ``{}`` if there is none. Sidecars written
    before depthforge 0.2 are read with the keys renamed as they are written now: ``valid_range`` (the min / max of
    the file's values) is ``value_range``, ``clamped.range`` (the depths the model can mean) is
    ``clamped.model_range``."""
    path = Path(path)
    side = path.with_name(path.name + ".json")
    meta = json.loads(side.read_text()) if side.is_file() else {}
    if "valid_range" in meta:
        meta["value_range"] = meta.pop("valid_range")
    if isinstance(meta.get("clamped"), dict) and "range" in meta["clamped"]:
        meta["clamped"]["model_range"] = meta["clamped"].pop("range")
    return meta


def read_depth(path: str | Path) -> tuple[np.ndarray, dict]:
    """Depth in metres and the sidecar (``{}`` if absent; 16-bit PNGs then assume millimetres)."""
    meta = read_sidecar(path)
    return read_depth_file(Path(path), float(meta.get("scale", 1000.0)), require_16bit=True), meta
