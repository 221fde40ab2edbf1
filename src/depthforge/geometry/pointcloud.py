"""Depth + intrinsics -> coloured 3D points, written as binary PLY or GLB (the demo's 3D view)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from depthforge.geometry.camera import Intrinsics


def backproject(depth: np.ndarray, k: Intrinsics) -> np.ndarray:
    """(H*W, 3) camera-frame points (x right, y down, z forward) from planar z-depth."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    z = depth.astype(np.float64)
    z[~np.isfinite(z)] = np.nan  # no point: NaN, not inf (0 * inf at the principal point would warn)
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
    """xyz (N, 3) from a PLY written by `write_ply`."""
    raw = Path(path).read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    header = raw[:end].decode()
    n = int(header.split("element vertex ")[1].split()[0])
    has_rgb = "property uchar red" in header
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + ([("r", "u1"), ("g", "u1"), ("b", "u1")] if has_rgb else [])
    data = np.frombuffer(raw[end:], dtype=fields, count=n)
    return np.stack([data["x"], data["y"], data["z"]], axis=1).astype(np.float64)


def point_cloud(depth: np.ndarray, rgb: np.ndarray, k: Intrinsics, valid: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame points (N, 3) and their uint8 colours (N, 3) for the pixels that hold a depth: finite, > 0 and
    in ``valid`` (H, W) when given (a prediction's clamped pixels are not depth the model meant)."""
    points = backproject(depth, k)
    keep = np.isfinite(points).all(1) & (points[:, 2] > 0)
    if valid is not None:
        keep &= valid.reshape(-1)
    return points[keep], rgb.reshape(-1, 3)[keep]


def write_glb(path: str | Path, points: np.ndarray, colors: np.ndarray, max_points: int = 60_000) -> Path:
    """Points as a GLB point cloud (trimesh), every n-th kept so at most ``max_points`` remain (a web 3D view)."""
    import trimesh

    step = max(1, math.ceil(len(points) / max_points))
    pts = points[::step] * np.array([1.0, -1.0, -1.0])  # camera (y down, z forward) -> glTF (y up, looking down -z)
    cols = colors[::step]
    cloud = trimesh.PointCloud(pts, colors=np.concatenate([cols, np.full((len(cols), 1), 255, np.uint8)], 1))
    cloud.export(path)
    return Path(path)
