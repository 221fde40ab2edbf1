"""The Python API (``depthforge.load(...).predict(...)``) is the one prediction path: the CLI's files, the demo's
downloads and the API's arrays are the same numbers, for every kind of source and input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import depthforge
from depthforge.cli import main
from depthforge.io.depth import read_depth
from tests.conftest import shared_tiny

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny40):
    # Trained long enough that its depth spans metres across the photo, so a wrong option or pixel shows.
    return shared_tiny(tiny40, tmp_path_factory, "api")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A rendered street: depth from a few metres to far away, so a wrong pixel or range shows."""
    from depthforge.data import SyntheticScenes

    path = tmp_path_factory.mktemp("photo") / "street.png"
    Image.fromarray(SyntheticScenes(1, 96, 160, seed=4).get_color(0)).save(path)
    return path


def _ply_points(path: Path) -> np.ndarray:
    from depthforge.geometry.pointcloud import read_ply

    return read_ply(path)


def test_api_cli_and_demo_give_the_same_depth_sidecar_and_point_cloud(checkpoint, photo, tmp_path):
    from depthforge.demo import DemoApp, default_sources

    result = depthforge.load(str(checkpoint)).predict(str(photo))
    assert isinstance(result, depthforge.DepthResult) and result.kind == "metric"
    assert result.depth.dtype == np.float32 and result.depth.shape == (96, 160)
    assert result.depth.std() > 0.05  # a real range: a wrong pixel or option would show

    cli = tmp_path / "cli"
    assert main(["predict", "--checkpoint", str(checkpoint), str(photo), "--out", str(cli), "--format", "npy",
                 "--ply"]) == 0
    cli_depth, cli_meta = read_depth(cli / "street.npy")
    assert np.array_equal(cli_depth, result.depth)  # bit-equal
    api = tmp_path / "api"
    result.save(api, formats=["npy"], ply=True)
    api_meta = json.loads((api / "street.npy.json").read_text())
    assert api_meta == json.loads((cli / "street.npy.json").read_text())
    assert set(api_meta) >= set(result.meta) and api_meta["intrinsics"] == result.intrinsics.to_dict()

    app = DemoApp(default_sources([str(checkpoint)], None, None), workdir=tmp_path / "demo")
    state, out = app.predict(str(photo), str(checkpoint))
    files = {Path(f).name: Path(f) for f in out["files"]}
    demo_depth, demo_meta = read_depth(files["street_depth.npy"])  # downloads named after the photo
    assert np.array_equal(demo_depth, result.depth)
    png_depth, png_meta = read_depth(files["street_depth.png"])  # 16-bit millimetres
    np.testing.assert_allclose(png_depth, result.depth, atol=0.5 / png_meta["scale"] + 1e-7)
    assert set(png_meta) == set(cli_meta) | {"encoding"}  # the 16-bit PNG says how to read it
    same = {k for k in cli_meta if k not in ("format", "scale")}
    assert {k: demo_meta[k] for k in same} == {k: cli_meta[k] for k in same}
    cli_points = _ply_points(cli / "street.ply")
    np.testing.assert_array_equal(_ply_points(files["street_depth.ply"]), cli_points)
    np.testing.assert_array_equal(cli_points, result.point_cloud()[0].astype(np.float32))


def test_load_a_checkpoint_runs_the_model_at_its_geometry_and_clamps_into_its_range(checkpoint, photo):
    from depthforge.predict import Predictor
    from depthforge.sources import load_checkpoint

    model, cfg = load_checkpoint(checkpoint)
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    raw = Predictor(model, cfg.data)(rgb)
    m = depthforge.load(checkpoint)
    result = m.predict(rgb)
    assert m.kind == "metric" and result.meta["checkpoint"] == str(checkpoint)
    np.testing.assert_array_equal(result.depth, np.clip(raw, 1e-3, cfg.data.max_depth))
    assert np.array_equal(m.predict(Image.open(photo)).depth, result.depth)  # a PIL image: the same
    assert result.intrinsics.source.startswith("guess")  # an array has no EXIF
    given = m.predict(rgb, fx=120.0, cy=10.0)
    assert (given.intrinsics.fx, given.intrinsics.fy, given.intrinsics.cx, given.intrinsics.cy) == (120, 120, 79.5, 10)
    flipped = m.predict(rgb, flip_tta=True).depth
    assert not np.allclose(flipped, result.depth, atol=1e-5) and result.meta["flip_tta"] is False


def test_load_an_onnx_file_gives_the_checkpoints_depth(checkpoint, photo, tmp_path):
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(onnx_path)]) == 0
    m = depthforge.load(onnx_path)
    result = m.predict(str(photo))
    assert m.kind == "metric" and result.meta["onnx"] == str(onnx_path)
    eager = depthforge.load(checkpoint).predict(str(photo)).depth
    np.testing.assert_allclose(result.depth, eager, atol=1e-4)
    assert np.abs(result.depth - eager).max() < 1e-2 * eager.std()


def test_load_an_hf_folder_and_calibrate_its_disparity_to_metres(tmp_path, photo):
    from tests.test_foundation import make_depth_anything

    folder = make_depth_anything(tmp_path / "da")
    m = depthforge.load(f"hf:{folder}")
    result = m.predict(str(photo))
    assert m.kind == "disparity" and result.kind == "disparity" and "affine-invariant" in result.meta["units"]
    out = tmp_path / "cli"
    assert main(["predict", "--model", f"hf:{folder}", str(photo), "--out", str(out)]) == 0
    assert np.array_equal(np.load(out / "street.npy"), result.depth)
    with pytest.raises(ValueError, match="needs metres"):
        result.point_cloud()
    # Known distances of a scene whose inverse depth is 0.5 * disparity + 0.1: calibration must give them back.
    pixels = [(5, 5), (150, 80), (80, 40), (30, 70)]
    points = [(x, y, 1 / (0.5 * float(result.depth[y, x]) + 0.1)) for x, y in pixels]
    metric = result.calibrate(points)
    assert metric.kind == "metric" and metric.meta["calibration"]["space"] == "disparity"
    for x, y, metres in points:
        assert metric.depth[y, x] == pytest.approx(metres, rel=1e-3)
    assert metric.meta["calibration"]["scale"] == pytest.approx(0.5, rel=1e-3)
    via_option = m.predict(str(photo), points=points)
    np.testing.assert_allclose(via_option.depth, metric.depth, rtol=1e-6)
    # The command line: the written file reads the given metres at the known pixels; the sidecar keeps the fit.
    flags = [a for x, y, metres in points for a in ("--point", f"{x},{y},{metres}")]
    assert main(["predict", "--model", f"hf:{folder}", str(photo), "--out", str(tmp_path / "cal"), *flags]) == 0
    written, sidecar = read_depth(tmp_path / "cal" / "street.npy")
    for x, y, metres in points:
        assert written[y, x] == pytest.approx(metres, rel=1e-3)
    assert sidecar["units"] == "metres" and sidecar["calibration"]["space"] == "disparity"
    assert sidecar["calibration"]["inliers"] == [True] * 4 and sidecar["calibration"]["rms_inverse_m"] < 1e-4


def test_every_input_kind_gives_results_named_after_it(checkpoint, photo, tmp_path):
    m = depthforge.load(checkpoint)
    folder = tmp_path / "photos"
    folder.mkdir()
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    Image.fromarray(rgb).save(folder / "a.png")
    Image.fromarray(rgb[:, ::-1]).save(folder / "b.png")
    Image.fromarray(rgb[:64, :96]).save(folder / "c.jpg")  # another size: its own batch
    (folder / "notes.txt").write_text("not an image")
    single = {p.stem: m.predict(str(p)).depth for p in sorted(folder.glob("*.[pj][np]g"))}
    many = m.predict(str(folder))
    assert not isinstance(many, depthforge.DepthResult)
    results = list(many)
    assert [r.name for r in results] == ["a", "b", "c"] and results[2].depth.shape == (64, 96)
    for r in results:
        np.testing.assert_allclose(r.depth, single[r.name], atol=1e-5)
    assert not np.allclose(results[0].depth, results[1].depth, atol=1e-3)  # not one image's depth for all
    assert [r.name for r in m.predict(str(folder / "*.png"))] == ["a", "b"]  # a glob
    mixed = list(m.predict([str(folder / "c.jpg"), rgb, Image.open(photo)]))
    assert [r.name for r in mixed] == ["c", "depth_1", "depth_2"]
    np.testing.assert_array_equal(mixed[1].depth, mixed[2].depth)
    with pytest.raises(FileNotFoundError, match="no-such.png"):
        m.predict(str(tmp_path / "no-such.png"))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        m.predict(rgb.astype(np.float32))


def test_a_video_streams_frame_results_and_its_side_by_side_file(checkpoint, tmp_path):
    pytest.importorskip("av")
    from depthforge.predict import save_predictions
    from depthforge.video.frames import read_frames, write_test_video

    rng = np.random.default_rng(0)
    clip = write_test_video(tmp_path / "clip.mp4", [rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
                                                    for _ in range(5)])
    m = depthforge.load(checkpoint)
    frames = list(m.predict(str(clip), max_frames=4, stabilize="causal"))
    assert [r.name for r in frames] == [f"clip_{i:06d}" for i in range(4)]
    assert frames[3].meta["frame"] == 3 and frames[3].meta["stabilize"] == "causal"
    saved = list(save_predictions(m, [str(clip)], tmp_path / "out", max_frames=4, stabilize="causal"))
    assert len(saved) == 1 and saved[0].frames == 4
    assert sum(1 for _ in read_frames(saved[0].paths[0])) == 4
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "clip_000002.npy"), frames[2].depth)


class _Stub(torch.nn.Module):
    """A metric source whose output runs from -2 m to 30 m across the image: a model range of 20 m clamps both ends."""

    kind = "metric"

    def forward(self, x):
        n, _, h, w = x.shape
        ramp = torch.linspace(-2.0, 30.0, w).expand(n, 1, h, w)
        return ramp + 0 * x[:, :1]


def test_clamped_pixels_are_recorded_and_left_out_of_the_point_cloud(tmp_path):
    from depthforge.config import Config
    from depthforge.predict import Pipeline
    from depthforge.sources import LoadedSource

    cfg = Config()
    cfg.data.max_depth = 20.0
    cfg.data.resize_short = 0
    m = Pipeline(LoadedSource(_Stub(), cfg, "metric", {"checkpoint": "stub"}))
    rgb = np.full((10, 33, 3), 128, np.uint8)
    result = m.predict(rgb)
    ramp = np.linspace(-2.0, 30.0, 33)
    inside = (ramp >= 1e-3) & (ramp <= 20.0)
    assert result.depth.min() == pytest.approx(1e-3) and result.depth.max() == pytest.approx(20.0)
    np.testing.assert_array_equal(result.valid[0], inside)
    points, colors = result.point_cloud()
    assert len(points) == 10 * inside.sum() and points[:, 2].min() == 1.0 and points[:, 2].max() == 20.0
    written = result.save(tmp_path, ply=True)
    assert len(_ply_points(tmp_path / "depth.ply")) == len(points)
    meta = json.loads((tmp_path / "depth.npy.json").read_text())
    assert meta["points_left_out"] == 10 * (~inside).sum()
    assert meta["clamped"]["below"] == pytest.approx((ramp < 1e-3).mean())
    assert tmp_path / "depth_color.png" in written


def test_the_readme_python_example_runs(checkpoint, photo, tmp_path, monkeypatch):
    text = README.read_text()
    block = re.search(r"<!-- test: by tests/test_api.py::test_the_readme_python_example_runs -->\s*```python\n(.*?)```", text, re.S)
    assert block, "README.md lost its Python example (marked as run by this test)"
    code = block.group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "quickstart" / "checkpoints").mkdir(parents=True)
    (tmp_path / "runs" / "quickstart" / "checkpoints" / "best.ckpt").symlink_to(checkpoint)
    Image.open(photo).convert("RGB").save(tmp_path / "photo.jpg")
    exec(compile(code, "README.md", "exec"), {})
    depth, meta = read_depth(tmp_path / "out" / "photo.npy")
    expected = depthforge.load(checkpoint).predict(str(tmp_path / "photo.jpg")).depth
    assert np.array_equal(depth, expected) and meta["units"] == "metres"
