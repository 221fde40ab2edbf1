"""``depthforge data check``: find what is wrong with a data set before a long run fails on it."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from depthforge.config import DataConfig
from depthforge.data.datamodule import build_dataset
from depthforge.io import DataError
from depthforge.viz import colorize

# Median valid depths above this look like millimetres stored as metres (indoor and street scenes are < 100 m).
MM_SUSPECT_M = 200.0


def _kind(message: str) -> str:
    for key, label in (("no partner", "unpaired"), ("does not match", "size mismatch"), ("NaN/inf", "NaN/inf"),
                       ("unreadable", "unreadable")):
        if key in message:
            return label
    return "other"


def check_split(cfg: DataConfig, split: str) -> dict:
    """Counts, problems (with the first file of each kind), depth statistics and suspicions for one split."""
    report: dict = {"split": split, "problems": Counter(), "examples": {}, "n": 0}
    raw_cfg = dataclasses.replace(cfg, max_depth=float("inf"), cache=False)
    try:
        dataset = build_dataset(dataclasses.replace(raw_cfg, skip_invalid=False), split, train=False)
    except DataError as err:
        report["problems"][_kind(str(err))] += 1
        report["examples"].setdefault(_kind(str(err)), str(err))
        try:
            dataset = build_dataset(dataclasses.replace(raw_cfg, skip_invalid=True), split, train=False)
            report["problems"]["unpaired"] = getattr(dataset, "skipped", 1) or 1
        except DataError as err2:
            report["fatal"] = str(err2)
            return report
    values, invalid, total, sizes, good = [], 0, 0, Counter(), []
    rng = np.random.default_rng(0)
    for i in range(len(dataset)):
        try:
            color, depth = dataset.load(i)
        except DataError as err:
            report["problems"][_kind(str(err))] += 1
            report["examples"].setdefault(_kind(str(err)), str(err))
            continue
        sizes[f"{depth.shape[1]}x{depth.shape[0]}"] += 1
        valid = np.isfinite(depth) & (depth > 0)
        invalid += int((~valid).sum())
        total += depth.size
        if valid.any():
            values.append(rng.choice(depth[valid], size=min(2000, int(valid.sum())), replace=False))
        if len(good) < 4:
            good.append((color, depth))
    report["n"] = len(dataset)
    report["sizes"] = dict(sizes)
    report["invalid_fraction"] = invalid / max(total, 1)
    report["samples_for_png"] = good
    if values:
        v = np.concatenate(values)
        report["depth"] = {"min": float(v.min()), "median": float(np.median(v)), "p99": float(np.percentile(v, 99)),
                           "max": float(v.max())}
        edges = np.array([0, 1, 2, 5, 10, 20, 50, 100, 200, 1e3, 1e9])
        report["histogram"] = dict(zip([f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:])],
                                       (np.histogram(v, edges)[0] / v.size).round(4).tolist()))
        suspicions = []
        if report["depth"]["median"] > MM_SUSPECT_M:
            suspicions.append(f"median depth {report['depth']['median']:.0f} m looks like millimetres: set "
                              "data.depth_scale=1000 for 16-bit PNGs or divide .npy files by 1000")
        if report["depth"]["max"] <= 1.0:
            suspicions.append("all depths <= 1: normalised or inverse depth (disparity)? depthforge expects metres")
        if cfg.max_depth < float("inf"):
            beyond = float((v > cfg.max_depth).mean())
            if beyond > 0.3:
                suspicions.append(f"{beyond:.0%} of pixels exceed data.max_depth={cfg.max_depth:g} m and will be "
                                  "clipped; raise the cap if that is not intended")
        report["suspicions"] = suspicions
    return report


def format_report(reports: list[dict]) -> str:
    lines = []
    for r in reports:
        lines.append(f"split '{r['split']}': {r['n']} sample(s)")
        if "fatal" in r:
            lines.append(f"  ERROR {r['fatal']}")
            continue
        for kind, count in r["problems"].items():
            lines.append(f"  ERROR {count} {kind}: e.g. {r['examples'].get(kind, '')}")
        lines.append(f"  image sizes: {r.get('sizes')}")
        if "depth" in r:
            d = r["depth"]
            lines.append(f"  depth (m): min {d['min']:.3f}, median {d['median']:.3f}, p99 {d['p99']:.3f}, "
                         f"max {d['max']:.3f}; invalid pixels {r['invalid_fraction']:.1%}")
            lines.append("  histogram: " + ", ".join(f"{k} m: {v:.1%}" for k, v in r["histogram"].items() if v))
        for s in r.get("suspicions", []):
            lines.append(f"  WARNING {s}")
    return "\n".join(lines)


def errors(reports: list[dict]) -> int:
    return sum(1 for r in reports if "fatal" in r or r["n"] == 0) + sum(sum(r["problems"].values()) for r in reports)


def save_samples_png(reports: list[dict], path: str | Path) -> Path | None:
    rows = []
    for r in reports:
        for color, depth in r.get("samples_for_png", []):
            d = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)
            rows.append(np.concatenate([color, colorize(d)], axis=1))
    if not rows:
        return None
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return Path(path)
