"""Temporal consistency of video depth: TAE (Video Depth Anything) and a flicker measure that needs no poses.

Conventions: depth maps (N, H, W) planar z-depth in metres, pinhole intrinsics ``K`` (3, 3), camera-to-world poses
(N, 4, 4) with the camera looking down +z, x right, y down (OpenCV).
"""

from __future__ import annotations

import numpy as np


def fit_clip_scale_shift_disparity(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One scale and shift for the whole clip, fitted in disparity (1/depth) against the ground truth (as VDA's
    evaluation does); returns the aligned depth."""
    p, g = 1.0 / np.clip(pred[mask], 1e-6, None), 1.0 / gt[mask]
    a = np.stack([p, np.ones_like(p)], 1)
    (s, t), *_ = np.linalg.lstsq(a, g, rcond=None)
    return 1.0 / np.clip(s / np.clip(pred, 1e-6, None) + t, 1e-6, None)


def _reprojection_absrel(d_i: np.ndarray, d_j: np.ndarray, valid_i: np.ndarray, valid_j: np.ndarray,
                         k: np.ndarray, pose_i: np.ndarray, pose_j: np.ndarray) -> float:
    """Frame i's depth moved into frame j (back-project, relative pose, project): AbsRel against frame j's depth
    there, over pixels valid in both that land inside frame j.

    Frame j is read between pixels by bilinear interpolation of inverse depth (exact on planes, whose inverse
    depth is affine in the image), from four valid neighbours of one surface (their depths within 5 %), so that
    depth which moves exactly with the camera scores 0 and pixel rounding adds nothing.
    """
    h, w = d_i.shape
    v, u = np.nonzero(valid_i)
    z = d_i[v, u]
    pts = np.linalg.inv(k) @ np.stack([u * z, v * z, z])  # camera i
    rel = np.linalg.inv(pose_j) @ pose_i  # camera i -> world -> camera j
    pts_j = rel[:3, :3] @ pts + rel[:3, 3:4]
    front = pts_j[2] > 1e-6
    pts_j = pts_j[:, front]
    proj = k @ pts_j
    uj, vj, zj = proj[0] / proj[2], proj[1] / proj[2], pts_j[2]
    inside = (uj >= 0) & (uj <= w - 1) & (vj >= 0) & (vj <= h - 1)
    uj, vj, zj = uj[inside], vj[inside], zj[inside]
    u0, v0 = np.minimum(np.floor(uj).astype(int), w - 2), np.minimum(np.floor(vj).astype(int), h - 2)
    fu, fv = uj - u0, vj - v0
    corners = [(v0, u0), (v0, u0 + 1), (v0 + 1, u0), (v0 + 1, u0 + 1)]
    depth4 = np.stack([d_j[a, b] for a, b in corners])
    ok = np.all(np.stack([valid_j[a, b] for a, b in corners]), 0)
    ok &= depth4.max(0) <= 1.05 * depth4.min(0)
    if not ok.any():
        return float("nan")
    inv = 1.0 / np.clip(depth4[:, ok], 1e-6, None)
    fu, fv = fu[ok], fv[ok]
    weights = np.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv])
    target = 1.0 / (weights * inv).sum(0)
    return float(np.mean(np.abs(zj[ok] - target) / target))


def tae(pred: np.ndarray, gt: np.ndarray, k: np.ndarray, poses: np.ndarray, mask: np.ndarray | None = None,
        align: bool = True) -> float:
    """Temporal alignment error x 100: the mean over consecutive pairs, both directions, of the reprojection
    AbsRel of the (clip-aligned) prediction. 0 for depth that moves exactly with the camera (up to pixel rounding
    at depth edges)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or len(pred) < 2:
        raise ValueError(f"tae needs (N>=2, H, W) predictions and ground truth of one shape, got {pred.shape} "
                         f"and {gt.shape}")
    valid = (gt > 0) & np.isfinite(gt) if mask is None else mask
    aligned = fit_clip_scale_shift_disparity(pred, gt, valid) if align else pred
    errors = []
    for i in range(len(pred) - 1):
        for a, b in ((i, i + 1), (i + 1, i)):
            errors.append(_reprojection_absrel(aligned[a], aligned[b], valid[a], valid[b], k, poses[a], poses[b]))
    return 100.0 * float(np.nanmean(errors))


def flicker(pred: np.ndarray, static: np.ndarray | None = None) -> float:
    """Mean relative change between consecutive frames (x 100) after aligning each frame's median to the
    previous one, over ``static`` pixels (all when None): for a still camera (or static regions) without poses."""
    pred = np.asarray(pred, np.float64)
    sel = np.ones(pred.shape[1:], bool) if static is None else static
    out = []
    for a, b in zip(pred[:-1], pred[1:]):
        b = b * np.median(a[sel]) / max(np.median(b[sel]), 1e-9)
        out.append(np.mean(np.abs(b[sel] - a[sel]) / np.clip(a[sel], 1e-6, None)))
    return 100.0 * float(np.mean(out))
