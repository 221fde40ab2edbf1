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
from PIL import Image

from depthforge.io.errors import DataError, one_line, shown

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
        header = [f.readline(16)]  # each to its line break, within a bound: a file without one is not read whole
        kind = header[0].strip()
        if kind != b"Pf":
            raise ValueError(f"{shown(path)}: not a single-channel PFM (header {kind[:8]!r})")
        header += [f.readline(64), f.readline(64)]
        if not all(line.endswith(b"\n") for line in header):  # a line cut at its bound would shift the values
            raise ValueError(f"{shown(path)}: a PFM header line is unterminated or over its limit (16 bytes for the "
                             "first, 64 for the others)")
        w, h = map(int, header[1].split())
        scale = float(header[2])
        if w <= 0 or h <= 0 or not np.isfinite(scale) or scale == 0:
            raise ValueError(f"{shown(path)}: the PFM header says {w}x{h}, scale {scale}")
        held = (path.stat().st_size - f.tell()) // 4
        if held != w * h:  # checked before reading: the header's size is not trusted with an allocation
            raise ValueError(f"{shown(path)}: truncated PFM ({held} of {w * h} values)")
        data = np.frombuffer(f.read(4 * w * h), dtype="<f4" if scale < 0 else ">f4")
    return np.flipud(data.reshape(h, w)).astype(np.float32)


def _read_exr(path: Path) -> np.ndarray:
    """Channel ``Z`` (else the first) of an EXR, its data window checked against the pixel limit from the header
    before the pixels are read."""
    from depthforge.io.images import MAX_PIXELS

    exr = _openexr()
    with exr.File(str(path), header_only=True) as f:
        (x0, y0), (x1, y1) = ((int(a), int(b)) for a, b in f.header()["dataWindow"])  # Python ints: no overflow
    if (x1 - x0 + 1) * (y1 - y0 + 1) > MAX_PIXELS or x1 < x0 or y1 < y0:
        raise DataError(f"{shown(path)}: the EXR header claims a {x1 - x0 + 1}x{y1 - y0 + 1} data window, over the "
                        f"{MAX_PIXELS / 1e6:.0f}-megapixel limit or empty; it was not read")
    with exr.File(str(path)) as f:
        channels = f.channels()
        key = "Z" if "Z" in channels else next(iter(channels))
        depth = np.asarray(channels[key].pixels, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"channel {key} is not a single-channel image ({depth.shape})")
    return depth


def write_depth(path: str | Path, depth: np.ndarray, fmt: str = "npy", scale: float = 1000.0,
                meta: dict | None = None) -> tuple[Path, Path]:
    """Write ``depth`` (H, W metres) in ``fmt`` plus ``<file>.json``; returns both paths."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown depth format '{fmt}'; use one of {FORMATS}")
    path = Path(path).with_suffix(SUFFIX[fmt])
    path.parent.mkdir(parents=True, exist_ok=True)
    depth = np.ascontiguousarray(depth, dtype=np.float32)  # the OpenEXR bindings ignore a view's strides
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


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a ``.npy`` header, checked against the file's size before anything is allocated (a
    header can claim any shape: 100 bytes claiming 100000x100000 floats must not become an 80 GB read)."""
    from numpy.lib import format as npy

    with open(path, "rb") as f:
        version = npy.read_magic(f)
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _, dtype = read(f, max_header_size=10_000)
        data_bytes = path.stat().st_size - f.tell()
    count = int(np.prod(shape, dtype=np.float64)) if shape else 1
    if dtype.hasobject or count * dtype.itemsize > data_bytes:
        raise ValueError(f"its header claims {shape} {dtype} ({count * dtype.itemsize} bytes) but the file holds "
                         f"{data_bytes}")
    return shape, dtype


def read_npy_depth(path: Path) -> np.ndarray:
    """Load a ``.npy`` depth map in metres as float32 (H, W); accepts (1, H, W)."""
    try:
        _npy_header(path)
        depth = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - numpy's header parser raises ValueError, SyntaxError, TokenError, ...
        raise DataError(f"{shown(path)}: unreadable .npy depth ({one_line(err)}); save it with numpy.save as a "
                        "float array (or pass data.skip_invalid=true)") from err
    if depth.ndim == 3 and depth.shape[0] == 1:
        depth = depth[0]
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
        raise DataError(f"{shown(path)}: depth must be a numeric HxW array, got dtype {depth.dtype} shape "
                        f"{depth.shape}")
    return depth.astype(np.float32, copy=False)


def _read_png_depth(path: Path, scale: float, require_16bit: bool) -> np.ndarray:
    from depthforge.io.images import MAX_PIXELS, _open

    try:
        with _open(path, MAX_PIXELS) as img:  # the pixel count checked from the header, before decoding
            raw = np.asarray(img)
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow's parsers raise many types on hostile bytes
        raise DataError(f"{shown(path)}: unreadable depth PNG ({one_line(err)}); re-export it as 16-bit PNG") from err
    if raw.ndim != 2:
        raise DataError(f"{shown(path)}: depth PNG must be single-channel, got shape {raw.shape}")
    if require_16bit and raw.dtype not in (np.uint16, np.int32):
        raise DataError(f"{shown(path)}: an 8-bit PNG carries no metric depth; write 16-bit PNGs (format png16)")
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
            return _read_exr(path)
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - a C library's or a parser's failure on the file's bytes
        what = " ".join(str(err).removeprefix(f"{shown(path)}: ").split())[:120] or type(err).__name__
        raise DataError(f"{shown(path)}: unreadable depth file ({what})") from err
    raise DataError(f"{shown(path)}: unsupported depth file type; use one of {DEPTH_SUFFIXES}")


def read_sidecar(path: str | Path) -> dict:
    """The JSON sidecar ``<file>.json`` written beside a depth file, or ``{}`` if there is none. Sidecars written
    before depthforge 0.2 are read with the keys renamed as they are written now: ``valid_range`` (the min / max of
    the file's values) is ``value_range``, ``clamped.range`` (the depths the model can mean) is
    ``clamped.model_range``."""
    path = Path(path)
    side = path.with_name(path.name + ".json")
    try:
        meta = json.loads(side.read_text(encoding="utf-8")) if side.is_file() else {}
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise DataError(f"{shown(side)}: not a JSON sidecar ({type(err).__name__}: {str(err)[:80]}); delete it or "
                        "write it again with depthforge predict") from None
    if not isinstance(meta, dict):
        raise DataError(f"{shown(side)}: a sidecar is a JSON object, got a {type(meta).__name__}; delete it or "
                        "write it again with depthforge predict")
    if "valid_range" in meta:
        meta["value_range"] = meta.pop("valid_range")
    if isinstance(meta.get("clamped"), dict) and "range" in meta["clamped"]:
        meta["clamped"]["model_range"] = meta["clamped"].pop("range")
    return meta


def read_depth(path: str | Path) -> tuple[np.ndarray, dict]:
    """Depth in metres and the sidecar (``{}`` if absent; 16-bit PNGs then assume millimetres)."""
    meta = read_sidecar(path)
    try:
        scale = float(meta.get("scale", 1000.0))
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError
    except (TypeError, ValueError):
        raise DataError(f"{shown(path)}.json: 'scale' must be a number over 0 (metres = value / scale), got "
                        f"{str(meta.get('scale'))[:40]!r}") from None
    return read_depth_file(Path(path), scale, require_16bit=True), meta
