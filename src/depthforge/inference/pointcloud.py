"""Depth + intrinsics -> coloured point cloud (binary PLY), and where the intrinsics come from."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# Without EXIF or user intrinsics a horizontal field of view must be guessed; 60 degrees is a typical phone/webcam
# value. The guess is written into the sidecar so nobody mistakes it for a calibration.
DEFAULT_HFOV_DEG = 60.0


@dataclass
class Intrinsics:
    """Pinhole intrinsics in pixels (OpenCV convention: pixel centres at integer coordinates)."""

    fx: float
    fy: float
    cx: float
    cy: float
    source: str = "given"

    def to_dict(self) -> dict:
        return asdict(self)

    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float = DEFAULT_HFOV_DEG) -> Intrinsics:
        f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
        return cls(f, f, (width - 1) / 2, (height - 1) / 2, source=f"guess: horizontal FOV {hfov_deg:g} deg")


def intrinsics_from_exif(path: str | Path, width: int, height: int) -> Intrinsics | None:
    """From EXIF ``FocalLengthIn35mmFilm`` (36 mm wide frame), or None when the file has no such tag."""
    try:
        exif = Image.open(path).getexif().get_ifd(0x8769)  # the Exif sub-IFD holds the focal length tags
    except (OSError, AttributeError):
        return None
    f35 = exif.get(0xA405)  # FocalLengthIn35mmFilm
    if not f35:
        return None
    fx = float(f35) / 36.0 * max(width, height)
    return Intrinsics(fx, fx, (width - 1) / 2, (height - 1) / 2, source=f"EXIF 35mm-equivalent focal {f35} mm")


def backproject(depth: np.ndarray, k: Intrinsics) -> np.ndarray:
    """(H*W, 3) camera-frame points (x right, y down, z forward) from planar z-depth."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    z = depth.astype(np.float64)
    return np.stack([(u - k.cx) / k.fx * z, (v - k.cy) / k.fy * z, z], axis=-1).reshape(-1, 3)


def write_ply(path: str | Path, points: np.ndarray, colors: np.ndarray | None = None) -> Path:
    """Binary little-endian PLY with float xyz and optional uint8 rgb."""
    path = Path(path)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    data = np.empty(len(points), dtype=fields)
    data["x"], data["y"], data["z"] = points[:, 0], points[:, 1], points[:, 2]
    if colors is not None:
        data["red"], data["green"], data["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    props = "".join(f"property {'float' if t == '<f4' else 'uchar'} {n}\n" for n, t in fields)
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {len(points)}\n{props}end_header\n"
    with open(path, "wb") as f:
        f.write(header.encode())
        f.write(data.tobytes())
    return path


def read_ply(path: str | Path) -> np.ndarray:
    """xyz (N, 3) from a PLY written by :func:`write_ply`."""
    raw = Path(path).read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    header = raw[:end].decode()
    n = int(header.split("element vertex ")[1].split()[0])
    has_rgb = "property uchar red" in header
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + ([("r", "u1"), ("g", "u1"), ("b", "u1")] if has_rgb else [])
    data = np.frombuffer(raw[end:], dtype=fields, count=n)
    return np.stack([data["x"], data["y"], data["z"]], axis=1).astype(np.float64)


def depth_to_ply(path: str | Path, depth: np.ndarray, rgb: np.ndarray, k: Intrinsics,
                 max_depth: float | None = None) -> Path:
    """Coloured point cloud of the valid pixels (finite, > 0, and <= ``max_depth`` when given)."""
    points = backproject(depth, k)
    colors = rgb.reshape(-1, 3)
    z = points[:, 2]
    keep = np.isfinite(z) & (z > 0) & ((z <= max_depth) if max_depth else True)
    return write_ply(path, points[keep], colors[keep])
