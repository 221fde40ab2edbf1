"""Evaluation plots: error by depth bin, prediction-vs-truth density, worst-N comparison grid."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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


COLUMNS = ("input", "ground truth (m)", "prediction (m)", "|error| (m)")


def comparison_figure(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], max_depth: float) -> plt.Figure:
    """``(image, truth, prediction)`` triples as rows of input | truth | prediction | |error|, columns titled,
    with colour bars in metres (depth: near is bright, 0..max_depth; error: 0..max_depth / 4)."""
    height, width = rows[0][0].shape[:2]
    scale = 2.2 / max(height, width) * 1.6
    fig, axes = plt.subplots(len(rows), 4, squeeze=False, figsize=(4 * width * scale + 1.6, len(rows) * height * scale
                                                                    + 0.6), layout="constrained")
    depth_img = error_img = None
    for r, (image, gt, pred) in enumerate(rows):
        axes[r, 0].imshow(image)
        depth_img = axes[r, 1].imshow(gt, cmap="magma_r", vmin=0, vmax=max_depth)
        axes[r, 2].imshow(pred, cmap="magma_r", vmin=0, vmax=max_depth)
        error_img = axes[r, 3].imshow(np.abs(pred - gt), cmap="magma", vmin=0, vmax=max_depth / 4)
    for c, title in enumerate(COLUMNS):
        axes[0, c].set_title(title, fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.colorbar(depth_img, ax=axes[:, 1:3], label="depth (m)", shrink=0.9)
    fig.colorbar(error_img, ax=axes[:, 3], label="|error| (m)", shrink=0.9)
    return fig


def save_grid(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], max_depth: float, path: str | Path) -> Path:
    """Write :func:`comparison_figure` as a PNG."""
    fig = comparison_figure(rows, max_depth)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
