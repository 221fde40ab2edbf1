"""What a new user still tripped over (issue #49, round 2): each test failed on the old behaviour."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthforge.cli import main
from tests.conftest import train_tiny
from tests.test_serve import png_header_only


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("newuser2") / "run")


@pytest.fixture()
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), np.uint8)).save(path)
    return path


# command (CHECKPOINT, PHOTO and OUT filled in), the module it reaches for, the extra that brings it
EXTRA_GATED = [
    (["demo", "--checkpoint", "CHECKPOINT"], "gradio", "demo"),
    (["serve", "--checkpoint", "CHECKPOINT"], "fastapi", "serve"),
    (["export", "--checkpoint", "CHECKPOINT", "--out", "OUT/m.onnx"], "onnxruntime", "export"),
    (["export", "--checkpoint", "CHECKPOINT", "--format", "openvino", "--out", "OUT/m.xml"], "openvino",
     "openvino"),
    (["push", "--checkpoint", "CHECKPOINT", "--out", "OUT/shared", "--repo", "me/model"], "huggingface_hub", "hf"),
    (["predict", "--model", "hf:OUT/model", "PHOTO", "--out", "OUT/depth"], "transformers", "hf"),
    (["predict", "--model", "marigold:OUT/model", "PHOTO", "--out", "OUT/depth"], "diffusers", "marigold"),
    (["predict", "--checkpoint", "CHECKPOINT", "OUT/clip.mp4", "--out", "OUT/depth"], "av", "video"),
    (["train", "--out", "OUT/run", "--max-steps", "1", "train.loggers=[csv,mlflow]"], "mlflow", "mlflow"),
]


@pytest.mark.parametrize("argv, module, extra", EXTRA_GATED, ids=[f"{a[0]}-{m}" for a, m, _ in EXTRA_GATED])
def test_a_command_whose_extra_is_missing_names_it_in_one_line(argv, module, extra, checkpoint, photo, tmp_path,
                                                                monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.mp4").write_bytes(b"\0" * 64)
    (out / "model").mkdir()
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails as if it were not installed
    args = [a.replace("CHECKPOINT", str(checkpoint)).replace("PHOTO", str(photo)).replace("OUT", str(out))
            for a in argv]
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert f"pip install 'depthforge[{extra}]'" in lines[0] and "Traceback" not in captured.err, captured.err
    assert not captured.out  # nothing started: no URL, no progress
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert left == ["clip.mp4", "model"], left  # nothing written


def test_a_header_claiming_50000x50000_pixels_is_skipped_and_the_good_photo_written(checkpoint, photo, tmp_path,
                                                                                    capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo.rename(folder / "good.png")
    (folder / "bomb.png").write_bytes(png_header_only(50000, 50000))
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), str(folder), "--out", str(out)]) == 1
    assert (out / "good.npy").is_file() and not (out / "bomb.npy").exists()
    err = capsys.readouterr().err
    assert "bomb.png (the header claims more pixels than the 179-megapixel limit" in err and "Traceback" not in err


@pytest.mark.parametrize("command, how", [(["train", "--data"], "data.name=<layout>"),
                                          (["data", "check"], "--format <layout>")])
def test_an_empty_data_folder_says_so_and_names_only_options_the_command_has(command, how, tmp_path, capsys):
    empty = tmp_path / "my_data"
    empty.mkdir()
    assert main([*command, str(empty)]) == 2
    err = capsys.readouterr().err
    assert "(found: an empty folder)" in err and f"name the layout with {how}" in err
    assert ("--format" in err) == (how.startswith("--format")), err


def test_the_readme_and_each_docs_page_say_where_data_comes_from_before_using_it():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    first = readme.index("DATA/DepthEstimationUnreal")
    assert "tar -xJf train.tar.xz -C DATA && tar -xJf val.tar.xz -C DATA" in readme[:first]
    for page in sorted((root / "docs").glob("*.md")):
        text = page.read_text()
        if "DATA/DepthEstimationUnreal" in text:
            before = text[:text.index("DATA/DepthEstimationUnreal")]
            assert "challenge data is unpacked into" in before or "is the DLRP course's" in before, page.name


def test_sidecar_keys_say_what_they_hold_and_old_sidecars_read_with_the_new_names(checkpoint, photo, tmp_path):
    import json

    from depthforge.io import read_depth

    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), str(photo), "--out", str(out)]) == 0
    side = json.loads((out / "photo.npy.json").read_text())
    depth = np.load(out / "photo.npy")
    assert side["value_range"] == pytest.approx([float(depth.min()), float(depth.max())])
    assert side["clamped"]["model_range"] == [1e-3, 20.0] and "valid_range" not in side
    old = {**side, "valid_range": side.pop("value_range"),
           "clamped": {**side["clamped"], "range": side["clamped"].pop("model_range")}}
    (out / "photo.npy.json").write_text(json.dumps(old))  # as depthforge 0.1 wrote it
    _, meta = read_depth(out / "photo.npy")
    assert meta["value_range"] == old["valid_range"] and meta["clamped"]["model_range"] == [1e-3, 20.0]
    assert "valid_range" not in meta and "range" not in meta["clamped"]
