"""Video sequences with ground truth, in a folder a user can fill from any recording:

    SEQ/rgb/000000.png ...          frames in name order (png / jpg)
    SEQ/depth/000000.png ...        depth of the same stems: 16-bit PNG in millimetres (0 = no data) or .npy metres
    SEQ/intrinsics.txt              optional: "fx fy cx cy" (pixels, of the frames as stored)
    SEQ/poses.txt                   optional, TUM format: one "timestamp tx ty tz qx qy qz qw" line per frame, in
                                    frame order: camera-to-world, OpenCV axes (x right, y down, z forward)

Temporal alignment error (TAE) needs both text files; the pose-free flicker measure and per-frame accuracy do not.
`save_sequence` writes the same layout (from ``render_sequence`` for example), so the format has an example.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depthforge.io import IMAGE_SUFFIXES, DataError, read_rgb


def _quat_to_matrix(qx: float, qy: float, qz: float, qw: float) -> np.ndarray:
    q = np.array([qw, qx, qy, qz], np.float64)
    n = np.linalg.norm(q)
    if not n > 0:
        raise ValueError("zero quaternion")
    w, x, y, z = q / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _matrix_to_quat(r: np.ndarray) -> tuple[float, float, float, float]:
    """(qx, qy, qz, qw) of a rotation matrix (Shepperd's method, stable for every rotation)."""
    t = np.trace(r)
    if t > 0:
        s = 2 * np.sqrt(1 + t)
        return (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4
    i = int(np.argmax(np.diag(r)))
    j, k = (i + 1) % 3, (i + 2) % 3
    s = 2 * np.sqrt(1 + r[i, i] - r[j, j] - r[k, k])
    q = np.zeros(4)
    q[i] = s / 4
    q[j] = (r[j, i] + r[i, j]) / s
    q[k] = (r[k, i] + r[i, k]) / s
    q[3] = (r[k, j] - r[j, k]) / s
    return tuple(q)


def read_poses(path: Path, n: int) -> np.ndarray:
    """(n, 4, 4) camera-to-world poses from a TUM-format file with one line per frame (# comments skipped)."""
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) != n:
        raise DataError(f"{path}: {len(lines)} poses for {n} frames; give one 'timestamp tx ty tz qx qy qz qw' line "
                        "per frame, in frame order")
    poses = []
    for number, parts in enumerate(lines, 1):
        try:
            values = [float(v) for v in parts]
        except ValueError:
            values = []
        if len(values) != 8:
            raise DataError(f"{path}, pose {number}: expected 'timestamp tx ty tz qx qy qz qw' (8 numbers), got "
                            f"{' '.join(parts)!r}")
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = _quat_to_matrix(*values[4:]), values[1:4]
        poses.append(pose)
    return np.stack(poses)


def read_intrinsics(path: Path) -> np.ndarray:
    """3x3 K from a file holding ``fx fy cx cy``."""
    try:
        fx, fy, cx, cy = (float(v) for v in path.read_text().split())
    except ValueError:
        raise DataError(f"{path}: expected four numbers 'fx fy cx cy' (pixels)") from None
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)


def _read_depth(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False).astype(np.float32)
    from PIL import Image

    arr = np.asarray(Image.open(path))
    if arr.dtype != np.uint16:
        raise DataError(f"{path}: depth PNGs must be 16-bit millimetres (got {arr.dtype}); or save metres as .npy")
    return arr.astype(np.float32) / 1000.0


def load_sequence(folder: str | Path) -> dict:
    """``rgb`` (N, H, W, 3) uint8, ``depth`` (N, H, W) metres (0 = no data), ``stems``, and ``K`` / ``poses`` when
    the folder has them (else None)."""
    folder = Path(folder)
    rgb_dir, depth_dir = folder / "rgb", folder / "depth"
    if not rgb_dir.is_dir() or not depth_dir.is_dir():
        raise DataError(f"{folder}: a sequence folder needs rgb/ and depth/ (see depthforge.data.sequence)")
    frames = sorted(p for p in rgb_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(frames) < 2:
        raise DataError(f"{rgb_dir}: a sequence needs at least two frames, found {len(frames)}")
    depths = {p.stem: p for p in depth_dir.iterdir() if p.suffix.lower() in (".png", ".npy")}
    missing = [p.name for p in frames if p.stem not in depths]
    if missing:
        raise DataError(f"{depth_dir}: no depth for {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}; "
                        "give <stem>.png (16-bit mm) or <stem>.npy (metres) for every frame")
    rgb = np.stack([read_rgb(p) for p in frames])
    depth = np.stack([_read_depth(depths[p.stem]) for p in frames])
    if depth.shape[1:] != rgb.shape[1:3]:
        raise DataError(f"{folder}: depth maps are {depth.shape[1:]} but frames {rgb.shape[1:3]}; store them at "
                        "the same size")
    k_path, pose_path = folder / "intrinsics.txt", folder / "poses.txt"
    return {"rgb": rgb, "depth": depth, "stems": [p.stem for p in frames],
            "K": read_intrinsics(k_path) if k_path.is_file() else None,
            "poses": read_poses(pose_path, len(frames)) if pose_path.is_file() else None}


def save_sequence(seq: dict, folder: str | Path, max_depth: float = 65.0) -> Path:
    """Write ``rgb`` / ``depth`` (metres; beyond ``max_depth``, e.g. sky, stored as 0 = no data) / ``K`` /
    ``poses`` in the layout `load_sequence` reads."""
    from PIL import Image

    folder = Path(folder)
    (folder / "rgb").mkdir(parents=True, exist_ok=True)
    (folder / "depth").mkdir(parents=True, exist_ok=True)
    for i, (rgb, depth) in enumerate(zip(seq["rgb"], seq["depth"])):
        Image.fromarray(rgb).save(folder / "rgb" / f"{i:06d}.png")
        mm = np.where(depth <= max_depth, np.round(depth * 1000), 0).astype(np.uint16)
        Image.fromarray(mm).save(folder / "depth" / f"{i:06d}.png")
    if seq.get("K") is not None:
        k = seq["K"]
        (folder / "intrinsics.txt").write_text(f"{k[0, 0]:.6f} {k[1, 1]:.6f} {k[0, 2]:.6f} {k[1, 2]:.6f}\n")
    if seq.get("poses") is not None:
        lines = ["# timestamp tx ty tz qx qy qz qw (camera-to-world, OpenCV axes)"]
        for i, pose in enumerate(seq["poses"]):
            q = _matrix_to_quat(pose[:3, :3])
            lines.append(f"{i:d} " + " ".join(f"{v:.9f}" for v in (*pose[:3, 3], *q)))
        (folder / "poses.txt").write_text("\n".join(lines) + "\n")
    return folder
