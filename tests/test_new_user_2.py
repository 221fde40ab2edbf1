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


def test_save_returns_every_file_it_writes_sidecars_included(checkpoint, photo, tmp_path):
    import depthforge

    result = depthforge.load(checkpoint).predict(photo)
    written = result.save(tmp_path / "out", formats=["npy", "png16"], ply=True)
    assert sorted(p.name for p in written) == sorted(p.name for p in (tmp_path / "out").iterdir())
    assert {"photo.npy.json", "photo.png.json"} <= {p.name for p in written}


def test_a_short_run_counts_the_epochs_it_will_do_and_lightning_does_not_warn(tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO)
    # 4 images in batches of 2: 2 steps an epoch, so --max-steps 2 is one epoch of the 40 the config names
    train_tiny(tmp_path / "run", steps=2, n_train=4, batch=2, extra=["train.epochs=40"])
    assert "epoch 1/1, step 2" in caplog.text and "/40" not in caplog.text
    assert "log_every_n_steps" not in caplog.text and "epoch 1/1" in caplog.text


def test_a_point_cloud_of_depth_with_inf_at_the_principal_point_warns_nothing():
    import warnings

    from depthforge.geometry.camera import Intrinsics
    from depthforge.geometry.pointcloud import point_cloud

    depth = np.full((5, 7), 2.0)
    depth[2, 3] = np.inf  # the principal point: x = (u - cx) / fx * z is 0 * inf there
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        points, _ = point_cloud(depth, np.zeros((5, 7, 3), np.uint8), Intrinsics(10, 10, 3, 2))
    assert len(points) == 34 and np.isfinite(points).all()


def test_the_colour_preview_has_a_bar_in_metres_matching_its_colours(checkpoint, tmp_path):
    import depthforge
    from depthforge.viz import color_range, colorize

    rgb = np.random.default_rng(1).integers(0, 255, (60, 200, 3), np.uint8)
    result = depthforge.load(checkpoint).predict(rgb)
    ramp = np.linspace(1.0, 9.0, 200, dtype=np.float32)[None].repeat(60, 0)  # a depth map with a known range
    result.depth = ramp
    result.save(tmp_path / "bar")
    result.save(tmp_path / "plain", colorbar=False)
    plain = np.asarray(Image.open(tmp_path / "plain" / "depth_color.png"))
    bar = np.asarray(Image.open(tmp_path / "bar" / "depth_color.png"))
    assert plain.shape == (60, 200, 3) and bar.shape[0] == 60 and bar.shape[1] > 220
    np.testing.assert_array_equal(bar[:, :200], plain)  # the picture itself is unchanged
    lo, hi = color_range(ramp)
    column = bar[:, 205]  # inside the bar: far (hi) at the top, near (lo) at the bottom
    np.testing.assert_array_equal(column[0], colorize(np.array([[hi]]), "magma", lo, hi)[0, 0])
    np.testing.assert_array_equal(column[-1], colorize(np.array([[lo]]), "magma", lo, hi)[0, 0])
    labels = bar[:, 215:]
    assert (labels < 128).any()  # text (the metres) is written beside it


def brightness_depth(x):
    """A stand-in model whose depth spans its 20 m range: metres from each pixel's brightness."""
    return 20.0 * x.mean(1, keepdim=True)


def test_parity_allows_float32_round_off_of_the_depth_range_and_catches_real_export_bugs():
    import torch
    import torch.nn.functional as F

    from depthforge.export import ParityError, check_parity

    def round_off(x):  # what a runtime gives: float32 noise, worst pixel 1.07e-4 m (the OpenVINO export)
        y = brightness_depth(x)
        noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)) * 1e-7 * 20
        noise.view(-1)[7] = 1.07e-4
        return y + noise

    assert check_parity(brightness_depth, round_off, depth_range=20.0) == pytest.approx(1.07e-4, rel=1e-2)
    with pytest.raises(ParityError, match=r"max 0.000107 m; the limits are 1e-05 m and 1e-05 m \(--tol 1e-05 m\)"):
        check_parity(brightness_depth, round_off, tol=1e-5)

    def wrong_resize(x):  # the exported graph resizes nearest where eager is bilinear
        small = F.interpolate(x, scale_factor=0.5, mode="nearest")
        return brightness_depth(F.interpolate(small, size=x.shape[-2:], mode="nearest"))

    def no_scaling(x):  # the head's scaling to metres left out of the graph
        return brightness_depth(x) / 20.0

    for bug in (wrong_resize, no_scaling):
        with pytest.raises(ParityError, match=r"the limits are 0.0002 m and 0.002 m \(1e-05 and 0.0001 x the model's "
                                              r"20 m range"):
            check_parity(brightness_depth, bug, depth_range=20.0)


@pytest.mark.parametrize("fmt, quantize", [("onnx", []), ("openvino", ["--quantize", "int8"])])
def test_an_export_that_fails_its_check_leaves_nothing_behind(fmt, quantize, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", fmt, *quantize, "--out", str(out / "m.x"),
                 "--tol", "1e-12"]) == 2
    assert "exported model differs from eager" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())


def test_every_command_is_named_in_the_readme_or_the_docs_index_and_the_cpu_install_is_documented():
    """Item 9 (push was in the help but in neither) and item 10 (the CPU-only install)."""
    from depthforge.cli import COMMANDS, build_parser

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text() + (root / "docs" / "index.md").read_text()
    sub = next(a for a in build_parser()._actions if getattr(a, "choices", None) and "train" in a.choices)
    assert len(sub.choices) == len(COMMANDS)
    missing = [name for name in sub.choices if f"depthforge {name}" not in text]
    assert not missing, missing
    readme = (root / "README.md").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme and "busy one" in readme
