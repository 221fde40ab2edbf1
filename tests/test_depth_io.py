import json

import numpy as np
import pytest

from depthforge.io.depth import FORMATS, read_depth, write_depth


@pytest.mark.parametrize("fmt", FORMATS)
def test_raw_formats_round_trip_with_sidecar(fmt, tmp_path):
    if fmt == "exr":
        pytest.importorskip("OpenEXR")
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.3, 60.0, (13, 17)).astype(np.float32)
    meta = {"model": "unet_efficientnet_lite0", "checkpoint": "best.ckpt", "input_size": [13, 17],
            "intrinsics": {"fx": 10.0, "fy": 10.0, "cx": 8.5, "cy": 6.5}}
    path, side = write_depth(tmp_path / "d", depth, fmt, meta=meta)
    back, read_meta = read_depth(path)
    tolerance = 0.5 / 1000 if fmt == "png16" else 0.0  # png16: millimetres, rounded
    np.testing.assert_allclose(back, depth, atol=tolerance + 1e-7, rtol=0)
    sidecar = json.loads(side.read_text())
    assert sidecar["units"] == "metres" and sidecar["format"] == fmt and "scale" in sidecar
    assert sidecar["intrinsics"]["fx"] == 10.0 and sidecar["model"] == "unet_efficientnet_lite0"
    assert sidecar["valid_range"] == pytest.approx([depth.min(), depth.max()])
    assert read_meta == sidecar


def test_png16_scale_is_recorded_and_used(tmp_path):
    depth = np.array([[1.0, 200.0]], np.float32)
    path, side = write_depth(tmp_path / "k", depth, "png16", scale=256.0)  # KITTI's convention
    back, meta = read_depth(path)
    assert meta["scale"] == 256.0 and back[0, 1] == pytest.approx(200.0, abs=1 / 512)
    _, side_mm = write_depth(tmp_path / "m", depth, "png16")
    assert "saturates at 65.535 m" in json.loads(side_mm.read_text())["encoding"]


def test_unknown_format_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown depth format"):
        write_depth(tmp_path / "x", np.zeros((2, 2)), "tiff")
