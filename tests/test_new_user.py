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
