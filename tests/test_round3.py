"""Tests that prove (issue #50, round 3): each fails on a bug that left the whole suite green before (the bug is
named in each test's docstring and in the commit that added it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import depthforge
from depthforge.cli import main
from tests.conftest import train_tiny


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("round3") / "run", steps=8, n_train=8, batch=4)


def _photo(path: Path, seed: int = 0, size: tuple[int, int] = (40, 56)) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), np.uint8)).save(path)
    return path


def test_a_metric_source_calibrated_with_shift_fits_a_shift(checkpoint, tmp_path):
    """Bug: ``Pipeline.result`` stops passing ``opts.shift`` to the calibration (a scale-only fit)."""
    photo = _photo(tmp_path / "p.png")
    m = depthforge.load(checkpoint)
    raw = m.predict(photo).depth
    points = [(x, y, 2.0 * float(raw[y, x]) + 3.0) for x, y in ((5, 5), (40, 30), (20, 12), (50, 35))]
    shifted = m.predict(photo, points=points, shift=True)
    assert shifted.calibration["scale"] == pytest.approx(2.0, rel=1e-4)
    assert shifted.calibration["shift"] == pytest.approx(3.0, abs=1e-3)
    np.testing.assert_allclose(shifted.depth, 2.0 * raw + 3.0, rtol=1e-5)
    assert m.predict(photo, points=points).calibration["shift"] == 0.0  # metric: no shift unless asked


def test_skip_existing_redoes_an_empty_or_truncated_output(checkpoint, tmp_path):
    """Bug (a real gap): ``--skip-existing`` took a 0-byte or cut-short depth file as done (only sidecars were read)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate("abc"):
        _photo(photos / f"{name}.png", i)
    out = tmp_path / "out"
    args = ["predict", "--checkpoint", str(checkpoint), str(photos), "--out", str(out), "--format", "npy", "png16"]
    assert main(args) == 0
    whole = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "a.npy").write_bytes(whole["a.npy"][: len(whole["a.npy"]) // 2])  # a kill while writing
    (out / "b.png").write_bytes(b"")  # the 16-bit PNG
    (out / "c_color.png").write_bytes(whole["c_color.png"][:100])
    assert main([*args, "--skip-existing"]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == whole


def test_the_input_guard_checks_every_format(checkpoint, tmp_path, capsys):
    """Bug: the guard against writing over the input checks only the first ``--format``."""
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = _photo(folder / "shot.png")
    before = photo.read_bytes()
    assert main(["predict", "--checkpoint", str(checkpoint), str(photo), "--out", str(folder), "--format", "npy",
                 "png16"]) == 1
    assert photo.read_bytes() == before and not (folder / "shot.npy").exists()
    assert "shot.png: writing it would overwrite the input image" in capsys.readouterr().err


def test_the_openvino_accuracy_control_scores_the_bound_it_records(monkeypatch, tmp_path):
    """Bug: NNCF's accuracy control was given the mean RMSE change without its standard-error term, while the
    recorded bound kept it: the choice was judged by a laxer number than the one the file reports."""
    import depthforge.evaluation.quantized as q

    base = {0: 1.0, 1: 2.0, 2: 3.0}
    int8 = {0: 1.1, 1: 2.0, 2: 3.3}
    seen = {}
    monkeypatch.setattr("depthforge.export.onnx.OpenVINOModel", lambda path: f"model {Path(path).name}")
    monkeypatch.setattr(q, "image_rmse", lambda runner, *a, **k: base if runner == "model fp32.xml" else int8)
    monkeypatch.setattr(q, "set_metadata", lambda path, meta: seen.update(meta))

    def quantize(fp32, out, cfg, images, rmse=None, budget=None, selection=None):
        seen["validation"] = rmse("model int8.xml", selection)
        return Path(out)

    monkeypatch.setattr(q, "quantize_openvino", quantize)

    class Protocol:
        name = "standard"

    _, selection = q.openvino_int8(Path("fp32.xml"), Path("int8.xml"), None, [], [], "train", Protocol(), 0.05)
    changes = [0.1, 0.0, 0.3]
    bound = np.mean(changes) + 2 * np.std(changes, ddof=1) / np.sqrt(3)
    assert selection["bound_m"] == pytest.approx(bound)
    assert seen["validation"] == pytest.approx(np.mean(list(base.values())) + bound)  # the same bound, not the mean
    assert not selection["met"] and json.loads(seen["depthforge_selection"])["bound_m"] == pytest.approx(bound)


def test_the_cli_refuses_abbreviated_options(checkpoint, tmp_path, capsys):
    """Bug: argparse took ``--max-rmse`` for ``--max-rmse-delta`` (a renamed flag in the docs went unnoticed, and a
    user's typo silently picked an option)."""
    with pytest.raises(SystemExit) as stop:
        main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"), "--quantize", "int8",
              "--max-rmse", "0.02"])
    assert stop.value.code == 2 and "unrecognized arguments: --max-rmse 0.02" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict", "--checkp", str(checkpoint), "x.png", "--out", str(tmp_path)])
