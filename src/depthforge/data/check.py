"""``depthforge data check``: find what is wrong with a data set before a long run fails on it."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from depthforge.config import DataConfig
from depthforge.data.datamodule import build_dataset
from depthforge.data.pairs import KEEP_INVALID
from depthforge.io import DataError
from depthforge.viz import colorize

# Median valid depths above this look like millimetres stored as metres (indoor and street scenes are < 100 m).
MM_SUSPECT_M = 200.0


# Examples named per problem kind in the report.
EXAMPLES = 3


def _kind(message: str) -> str:
    for key, label in (("no partner", "unpaired"), ("does not match", "size mismatch"), ("NaN/inf", "NaN/inf"),
                       ("unreadable image", "unreadable image"), ("unreadable", "unreadable depth"),
                       ("listed in", "missing file")):
        if key in message:
            return label
    return "other"


def _problem(report: dict, kind: str, message: str) -> None:
    report["problems"][kind] += 1
    if len(report["examples"].setdefault(kind, [])) < EXAMPLES:
        report["examples"][kind].append(message)


def check_split(cfg: DataConfig, split: str) -> dict:
    """Counts, every problem kind (with its count and first files), depth statistics and suspicions for a split."""
    report: dict = {"split": split, "problems": Counter(), "examples": {}, "n": 0}
    # Every pair kept, bad ones included, and unpaired files listed: each problem is counted under its own kind.
    raw_cfg = dataclasses.replace(cfg, max_depth=float("inf"), cache=False, skip_invalid=KEEP_INVALID)
    try:
        dataset = build_dataset(raw_cfg, split, train=False)
    except DataError as err:
        report["fatal"] = str(err)
        return report
    for path in getattr(dataset, "unpaired", []):
        _problem(report, "unpaired", f"{path}: has no partner")
    values, invalid, total, sizes, good = [], 0, 0, Counter(), []
    rng = np.random.default_rng(0)
    for i in range(len(dataset)):
        try:
            color, depth = dataset.load(i)
        except DataError as err:
            _problem(report, _kind(str(err)), str(err))
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
            lines.append(f"  ERROR {count} {kind}" + (":" if count <= EXAMPLES else f", the first {EXAMPLES}:"))
            lines += [f"    {message}" for message in r["examples"].get(kind, [])]
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
