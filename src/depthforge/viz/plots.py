"""Evaluation plots: error by depth bin, prediction-vs-truth density, worst-N comparison grid."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from depthforge.viz.colormap import comparison_row  # noqa: E402


def plot_error_by_depth(bins: dict, path: str | Path, title: str = "") -> Path:
    """Bar chart of MAE and RMSE per ground-truth depth bin, with the pixel share on a second axis."""
    edges = np.asarray(bins["edges"])
    centres, width = 0.5 * (edges[:-1] + edges[1:]), np.diff(edges)
    count = np.asarray(bins["count"])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(centres - width / 4, bins["mae"], width / 2, label="MAE")
    ax.bar(centres + width / 4, bins["rmse"], width / 2, label="RMSE")
    ax.set_xlabel("ground-truth depth (m)")
    ax.set_ylabel("error (m)")
    ax2 = ax.twinx()
    ax2.plot(centres, count / max(count.sum(), 1) * 100, "k.-", label="pixels")
    ax2.set_ylabel("share of pixels (%)")
    ax.legend(loc="upper left")
    ax.set_title(title or "error by depth")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_density(density: np.ndarray, max_depth: float, path: str | Path, title: str = "") -> Path:
    """Log-density of (truth, prediction) pixel pairs with the identity line."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(np.log1p(np.asarray(density)).T, origin="lower", extent=(0, max_depth, 0, max_depth), cmap="magma")
    ax.plot([0, max_depth], [0, max_depth], "w--", lw=1)
    ax.set_xlabel("ground truth (m)")
    ax.set_ylabel("prediction (m)")
    ax.set_title(title or "prediction vs truth (log density)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def save_grid(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], max_depth: float, path: str | Path) -> Path:
    """Stack ``(image, truth, prediction)`` triples as input | truth | prediction | error rows."""
    Image.fromarray(np.concatenate([comparison_row(i, g, p, max_depth) for i, g, p in rows], axis=0)).save(path)
    return Path(path)
