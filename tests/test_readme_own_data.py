"""Follow the docs' "Your own data" commands as a new user would (shortened training)."""

import csv
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthforge.cli import main

PAGE = Path(__file__).resolve().parents[1] / "docs" / "own-data.md"


@pytest.mark.parametrize("split_first", [False, True], ids=["images-split", "split-images"])
def test_readme_own_data_commands_work(tmp_path, monkeypatch, split_first):
    rng = np.random.default_rng(0)
    root = tmp_path / "my_data"
    for split, stems in (("train", range(6)), ("val", range(100, 103))):
        images, depth = (root / split / "images", root / split / "depth") if split_first else \
            (root / "images" / split, root / "depth" / split)
        images.mkdir(parents=True)
        depth.mkdir(parents=True)
        for i in stems:
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(images / f"{i:04d}.jpg")
            mm = rng.integers(300, 9000, (48, 64)).astype(np.uint16)
            mm[0, :5] = 0  # no measurement
            Image.fromarray(mm).save(depth / f"{i:04d}.png")
    block = re.search(r"<!-- test: by tests/test_readme_own_data.py::test_readme_own_data_commands_work -->\s*```bash\n(.*?)```",
                      PAGE.read_text(), re.S).group(1)
    commands = [shlex.split(line) for line in block.strip().splitlines()]
    assert [c[1] for c in commands] == ["data", "train", "evaluate"]
    monkeypatch.chdir(tmp_path)
    for cmd in commands:
        args = cmd[1:]
        if args[0] == "train":  # keep the test short: two steps, small batches
            args += ["--max-steps", "2", "data.batch_size=2", "train.progress_bar=false", "data.cache=false"]
        assert main(args) == 0, cmd
    assert (tmp_path / "my_data_check.png").is_file()
    # The run read the millimetre PNGs as metres under the 10 m cap (0.3-9 m, not 300-9000) ...
    from depthforge.sources import load_checkpoint

    _, cfg = load_checkpoint(tmp_path / "runs" / "mine" / "checkpoints" / "best.ckpt")
    assert cfg.data.depth_scale == 1000 and cfg.data.max_depth == 10
    # ... and the report scored each of the 3 val images, every error within the 10 m cap.
    report = next((tmp_path / "runs" / "mine" / "report").iterdir())
    with open(report / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["stem"] for r in rows) == ["0100", "0101", "0102"]
    assert all(0 < float(r["mae"]) <= float(r["rmse"]) <= 10 for r in rows)
