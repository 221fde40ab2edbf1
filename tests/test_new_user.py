"""What a new user tripped over (issue #38): each test failed on the old behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import depthforge
from depthforge.cli import main
from depthforge.io import DataError
from tests.conftest import train_tiny


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("newuser") / "run")


def _photo(path, seed=0, size=(40, 56)):
    rgb = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def test_bad_files_in_a_folder_do_not_stop_the_good_ones(checkpoint, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    _photo(photos / "a.png", 1)
    _photo(photos / "c.png", 2)
    (photos / "b_empty.jpg").write_bytes(b"")
    (photos / "d_notes.jpg").write_text("not an image")
    whole = _photo(tmp_path / "whole.png", 5).read_bytes()
    (photos / "e_cut.png").write_bytes(whole[: len(whole) // 2])  # the header reads, the pixels do not
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), str(photos), "--out", str(out)]) == 1
    assert sorted(p.name for p in out.glob("*.npy")) == ["a.npy", "c.npy"]
    err = capsys.readouterr().err
    assert "3 input(s) skipped" in err and "e_cut.png (not an image Pillow can read" in err and "b_empty.jpg (the file is empty (0 bytes))" in err
    assert "d_notes.jpg (not an image Pillow can read" in err and "Traceback" not in err
    assert err.count("\n") == 1  # one message at the end
    with pytest.raises(DataError, match="b_empty.jpg: the file is empty"):
        depthforge.load(checkpoint).predict(str(photos / "b_empty.jpg"))  # the API raises, naming the file


def test_an_input_image_is_never_written_over(checkpoint, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    astro = _photo(photos / "astro.png", 3)
    other = _photo(photos / "moon.jpg", 4)
    before = astro.read_bytes()
    assert main(["predict", "--checkpoint", str(checkpoint), str(photos), "--out", str(photos), "--format",
                 "png16"]) == 1
    assert astro.read_bytes() == before  # the photo survives
    assert "astro.png: writing it would overwrite the input image" in capsys.readouterr().err
    assert (photos / "moon.png").is_file() and other.is_file()  # the other one was written, beside its input
    assert np.asarray(Image.open(photos / "moon.png")).dtype == np.uint16
    assert main(["predict", "--checkpoint", str(checkpoint), str(astro), "--out", str(photos)]) == 0  # npy: no clash
    assert astro.read_bytes() == before and (photos / "astro.npy").is_file()


def _option_helps():
    """(command, option, the help text as --help prints it) for every option of every command."""
    from depthforge.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict)).choices
    for name, sub in commands.items():
        formatter = sub._get_formatter()  # the one --help uses
        for action in sub._actions:
            if action.option_strings and action.help:
                params = {**vars(action), "prog": name}
                yield name, action.option_strings[-1], formatter._get_help_string(action) % params


def test_help_gives_one_true_default_per_option():
    from depthforge.config import load_config

    helps = list(_option_helps())
    assert len(helps) > 80
    for command, option, text in helps:
        assert text.lower().count("default") <= 1, (command, option, text)
        assert "default: None" not in text and "default: False" not in text, (command, option, text)
    by = {(c, o): t for c, o, t in helps}
    assert "(default: magma)" in by[("predict", "--cmap")] and "(default: 0.25)" in by[("predict", "--overlap")]
    assert "default: --fx" in by[("predict", "--fy")] and "default: npy" in by[("predict", "--format")]
    defaults = load_config(None)  # what train without --config really trains
    assert defaults.model.name == "baseline" and defaults.train.epochs == 3 and defaults.train.device == "auto"
    assert "none, i.e. the baseline model for 3 epochs" in by[("train", "--config")] and "auto" in by[("train", "--device")]
    assert "detected" in by[("data", "--format")]
    assert "runs/quickstart/checkpoints/best.ckpt" in by[("demo", "--checkpoint")]


def test_training_console_and_files_say_each_thing_once_and_plainly(tmp_path):
    import subprocess
    import sys

    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "depthforge.cli", "train", "--out", str(run), "--max-steps", "2",
                           "model.name=unet_resnet18", "data.synthetic.num_train=4", "data.synthetic.num_val=2",
                           "data.synthetic.height=48", "data.synthetic.width=64", "data.batch_size=2",
                           "train.num_previews=0", "train.progress_bar=false"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    console = proc.stdout + proc.stderr
    assert "GPU available" not in console and "TPU available" not in console  # Lightning's inventory
    assert "site-packages" not in console and "FLOPs" not in console  # a raw warning path; a FLOPs column of 0
    assert "model: unet_resnet18, 14.33 M parameters" in console
    # Lightning warned that 2 batches are fewer than its logging interval; the interval now fits the data (#49)
    assert "smaller than the logging interval" not in console and "Warning" not in console
    run = train_tiny(tmp_path / "logged", steps=2, extra=["train.log_every=1"]).parents[1]
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/loss_ssim" in header and "val/ssim" in header and "train/ssim" not in header


def test_an_eval_card_names_its_data_and_a_rerun_labels_its_rows(checkpoint, tmp_path, capsys):
    card = tmp_path / "card.json"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--json", str(card)]) == 0
    markdown = card.with_suffix(".md").read_text()
    assert "`None`" not in markdown and "synthetic (rendered in memory, no files)" in markdown
    capsys.readouterr()
    assert main(["evaluate", "--card", str(card)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "challenge" in line]
    assert len(rows) == 2 and "(recorded)" in rows[0] and "(now)" in rows[1]


def test_a_video_that_clamps_warns_once_and_small_depths_print_as_numbers(tmp_path, caplog, capsys):
    import logging

    import torch

    from depthforge.config import Config
    from depthforge.predict import Pipeline, save_predictions
    from depthforge.sources import LoadedSource

    class Ramp(torch.nn.Module):  # -2..30 m across the frame: both ends outside a 20 m model's range
        kind = "metric"

        def forward(self, x):
            return torch.linspace(-2.0, 30.0, x.shape[-1]).expand(x.shape[0], 1, *x.shape[-2:]) + 0 * x[:, :1]

    cfg = Config()
    frames = tmp_path / "walk"
    frames.mkdir()
    for i in range(5):
        _photo(frames / f"{i:03d}.png", i, (24, 32))
    pipeline = Pipeline(LoadedSource(Ramp(), cfg, "metric", {"checkpoint": "ramp"}))
    with caplog.at_level(logging.WARNING):
        saved = list(save_predictions(pipeline, [str(frames)], tmp_path / "out", sequence=True, formats=()))
    assert saved[0].frames == 5
    clamping = [r for r in caplog.records if "outside the model's range" in r.getMessage()
                or "clamped into the model's valid range" in r.getMessage()]
    assert len(clamping) == 1 and "5 frame(s)" in clamping[0].getMessage()

    from tests.test_foundation import make_depth_anything

    folder = make_depth_anything(tmp_path / "da")
    photo = _photo(tmp_path / "p.png", 7)
    assert main(["predict", "--model", f"hf:{folder}", str(photo), "--out", str(tmp_path / "hf")]) == 0
    depth = np.load(tmp_path / "hf" / "p.npy")
    import re

    lo, hi = (float(v) for v in re.search(r"depth (\S+)\.\.(\S+) \(disparity\)", capsys.readouterr().out).groups())
    assert lo == pytest.approx(depth.min(), rel=5e-3, abs=1e-12) and hi == pytest.approx(depth.max(), rel=5e-3)


def test_pose_without_fx_says_its_camera_is_a_guess(tmp_path, caplog):
    import logging

    import torch

    from depthforge.config import Config
    from depthforge.predict import Pipeline

    from depthforge.sources import LoadedSource

    class Wall(torch.nn.Module):  # a metric source: 5 m everywhere
        kind = "metric"

        def forward(self, x):
            return torch.full_like(x[:, :1], 5.0)

    frames = tmp_path / "walk"
    frames.mkdir()
    for i in range(3):
        _photo(frames / f"{i:03d}.png", i, (24, 32))
    pipeline = Pipeline(LoadedSource(Wall(), Config(), "metric", {"checkpoint": "wall"}))
    with caplog.at_level(logging.WARNING):
        results = list(pipeline.predict(str(frames), sequence=True, stabilize="pose", flow="dis"))
    said = [r.getMessage() for r in caplog.records if "without --fx" in r.getMessage()]
    assert len(results) == 3 and len(said) == 1 and "--hfov 60 deg (fx = 27.7 px for 32x24 frames)" in said[0]
    assert results[0].meta["intrinsics"]["source"].startswith("guess")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        list(pipeline.predict(str(frames), sequence=True, stabilize="pose", flow="dis", fx=40.0))
    assert not [r for r in caplog.records if "without --fx" in r.getMessage()]


def test_an_ensemble_of_one_models_copies_and_a_missing_uncertainty_say_so(checkpoint, tmp_path, caplog, capsys):
    import logging
    import shutil

    copy = tmp_path / "copy.ckpt"
    shutil.copy(checkpoint, copy)
    with caplog.at_level(logging.WARNING):
        depthforge.load([checkpoint, copy])
    assert any("has the same weights as" in r.getMessage() and "spread" in r.getMessage() for r in caplog.records)
    other = train_tiny(tmp_path / "seed1", extra=["train.seed=1"])
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        depthforge.load([checkpoint, other])
    assert not [r for r in caplog.records if "same weights" in r.getMessage()]
    photo = _photo(tmp_path / "p.png")
    assert main(["predict", "--checkpoint", str(checkpoint), str(photo), "--out", str(tmp_path / "o"),
                 "--uncertainty", "model"]) == 2
    err = capsys.readouterr().err
    for option in ("model.kwargs.head=laplace", "a checkpoint ensemble", "samples 2+", "Marigold", "'tta'"):
        assert option in err, option


def test_the_docs_extras_table_lists_every_extra():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    page = (root / "docs" / "getting-started.md").read_text()
    table = [line for line in page.splitlines() if line.startswith("| `")]
    listed = {line.split("`")[1] for line in table}
    assert set(extras) <= listed, sorted(set(extras) - listed)
