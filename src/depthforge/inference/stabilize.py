"""Video depth stabilisation for any per-frame source: the frame's global scale follows a smoothed track.

A per-frame model's flicker is mostly a frame-to-frame wobble of its global scale (the whole map a few per cent
nearer or farther). Both stabilisers estimate each frame's log-scale (median log depth over its pixels), smooth that
track, and rescale the frame onto it; the map's shape is left as predicted.

- ``causal``: online, for a live camera: an alpha-beta (Holt) filter on the log-scale, which follows steady change
  (the camera walking towards a wall) without lag and damps the wobble; frame t uses frames 0..t only.
- ``offline``: the whole clip: zero-phase Gaussian smoothing of the log-scale track (no lag at all).
"""

from __future__ import annotations

import numpy as np

MODES = ("none", "causal", "offline")


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


def stabilize(depths: np.ndarray, mode: str) -> np.ndarray:
    """A whole clip through ``mode`` (``none``, ``causal`` run frame by frame, or ``offline``)."""
    if mode not in MODES:
        raise ValueError(f"stabilisation '{mode}': choose from {MODES}")
    if mode == "none":
        return depths
    if mode == "offline":
        return stabilize_offline(depths)
    causal = CausalStabilizer()
    return np.stack([causal(d) for d in depths])
