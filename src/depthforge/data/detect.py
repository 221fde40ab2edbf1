"""Which layout a data root is in, found from the files themselves, so a given root is never ignored.

``detect_format(root)`` returns the ``data.name`` and a sentence to print ("folder layout (split first), depth
16-bit PNG"); a root in no known layout is an error that lists them all.
"""

from __future__ import annotations

import re
from pathlib import Path

from depthforge.io import DEPTH_SUFFIXES, IMAGE_SUFFIXES, DataError

LAYOUTS = {
    "challenge": "ROOT/rgb/<split>/<stem>.jpeg + ROOT/depth/<split>/<stem>.npy (DLRP DepthEstimationUnreal)",
    "folder": "ROOT/images/<split>/ + ROOT/depth/<split>/, or split first ROOT/<split>/images/ + ROOT/<split>/depth/, "
              "or ROOT/images/ + ROOT/depth/ with splits/<split>.txt",
    "manifest": "a .csv file with columns image,depth[,split][,scale]",
    "nyu-mat": "the official nyu_depth_v2_labeled.mat",
    "nyu": "NYU v2 scene folders ROOT/[<split>/]<scene>/<n>.jpg + <n>.png",
    "kitti": "a KITTI root with the raw drive folders (2011_09_26/..._sync/) and split file lists",
    "cache": "a folder written by depthforge data cache (index.json per split)",
}
DEPTH_KIND = {".npy": "float metres (.npy)", ".png": "16-bit PNG", ".pfm": "float metres (.pfm)",
              ".exr": "float metres (.exr)"}
KITTI_DRIVE = re.compile(r"\d{4}_\d{2}_\d{2}")


def _first_file(folder: Path, suffixes: tuple[str, ...]) -> Path | None:
    return next((p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix.lower() in suffixes), None)


def _depth_kind(folder: Path) -> str:
    first = _first_file(folder, DEPTH_SUFFIXES)
    return f"depth {DEPTH_KIND[first.suffix.lower()]}" if first else "no depth files found yet"


def _nyu_scene(folder: Path) -> bool:
    """A folder holding ``<n>.jpg`` beside ``<n>.png``."""
    jpgs = {p.stem for p in folder.glob("*.jpg")}
    return bool(jpgs & {p.stem for p in folder.glob("*.png")})


def detect_format(root: str | Path, how: str = "data.name=<layout>") -> tuple[str, str]:
    """``(data.name, description)`` for ``root``; `DataError` listing the known layouts otherwise, saying
    how the calling command names a format (``how``: its own option)."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "manifest", "CSV manifest"
        if root.suffix.lower() == ".mat":
            return "nyu-mat", "NYU v2 labeled .mat file"
    else:
        subdirs = [d for d in sorted(root.iterdir()) if d.is_dir()]
        if (root / "index.json").is_file() or any((d / "index.json").is_file() for d in subdirs):
            return "cache", "depthforge cache folder"
        if (root / "rgb").is_dir() and (root / "depth").is_dir():
            return "challenge", f"challenge layout (rgb/ + depth/), {_depth_kind(root / 'depth')}"
        if (root / "images").is_dir() and (root / "depth").is_dir():
            return "folder", f"folder layout (images/ + depth/), {_depth_kind(root / 'depth')}"
        split_first = [d for d in subdirs if (d / "images").is_dir() and (d / "depth").is_dir()]
        if split_first:
            return "folder", (f"folder layout, split first ({', '.join(d.name for d in split_first)}), "
                              f"{_depth_kind(split_first[0] / 'depth')}")
        if any(KITTI_DRIVE.match(d.name) for d in subdirs):
            return "kitti", "KITTI depth (drive folders), 16-bit PNG / 256"
        if any(_nyu_scene(d) or any(_nyu_scene(s) for s in d.iterdir() if s.is_dir()) for d in subdirs):
            return "nyu", "NYU v2 scene folders (<n>.jpg + <n>.png)"
        nested = [d for d in subdirs if (d / "rgb").is_dir() and (d / "depth").is_dir()]
        if nested:
            raise DataError(f"{root}: the challenge layout is one level down; pass {nested[0]} as the data root")
    if root.is_dir():
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
        found = "an empty folder" if not names else ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    else:
        found = f"a {root.suffix} file" if root.suffix else "a file without suffix"
    known = "\n".join(f"  {name}: {text}" for name, text in LAYOUTS.items())
    raise DataError(f"{root}: not a layout depthforge recognises (found: {found}). Known layouts:\n{known}\n"
                    f"Rearrange the files into one of them, or name the layout with {how} "
                    f"(images: {', '.join(IMAGE_SUFFIXES)})")
