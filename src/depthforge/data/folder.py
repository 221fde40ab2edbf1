"""Generic folders and CSV manifests: the formats people have for their own data.

Generic folder:

```text
ROOT/images/[<split>/]<stem>.jpg|png|...       RGB
ROOT/depth/[<split>/]<stem>.npy|png|pfm|exr    depth (16-bit PNG: metres = value / depth_scale; 0 = no data)
or split first: ROOT/<split>/images/ and ROOT/<split>/depth/
ROOT/splits/<split>.txt                        optional: one stem per line
ROOT/intrinsics.json                           optional: {"fx", "fy", "cx", "cy"} for every image
```

Manifest: a CSV with columns ``image,depth`` and optional ``split`` and ``scale`` (paths relative to the CSV).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from depthforge.data.base import Sample
from depthforge.data.pairs import Pair, PairDataset, list_files, pair_by_stem
from depthforge.io import DEPTH_SUFFIXES, IMAGE_SUFFIXES, DataError, shown


class FolderDataset(PairDataset):
    """Generic ``images/`` + ``depth/`` folders paired by stem (names configurable)."""

    def __init__(self, root: str | Path, split: str | None = None, max_depth: float = 20.0,
                 transform: Callable[[Sample], Sample] | None = None, skip_invalid: bool = False,
                 cache: bool = False, image_dir: str = "images", depth_dir: str = "depth",
                 depth_scale: float = 1000.0):
        root = Path(root)
        images_root, depth_root = root / image_dir, root / depth_dir
        stems = None
        if split and (images_root / split).is_dir():
            images_root, depth_root = images_root / split, depth_root / split
        elif split and (root / split / image_dir).is_dir():  # split first: ROOT/<split>/images/
            images_root, depth_root = root / split / image_dir, root / split / depth_dir
        elif split and (root / "splits" / f"{split}.txt").is_file():
            stems = {s.strip() for s in (root / "splits" / f"{split}.txt").read_text().splitlines() if s.strip()}
        elif split and split not in ("all", "train"):
            raise DataError(f"{root}: no split '{split}': expected {image_dir}/{split}/, {split}/{image_dir}/ or "
                            f"splits/{split}.txt")
        images = list_files(images_root, IMAGE_SUFFIXES)
        depths = [p for p in list_files(depth_root, DEPTH_SUFFIXES)]
        if not images:
            raise DataError(f"{images_root}: no images ({', '.join(IMAGE_SUFFIXES)}); is the folder right?")
        pairs, unpaired = pair_by_stem(images, depths, str(root), skip_invalid,
                                       scale=depth_scale)
        pairs = [p if p.depth.suffix.lower() == ".png" else Pair(p.image, p.depth, 1.0, p.stem) for p in pairs]
        if stems is not None:
            pairs = [p for p in pairs if p.stem in stems]
        self.intrinsics = json.loads((root / "intrinsics.json").read_text()) if (root / "intrinsics.json").is_file() \
            else None
        super().__init__(pairs, max_depth, transform, skip_invalid, cache, f"{root}", unpaired)

    def __getitem__(self, index: int) -> Sample:
        sample = super().__getitem__(index)
        if self.intrinsics:
            k = self.intrinsics
            sample["meta"]["intrinsics"] = [float(k["fx"]), float(k["fy"]), float(k["cx"]), float(k["cy"])]
        return sample


def read_manifest(path: str | Path, split: str | None = None, default_scale: float = 1000.0) -> list[Pair]:
    """Pairs listed in a CSV (``image,depth[,split][,scale]``); relative paths are relative to the CSV."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    try:
        return _manifest_rows(path, split, default_scale)
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: not a UTF-8 CSV manifest ({type(err).__name__}: {str(err)[:80]}); write it as "
                        "image,depth[,split][,scale] rows") from None


def _manifest_rows(path: Path, split: str | None, default_scale: float) -> list[Pair]:
    pairs = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"image", "depth"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: manifest needs columns image,depth (optional split,scale); missing {missing}")
        for line, row in enumerate(reader, start=2):
            if split and row.get("split") and row["split"] != split:
                continue
            if not row.get("image") or not row.get("depth"):
                raise DataError(f"{path}:{line}: a row needs an image and a depth path, got "
                                f"{str(list(row.values()))[:80]}")
            image, depth = path.parent / row["image"], path.parent / row["depth"]
            try:
                scale = float(row.get("scale") or (default_scale if depth.suffix.lower() == ".png" else 1.0))
                if not (scale > 0 and scale < float("inf")):
                    raise ValueError
            except ValueError:
                raise DataError(f"{path}:{line}: scale '{str(row.get('scale'))[:40]}' is not a number over 0 "
                                "(metres = value / scale)") from None
            pairs.append(Pair(image, depth, scale, Path(row["image"]).stem))
    return pairs


class ManifestDataset(PairDataset):
    def __init__(self, manifest: str | Path, split: str | None = None, max_depth: float = 20.0,
                 transform: Callable[[Sample], Sample] | None = None, skip_invalid: bool = False,
                 cache: bool = False, depth_scale: float = 1000.0):
        pairs = read_manifest(manifest, split, depth_scale)
        missing = [p for p in pairs if not p.image.is_file() or not p.depth.is_file()]
        if missing and not skip_invalid:
            p = missing[0]
            gone = p.image if not p.image.is_file() else p.depth
            raise DataError(f"{shown(gone)}: listed in {shown(manifest)} but missing ({len(missing)} such row(s)); "
                            "fix the path or pass data.skip_invalid=true")
        pairs = [p for p in pairs if p not in missing]
        super().__init__(pairs, max_depth, transform, skip_invalid, cache, str(manifest),
                         [p.image if not p.image.is_file() else p.depth for p in missing])
