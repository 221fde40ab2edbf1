"""Video depth stabilisation for any per-frame source: the frame's global scale follows a smoothed track.

A per-frame model's flicker is mostly a frame-to-frame wobble of its global scale (the whole map a few per cent
nearer or farther). Both stabilisers estimate each frame's log-scale (median log depth over its pixels), smooth that
track, and rescale the frame onto it; the map's shape is left as predicted.

- ``causal``: online, for a live camera: an alpha-beta (Holt) filter on the log-scale, which follows steady change
  (the camera walking towards a wall) without lag and damps the wobble; frame t uses frames 0..t only.
- ``offline``: the whole clip: zero-phase Gaussian smoothing of the log-scale track (no lag at all).
- ``flow``: causal, for local flicker (edges, thin objects) too: after the ``causal`` scale filter, the previous
  output is warped into the frame along the optical flow between the two RGB frames (OpenCV's Farneback or DIS, or
  torchvision's RAFT where its weights are on disk), fitted to the frame with one scale and shift (the camera's
  motion changes every depth), and blended with the frame's own depth where the flow is trusted: inside the image,
  photometrically consistent, and within ``max_change`` of the new depth (else the new depth is a real change, a
  disocclusion or a moving object, and is kept).
- ``pose``: ``flow`` made 3D-aware, for a static scene seen by a moving camera (needs the intrinsics ``K``): the
  camera's motion since the last frame is estimated from the flow matches and the previous output's 3D points
  (PnP with RANSAC, OpenCV), and the previous output is moved into this frame by that motion (each pixel's depth
  changes by its own amount, which one scale and shift cannot express), then blended as in ``flow``. Where the pose
  cannot be estimated (too few consistent matches) the frame falls back to ``flow``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

MODES = ("none", "causal", "offline", "flow", "pose")
FLOWS = ("farneback", "dis", "raft")
SCALE_FILTERS = ("median", "flow", "none")


def log_scale(depth: np.ndarray) -> float:
    """The frame's global log-scale: median log depth over finite positive pixels."""
    d = depth[np.isfinite(depth) & (depth > 0)]
    return float(np.median(np.log(d))) if d.size else 0.0


class CausalStabilizer:
    """Call once per frame in order; returns the stabilised frame. ``alpha`` weights the new frame's level,
    ``beta`` its trend (smaller = smoother)."""

    def __init__(self, alpha: float = 0.3, beta: float = 0.05):
        if not (0 < alpha <= 1 and 0 <= beta <= 1):
            raise ValueError(f"alpha must be in (0, 1] and beta in [0, 1], got {alpha}, {beta}")
        self.alpha, self.beta = alpha, beta
        self.level: float | None = None
        self.trend = 0.0

    def __call__(self, depth: np.ndarray) -> np.ndarray:
        g = log_scale(depth)
        if self.level is None:
            self.level = g
        else:
            predicted = self.level + self.trend
            level = predicted + self.alpha * (g - predicted)
            self.trend += self.beta * (level - self.level - self.trend)
            self.level = level
        return (depth * np.exp(self.level - g)).astype(depth.dtype)


def _cv2():
    try:
        import cv2
    except ImportError as err:
        raise ImportError("flow-guided stabilisation needs OpenCV: pip install 'depthforge[video]'") from err
    return cv2


def _gray(rgb: np.ndarray) -> np.ndarray:
    return _cv2().cvtColor(np.ascontiguousarray(rgb), _cv2().COLOR_RGB2GRAY)


def optical_flow(method: str = "farneback") -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``flow(rgb_a, rgb_b)`` -> (H, W, 2) pixel offsets (x, y) with ``a[y, x] ~ b[y + dy, x + dx]``.

    ``farneback`` / ``dis``: OpenCV's classical dense flows; ``raft`` or ``raft:<weights.pth>``: torchvision's
    RAFT (small), from a local weights file or torchvision's cache; offline without them it says so.
    """
    name, _, weights = method.partition(":")
    if name not in FLOWS:
        raise ValueError(f"optical flow '{method}': choose from {FLOWS} (raft:<weights.pth> for a local file)")
    if name == "farneback":
        cv2 = _cv2()
        return lambda a, b: cv2.calcOpticalFlowFarneback(_gray(a), _gray(b), None, 0.5, 3, 15, 3, 5, 1.2, 0)
    if name == "dis":
        dis = _cv2().DISOpticalFlow_create(_cv2().DISOPTICAL_FLOW_PRESET_MEDIUM)
        return lambda a, b: dis.calc(_gray(a), _gray(b), None)
    return _raft(weights or None)


def _raft(weights: str | None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    import torch
    import torch.nn.functional as F
    from torchvision.models.optical_flow import Raft_Small_Weights, raft_small

    model = raft_small(weights=None)
    if weights:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"{weights}: RAFT weights not found; give a raft_small state dict (.pth)")
        state = torch.load(weights, map_location="cpu", weights_only=True)
    else:
        try:
            state = Raft_Small_Weights.C_T_V2.get_state_dict(progress=False)
        except Exception as err:  # offline and not in torchvision's cache
            raise RuntimeError("RAFT weights are not on this machine and cannot be downloaded; give a local file "
                               "(--flow raft:<raft_small.pth>) or use --flow farneback / dis") from err
    model.load_state_dict(state)
    model.eval()

    def flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        h, w = a.shape[:2]
        # RAFT needs sides divisible by 8 and at least 128 (its correlation pyramid)
        ph, pw = max(128, h + (-h) % 8) - h, max(128, w + (-w) % 8) - w
        x = [F.pad(torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None].float() / 127.5 - 1,
                   (0, pw, 0, ph), mode="replicate") for im in (a, b)]
        with torch.inference_mode():
            out = model(x[0], x[1], num_flow_updates=12)[-1]
        return out[0, :, :h, :w].permute(1, 2, 0).numpy()

    return flow


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` sampled at ``(x + dx, y + dy)`` (bilinear), and where that lies inside the image."""
    cv2 = _cv2()
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + flow[..., 0].astype(np.float32), gy + flow[..., 1].astype(np.float32)
    out = cv2.remap(np.ascontiguousarray(image, dtype=np.float32), mx, my, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    return out, inside


class FlowStabilizer:
    """Causal flow-guided temporal filter (``--stabilize flow``); call with ``(depth, rgb)`` per frame in order.

    ``weight``: the share of the warped previous output in a trusted pixel (higher = smoother; default 0.6, 0.8
    with ``k``, where the moved output is more trustworthy); ``max_change``:
    relative depth change above which a pixel is taken as new (not blended); ``photometric``: largest grey-level
    difference (0-255) between the frame and the warped previous frame for the flow to be trusted.

    ``scale``: the global scale filter first applied: ``median`` (`CausalStabilizer`, the default: it helped
    most on a trained model's predictions, BENCHMARKS.md), ``flow`` (the slope of the flow-matched fit of the frame
    against the previous output, of which ``keep_scale`` is kept: best when the scene's median depth changes a lot
    as the camera moves) or ``none``.

    ``k`` (3x3 intrinsics) turns on the ``pose`` mode: the previous output is moved into this frame by the camera
    motion PnP finds from flow matches on a ``grid`` (every ``grid``-th pixel), instead of one scale and shift; the
    frame and the moved output then meet at a common scale ``lock`` of the way from the frame's (0) to the moved
    output's (1): 0.3, chosen on synthetic flicker (higher locks cut TAE further but let the scale drift where the
    flow is biased). That lock replaces the ``flow`` scale option in this mode (``scale`` still chooses the median
    filter applied first). The depth must be metric up to one scale (no shift, not disparity): 3D points are made
    from it.
    """

    def __init__(self, weight: float | None = None, max_change: float = 0.2, photometric: float = 25.0,
                 flow: str = "farneback", scale: str = "median", keep_scale: float = 0.3,
                 k: np.ndarray | None = None, lock: float = 0.3, grid: int = 4):
        # the flow branch's weight, and the pose branch's (0.8: chosen on rendered sequences the benchmark does not
        # use, seeds 200-201); a frame without a pose falls back to exactly the flow filter
        self.flow_weight = 0.6 if weight is None else weight
        weight = (0.6 if k is None else 0.8) if weight is None else weight
        if not 0 <= weight < 1:
            raise ValueError(f"weight must be in [0, 1), got {weight}")
        if scale not in SCALE_FILTERS:
            raise ValueError(f"scale filter '{scale}': choose from {SCALE_FILTERS}")
        if k is not None and np.asarray(k).shape != (3, 3):
            raise ValueError(f"intrinsics must be a 3x3 matrix, got shape {np.asarray(k).shape}")
        self.weight, self.max_change, self.photometric = weight, max_change, photometric
        self.scale, self.keep_scale = scale, keep_scale
        self.k, self.lock, self.grid = (None if k is None else np.asarray(k, np.float64)), lock, grid
        self.poses_found = 0  # frames whose previous output was moved by an estimated pose (``k`` given)
        self.median = CausalStabilizer()
        self.flow = optical_flow(flow)
        self.prev: tuple[np.ndarray, np.ndarray] | None = None  # (output, rgb) of the last frame

    def __call__(self, depth: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        if self.scale == "median":
            depth = self.median(depth)
        out = depth
        if self.prev is not None and self.prev[1].shape == rgb.shape:
            prev_out, prev_rgb = self.prev
            flow = self.flow(rgb, prev_rgb)  # this frame -> the previous one
            warped, inside = warp(prev_out, flow)
            warped_gray, _ = warp(_gray(prev_rgb).astype(np.float32), flow)
            ok = inside & (np.abs(_gray(rgb).astype(np.float32) - warped_gray) < self.photometric)
            ok &= np.isfinite(warped) & (warped > 0) & np.isfinite(depth) & (depth > 0)
            moved = self._moved(warped, flow, ok) if self.k is not None and ok.sum() > 16 else None
            if moved is not None and (ok & (moved > 0)).sum() > 16:
                # the previous output seen from this camera; the two meet at a common scale, ``lock`` of the way
                # from the frame's to the moved output's
                ok &= moved > 0
                ratio = float(np.median(moved[ok] / depth[ok]))
                depth = (depth * ratio ** self.lock).astype(depth.dtype)
                moved = moved * ratio ** (self.lock - 1)
                ok &= np.abs(moved - depth) <= self.max_change * np.abs(depth)
                w = self.weight * ok
                out = (w * moved + (1 - w) * depth).astype(depth.dtype)
            elif ok.sum() > 16 and np.ptp(warped[ok]) > 1e-6 * float(np.abs(warped[ok]).max()):
                # (a flat warped map has no line to fit: the frame is kept as it is, below)
                # depth ~ a * warped + b: the camera's motion goes into the shift b (a forward step changes every
                # z by the same amount) and a is the frame's scale against the previous output.
                a, b = np.polyfit(warped[ok].astype(np.float64), depth[ok].astype(np.float64), 1)
                if self.scale == "flow" and a > 0:  # remove most of that wobble; keep_scale of it stays
                    depth = (depth * a ** (self.keep_scale - 1)).astype(depth.dtype)
                    a, b = np.polyfit(warped[ok].astype(np.float64), depth[ok].astype(np.float64), 1)
                warped = (a * warped + b).astype(np.float32)
                ok &= np.abs(warped - depth) <= self.max_change * np.abs(depth)
                w = self.flow_weight * ok
                out = (w * warped + (1 - w) * depth).astype(depth.dtype)
            else:
                out = depth
        self.prev = (out, rgb)
        return out

    def _moved(self, warped: np.ndarray, flow: np.ndarray, ok: np.ndarray) -> np.ndarray | None:
        """The previous output (already sampled at the flow's matches, ``warped``) moved into this camera by the
        pose PnP estimates from matches on a ``grid``; None when no pose is found."""
        h, w = warped.shape
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        # each pixel's match in the previous frame, as a ray of that camera
        rays = pixel_rays(np.stack([gx + flow[..., 0], gy + flow[..., 1]], -1), self.k)
        sel = np.zeros_like(ok)
        sel[self.grid // 2::self.grid, self.grid // 2::self.grid] = True
        sel &= ok
        pose = relative_pose(rays[sel] * warped[sel][:, None], np.stack([gx[sel], gy[sel]], 1), self.k)
        if pose is None:
            return None
        self.poses_found += 1
        return move_depth(warped, rays, *pose)


def relative_pose(points: np.ndarray, pixels: np.ndarray, k: np.ndarray, threshold: float = 1.0,
                  min_inliers: float = 0.3) -> tuple[np.ndarray, np.ndarray] | None:
    """The rigid motion ``(R, t)`` taking 3D ``points`` (M, 3) of one camera into the frame of a camera that sees
    them at ``pixels`` (M, 2), by PnP with RANSAC (``threshold`` pixels) refined on the inliers (OpenCV); None when
    fewer than ``min_inliers`` of the matches agree."""
    cv2 = _cv2()
    if len(points) < 12:
        return None
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(
        points.astype(np.float64), pixels.astype(np.float64), np.asarray(k, np.float64), None,
        iterationsCount=100, reprojectionError=threshold, confidence=0.999, flags=cv2.SOLVEPNP_EPNP)
    if not ok or inliers is None or len(inliers) < max(12, min_inliers * len(points)):
        return None
    idx = inliers[:, 0]
    rvec, tvec = cv2.solvePnPRefineLM(points[idx].astype(np.float64), pixels[idx].astype(np.float64),
                                      np.asarray(k, np.float64), None, rvec, tvec)
    return cv2.Rodrigues(rvec)[0], tvec[:, 0]


def pixel_rays(at: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The rays (..., 3; z = 1) through pixels ``at`` (..., 2) of a camera with intrinsics ``k``."""
    return np.concatenate([at, np.ones_like(at[..., :1])], -1) @ np.linalg.inv(k).T


def move_depth(depth: np.ndarray, rays: np.ndarray, r: np.ndarray, t: np.ndarray) -> np.ndarray:
    """z in the new camera of the 3D points ``depth * rays`` (H, W and H, W, 3: one camera's depth and rays at the
    matching pixels, `pixel_rays`) after the motion ``(R, t)``."""
    return (rays @ r[2] * depth + t[2]).astype(np.float32)


def smooth_track(g: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Zero-phase Gaussian smoothing (``sigma`` frames) of a per-frame log-scale track; the ends are reflected."""
    g = np.asarray(g, np.float64)
    radius = max(1, int(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(g, radius, mode="reflect" if len(g) > radius else "edge")
    return np.convolve(padded, kernel, mode="valid")


def stabilize_offline(depths: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """(N, H, W) -> the same with each frame's log-scale replaced by the smoothed track."""
    g = np.array([log_scale(d) for d in depths])
    return (depths * np.exp(smooth_track(g, sigma) - g)[:, None, None]).astype(depths.dtype)


def stabilize(depths: np.ndarray, mode: str, rgbs: np.ndarray | None = None, flow: str = "farneback",
              scale: str = "median", k: np.ndarray | None = None) -> np.ndarray:
    """A whole clip through ``mode`` (``none``, ``causal``, ``flow`` or ``pose`` run frame by frame, or
    ``offline``); ``flow`` and ``pose`` need the RGB frames (``flow``: the optical flow, ``scale``: the
    `FlowStabilizer`'s global scale filter), ``pose`` the intrinsics ``k`` too."""
    if mode not in MODES:
        raise ValueError(f"stabilisation '{mode}': choose from {MODES}")
    if mode == "none":
        return depths
    if mode == "offline":
        return stabilize_offline(depths)
    if mode in ("flow", "pose"):
        if rgbs is None:
            raise ValueError(f"{mode} stabilisation needs the RGB frames")
        if mode == "pose" and k is None:
            raise ValueError("pose stabilisation needs the camera intrinsics (intrinsics.txt, or --fx / --hfov)")
        filt = FlowStabilizer(flow=flow, scale=scale, k=k if mode == "pose" else None)
        return np.stack([filt(d, rgb) for d, rgb in zip(depths, rgbs)])
    causal = CausalStabilizer()
    return np.stack([causal(d) for d in depths])
