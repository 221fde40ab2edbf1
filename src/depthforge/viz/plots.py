"""Evaluation plots: error by depth bin, prediction-vs-truth density, sparsification curves, worst-N comparison
grid."""

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


def plot_sparsification(curves: dict[str, dict], path: str | Path, title: str = "") -> Path:
    """RMSE sparsification curves (``{name: {"fraction_removed", "rmse", "oracle_rmse"}}``): each source solid, its
    oracle (pixels removed by their true error) dashed in the same colour; the gap between the two is the AUSE."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        x = np.asarray(curve["fraction_removed"]) * 100
        (line,) = ax.plot(x, curve["rmse"], label=name)
        ax.plot(x, curve["oracle_rmse"], "--", color=line.get_color(), lw=1, label=f"{name}: oracle")
    ax.set_xlabel("pixels removed, most uncertain first (%)")
    ax.set_ylabel("RMSE of the rest (m)")
    ax.set_title(title or "sparsification (lower and closer to the oracle is better)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


COLUMNS = ("input", "ground truth (m)", "prediction (m)", "|error| (m)", "uncertainty (m)")


def comparison_figure(rows: list[tuple[np.ndarray, ...]], max_depth: float) -> plt.Figure:
    """``(image, truth, prediction[, uncertainty])`` rows as input | truth | prediction | |error| [| uncertainty],
    columns titled, with colour bars in metres (depth: near is bright, 0..max_depth; error and uncertainty:
    0..max_depth / 4, the same scale so the two can be compared)."""
    height, width = rows[0][0].shape[:2]
    cols = len(rows[0]) + 1
    scale = 2.2 / max(height, width) * 1.6
    fig, axes = plt.subplots(len(rows), cols, squeeze=False, figsize=(cols * width * scale + 1.6,
                                                                      len(rows) * height * scale + 0.6),
                             layout="constrained")
    depth_img = error_img = None
    for r, (image, gt, pred, *unc) in enumerate(rows):
        axes[r, 0].imshow(image)
        depth_img = axes[r, 1].imshow(gt, cmap="magma_r", vmin=0, vmax=max_depth)
        axes[r, 2].imshow(pred, cmap="magma_r", vmin=0, vmax=max_depth)
        error_img = axes[r, 3].imshow(np.abs(pred - gt), cmap="magma", vmin=0, vmax=max_depth / 4)
        if unc:
            axes[r, 4].imshow(unc[0], cmap="magma", vmin=0, vmax=max_depth / 4)
    for c, title in enumerate(COLUMNS[:cols]):
        axes[0, c].set_title(title, fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.colorbar(depth_img, ax=axes[:, 1:3], label="depth (m)", shrink=0.9)
    fig.colorbar(error_img, ax=axes[:, 3:], label="|error|, uncertainty (m)" if cols == 5 else "|error| (m)",
                 shrink=0.9)
    return fig


def save_grid(rows: list[tuple[np.ndarray, ...]], max_depth: float, path: str | Path) -> Path:
    """Write `comparison_figure` as a PNG."""
    fig = comparison_figure(rows, max_depth)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
