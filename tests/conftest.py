"""Shared fixtures: a tiny challenge-layout data set written by the tests themselves.

Also: a test skipped because a package is missing fails instead when ``pip install -e ".[dev]"`` installs that
package (the README's test command does), so an incomplete environment cannot pass CI by skipping.
Set ``DEPTHFORGE_ALLOW_SKIPS=1`` to run the suite on a partial install.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthforge.data.base import DepthDataset
# the skip policy's hooks (a module without torch, so the inner pytest sessions of test_skips.py start quickly)
from tests.skip_policy import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401
# the `slow` marker of the edit-test loop (`pytest -n 2 -m "not slow"`) and `--record-slow`, which lists them
from tests.slow_marker import pytest_addoption, pytest_configure  # noqa: F401
from tests.slow_marker import mark_slow

# Under pytest-xdist (the README's `-n 2`) each worker process takes one core's share of torch's threads: two
# workers of two threads each on two cores would fight over them. Subprocesses the tests start inherit it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# The files that take longest (docs/benchmarks/testing.md), run first: with two workers taking whole files in turn,
# the long ones then overlap instead of one of them finishing alone at the end (longest-first scheduling).
LONGEST_FIRST = ("test_export.py", "test_faults.py", "test_docs.py", "test_cli.py", "test_scale_out.py",
                 "test_serve.py", "test_foundation.py", "test_demo.py", "test_zoo.py", "test_mobile_export.py",
                 "test_fuzz.py", "test_video_temporal.py", "test_engine.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order is kept
    mark_slow(config, items)


def write_pair(root: Path, split: str, stem: str, h: int = 32, w: int = 48, ext: str = ".jpeg",
               depth: np.ndarray | None = None, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    (root / "rgb" / split).mkdir(parents=True, exist_ok=True)
    (root / "depth" / split).mkdir(parents=True, exist_ok=True)
    img = root / "rgb" / split / f"{stem}{ext}"
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(img)
    dep = root / "depth" / split / f"{stem}.npy"
    np.save(dep, depth if depth is not None else rng.uniform(0.5, 40, (h, w)).astype(np.float32))
    return img, dep


# The narrowest model that still proves what the INT8, QAT and export tests claim: ResNet-18's layout with one
# residual block per stage (ResNet-10) at a quarter of its width, and a narrow U-Net decoder (0.5 M parameters
# against 14.3 M; a checkpoint of 7 MB against 172 MB).
NARROW = ("model.kwargs.encoder_kwargs={layers: [1, 1, 1, 1], channels: [16, 32, 64, 128], stem_width: 16}",
          "model.kwargs.widths=[64, 32, 16, 16, 16]")


def train_tiny(run: Path, steps: int = 2, n_train: int = 4, n_val: int = 2, size: tuple[int, int] = (48, 64),
               batch: int = 2, extra: list[str] | tuple = (), narrow: bool = True) -> Path:
    """A ResNet-18 U-Net (`NARROW` unless ``narrow`` is false) trained ``steps`` steps on the embedded scenes into
    ``run``; returns its last.ckpt."""
    from depthforge.cli import main

    assert main(["train", "--out", str(run), "--max-steps", str(steps), "model.name=unet_resnet18",
                 *(NARROW if narrow else ()),
                 f"data.synthetic.num_train={n_train}", f"data.synthetic.num_val={n_val}",
                 f"data.synthetic.height={size[0]}", f"data.synthetic.width={size[1]}", f"data.batch_size={batch}",
                 "train.num_previews=0", "train.progress_bar=false", *extra]) == 0
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def tiny40(tmp_path_factory) -> Path:
    """The 40-step tiny model's run folder (`train_tiny` of the `NARROW` model: 8 training scenes, batch 4, 20
    epochs; its depth varies across an image by more than the tests' 0.05 m), trained once per test session and
    shared by the pytest-xdist workers (the first to ask trains it while the others wait on a file lock: the suite's
    largest fixtures were five trainings of nearly this model). Read-only: take a copy with `shared_tiny`. A fixture
    of its own, so that its training is timed as itself (`--record-slow`) and marks every user slow."""
    import shutil

    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the workers' common folder
    run = shared / "shared-tiny-40"
    with FileLock(str(shared / "shared-tiny-40.lock")):
        if not (run / "checkpoints" / "last.ckpt").is_file():
            partial = shared / "shared-tiny-40.partial"
            shutil.rmtree(partial, ignore_errors=True)
            train_tiny(partial, steps=40, n_train=8, n_val=2, batch=4, extra=["train.epochs=20"])
            partial.rename(run)
    return run


def shared_tiny(tiny40: Path, tmp_path_factory, name: str) -> Path:
    """A copy of the `tiny40` run folder of the caller's own, so nothing one test writes there reaches another.
    Returns the copy's last.ckpt."""
    import shutil

    copy = tmp_path_factory.mktemp(name) / "run"
    shutil.copytree(tiny40, copy)
    return copy / "checkpoints" / "last.ckpt"


@pytest.fixture
def challenge_root(tmp_path: Path) -> Path:
    """Stems 0..11 in train and 12..19 in val, mixed .jpeg/.jpg/.png, 32x48."""
    root = tmp_path / "DepthEstimationUnreal"
    for i in range(12):
        write_pair(root, "train", str(i), ext=(".jpeg", ".jpg", ".png")[i % 3], seed=i)
    for i in range(12, 20):
        write_pair(root, "val", str(i), seed=i)
    return root


class ArrayDataset(DepthDataset):
    """In-memory samples: ``depths[i]`` (H, W metres) with black images of the same size, stems "0", "1", ..."""

    def __init__(self, depths: list[np.ndarray], **kwargs):
        super().__init__(**kwargs)
        self.depths = depths

    def __len__(self) -> int:
        return len(self.depths)

    def get_color(self, index: int) -> np.ndarray:
        return np.zeros((*self.depths[index].shape, 3), np.uint8)

    def get_depth(self, index: int) -> np.ndarray:
        return self.depths[index]
