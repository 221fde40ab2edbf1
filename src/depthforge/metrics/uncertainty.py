"""Is a predicted uncertainty honest? Sparsification curves and AUSE, coverage, uncertainty-error correlation.

All functions take flat arrays over the valid pixels: the prediction, the truth and the predicted uncertainty (a
standard deviation in metres, larger = less trusted).
"""

from __future__ import annotations

import numpy as np

FRACTIONS = np.linspace(0.0, 0.98, 50)  # shares of pixels removed, most uncertain first


def _error(pred: np.ndarray, gt: np.ndarray, metric: str) -> np.ndarray:
    if metric == "rmse":
        return (pred - gt) ** 2
    if metric == "abs_rel":
        return np.abs(pred - gt) / gt
    raise ValueError(f"sparsification metric '{metric}': use rmse or abs_rel")


def sparsification_curve(pred: np.ndarray, gt: np.ndarray, order_by: np.ndarray, metric: str = "rmse",
                         fractions: np.ndarray = FRACTIONS) -> np.ndarray:
    """The metric over the pixels left after removing each share of pixels, highest ``order_by`` first."""
    err = _error(np.asarray(pred, np.float64), np.asarray(gt, np.float64), metric)
    kept_order = np.argsort(-np.asarray(order_by, np.float64), kind="stable")  # most uncertain first
    sorted_err = err[kept_order]
    n = len(err)
    # Mean of the errors from position k on, for every k, from a reverse cumulative sum.
    tail_sums = np.cumsum(sorted_err[::-1])[::-1]
    out = []
    for f in fractions:
        k = min(int(round(f * n)), n - 1)
        mean = tail_sums[k] / (n - k)
        out.append(np.sqrt(mean) if metric == "rmse" else mean)
    return np.array(out)


def ause(pred: np.ndarray, gt: np.ndarray, uncertainty: np.ndarray, metric: str = "rmse",
         fractions: np.ndarray = FRACTIONS) -> float:
    """Area under the sparsification error: the curve ordered by ``uncertainty`` minus the oracle's (ordered by the
    true error), integrated over the removed share (trapezoids). 0 for an uncertainty that ranks pixels exactly as
    their errors do."""
    err = _error(np.asarray(pred, np.float64), np.asarray(gt, np.float64), metric)
    gap = (sparsification_curve(pred, gt, uncertainty, metric, fractions)
           - sparsification_curve(pred, gt, err, metric, fractions))
    return float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(fractions)))


def coverage(pred: np.ndarray, gt: np.ndarray, std: np.ndarray, k: float) -> float:
    """Share of pixels whose error lies within ``k`` predicted standard deviations."""
    return float(np.mean(np.abs(np.asarray(pred) - np.asarray(gt)) <= k * np.asarray(std)))


def expected_coverage(k: float, distribution: str = "laplace") -> float:
    """The share a calibrated uncertainty would cover at ``k`` standard deviations."""
    if distribution == "laplace":  # |e| <= k * sqrt(2) * b
        return float(1 - np.exp(-k * np.sqrt(2)))
    if distribution == "gaussian":
        from math import erf, sqrt

        return erf(k / sqrt(2))
    raise ValueError(f"distribution '{distribution}': use laplace or gaussian")


def error_correlation(image_uncertainty: np.ndarray, image_error: np.ndarray) -> float:
    """Pearson correlation between each image's mean uncertainty and its error (RMSE), over images."""
    u, e = np.asarray(image_uncertainty, np.float64), np.asarray(image_error, np.float64)
    if len(u) < 2 or u.std() == 0 or e.std() == 0:
        return float("nan")
    return float(np.corrcoef(u, e)[0, 1])
