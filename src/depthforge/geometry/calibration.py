"""Turn relative (or slightly off) predictions into metres from a few known distances.

Least median of squares over every minimal sample (1 point for scale, 2 for scale + shift), then least squares on
the inliers: one wrong measurement among a handful cannot pull the fit.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Calibration:
    scale: float
    shift: float
    inliers: list[bool]
    residual_m: float

    def apply(self, depth: np.ndarray) -> np.ndarray:
        return self.scale * depth + self.shift


POINT_FORMAT = "x,y,metres (pixel column, pixel row, distance > 0 in metres), e.g. 120,80,3.5"


def parse_point(text: str) -> tuple[int, int, float]:
    """``"x,y,metres"`` -> (x, y, metres); a `DataError` (naming the text) for anything else: three fields, whole
    pixel coordinates, a finite distance over zero."""
    from depthforge.io import DataError

    fields = [f.strip() for f in str(text).split(",")]
    try:
        if len(fields) != 3:
            raise ValueError
        x, y, metres = float(fields[0]), float(fields[1]), float(fields[2])
        if not (x.is_integer() and y.is_integer() and np.isfinite(metres) and metres > 0 and x >= 0 and y >= 0):
            raise ValueError
    except (ValueError, OverflowError):
        raise DataError(f"{text[:80]!r} is not {POINT_FORMAT}") from None
    return int(x), int(y), metres


def read_points(path: str | Path) -> list[tuple[int, int, float]]:
    """CSV rows ``x,y,metres`` (pixel column, pixel row, measured depth); a header row and ``#`` comments are
    allowed. A row that is not a point is a `DataError` naming the file and line."""
    from depthforge.io import DataError

    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.reader(f)):
                if not row or not "".join(row).strip() or row[0].strip().startswith("#"):
                    continue
                try:
                    rows.append(parse_point(",".join(row)))
                except DataError as err:
                    if i == 0 and not any(c.isdigit() for c in "".join(row)):
                        continue  # a header
                    raise DataError(f"{path}: line {i + 1}: {err}") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: not a UTF-8 CSV of x,y,metres rows ({type(err).__name__}: "
                        f"{str(err)[:80]})") from None
    return rows


def fit(pred: np.ndarray, metres: np.ndarray, shift: bool = False) -> Calibration:
    """Fit ``metres ~ scale * pred (+ shift)`` robustly. ``pred`` are the model's values at the known pixels."""
    pred, metres = np.asarray(pred, np.float64), np.asarray(metres, np.float64)
    need = 2 if shift else 1
    if len(pred) < need:
        raise ValueError(f"calibration needs at least {need} point(s) (and {need + 2}+ to reject an outlier)")
    best, best_med = None, np.inf
    for idx in itertools.combinations(range(len(pred)), need):
        i = list(idx)
        if shift:
            if abs(pred[i[0]] - pred[i[1]]) < 1e-12:
                continue
            s = (metres[i[0]] - metres[i[1]]) / (pred[i[0]] - pred[i[1]])
            t = metres[i[0]] - s * pred[i[0]]
        else:
            s, t = metres[i[0]] / max(pred[i[0]], 1e-12), 0.0
        med = np.median((s * pred + t - metres) ** 2)
        if med < best_med:
            best, best_med = (s, t), med
    s, t = best
    resid = np.abs(s * pred + t - metres)
    # 2.5 robust standard deviations (1.4826 * MAD-like scale from the median squared residual).
    thresh = max(2.5 * 1.4826 * np.sqrt(best_med), 1e-6 + 0.02 * np.median(np.abs(metres)))
    inl = resid <= thresh
    if shift and inl.sum() >= 2:
        a = np.stack([pred[inl], np.ones(inl.sum())], 1)
        s, t = np.linalg.lstsq(a, metres[inl], rcond=None)[0]
    elif not shift:
        s = float((pred[inl] * metres[inl]).sum() / (pred[inl] ** 2).sum())
    rms = float(np.sqrt(np.mean((s * pred[inl] + t - metres[inl]) ** 2)))
    return Calibration(float(s), float(t), inl.tolist(), rms)


def calibrate(depth: np.ndarray, points: list[tuple[int, int, float]], shift: bool = False) -> Calibration:
    """Fit against the prediction sampled at ``(x, y)`` pixels."""
    h, w = depth.shape
    for x, y, _ in points:
        if not (0 <= x < w and 0 <= y < h):
            raise ValueError(f"calibration point ({x}, {y}) is outside the {w}x{h} image")
    pred = np.array([depth[y, x] for x, y, _ in points])
    return fit(pred, np.array([m for _, _, m in points]), shift)
