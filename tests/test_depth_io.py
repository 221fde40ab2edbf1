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
    assert sidecar["value_range"] == pytest.approx([depth.min(), depth.max()])
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


def _msg(path, text):
    import re

    return rf"^{re.escape(str(path))}: {text}$"


def test_npy_depth_shapes_types_and_errors_name_the_file(tmp_path):
    from depthforge.io.depth import read_depth_file
    from depthforge.io.errors import DataError

    d = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.save(tmp_path / "chw.npy", d[None])   # (1, H, W) is squeezed
    np.save(tmp_path / "row.npy", d[:1])     # a 1 x W map stays 2-d
    got = read_depth_file(tmp_path / "chw.npy")
    assert got.dtype == np.float32 and np.array_equal(got, d.astype(np.float32))
    assert read_depth_file(tmp_path / "row.npy").shape == (1, 4)
    np.save(tmp_path / "two.npy", np.stack([d, d]))
    with pytest.raises(DataError, match=_msg(tmp_path / "two.npy", r"depth must be a numeric HxW array, got dtype "
                                                                   r"float64 shape \(2, 3, 4\)")):
        read_depth_file(tmp_path / "two.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)  # pickled: refused
    with pytest.raises(DataError, match=rf"^{tmp_path / 'obj.npy'}: unreadable .npy depth \(.*\); save it with "
                                       r"numpy.save as a float array \(or pass data.skip_invalid=true\)$"):
        read_depth_file(tmp_path / "obj.npy")
    np.save(tmp_path / "text.npy", np.array([["1", "2"], ["3", "4"]]))
    with pytest.raises(DataError, match=_msg(tmp_path / "text.npy", r"depth must be a numeric HxW array, got dtype "
                                                                    r"<U1 shape \(2, 2\)")):
        read_depth_file(tmp_path / "text.npy")
    (tmp_path / "x.tif").write_bytes(b"II*\x00")
    with pytest.raises(DataError, match=_msg(tmp_path / "x.tif", r"unsupported depth file type; use one of "
                                                                 r"\('.npy', '.png', '.pfm', '.exr'\)")):
        read_depth_file(tmp_path / "x.tif")


def test_pfm_both_byte_orders_and_bad_files(tmp_path):
    from depthforge.io.depth import read_pfm

    d = np.array([[1.5, 2.0, 3.25], [4.0, 5.5, 6.0]], np.float32)
    (tmp_path / "be.pfm").write_bytes(b"Pf\n3 2\n0.5\n" + np.flipud(d).astype(">f4").tobytes())  # big-endian
    got = read_pfm(tmp_path / "be.pfm")
    assert got.dtype == np.float32 and np.array_equal(got, d)
    (tmp_path / "rgb.pfm").write_bytes(b"PF\n3 2\n-1.0\n" + np.zeros(18, "<f4").tobytes())
    with pytest.raises(ValueError, match=_msg(tmp_path / "rgb.pfm", r"not a single-channel PFM \(header b'PF'\)")):
        read_pfm(tmp_path / "rgb.pfm")
    (tmp_path / "short.pfm").write_bytes(b"Pf\n3 2\n-1.0\n" + np.zeros(4, "<f4").tobytes())
    with pytest.raises(ValueError, match=_msg(tmp_path / "short.pfm", r"truncated PFM \(4 of 6 values\)")):
        read_pfm(tmp_path / "short.pfm")


def test_png16_clipping_sidecars_and_8_bit_pngs(tmp_path):
    from PIL import Image

    from depthforge.io.depth import read_depth_file
    from depthforge.io.errors import DataError

    d = np.array([[-1.0, 0.0001, 70.0, 1.234]])
    path, side = write_depth(tmp_path / "a" / "b" / "d", d, "png16")  # folders made as needed
    assert np.asarray(Image.open(path)).tolist() == [[0, 0, 65535, 1234]]  # saturates, never wraps
    meta = json.loads(side.read_text())
    assert meta["scale"] == 1000.0 and meta["shape"] == [1, 4] and meta["units"] == "metres"
    for fmt in ("npy", "pfm", "exr"):
        p, s = write_depth(tmp_path / fmt, d.astype(np.float64), fmt)
        assert json.loads(s.read_text())["scale"] == 1.0 and read_depth(p)[0].dtype == np.float32
    default, _ = write_depth(tmp_path / "plain", d)  # npy unless told
    assert default.suffix == ".npy" and np.load(default).dtype == np.float32
    # without a sidecar a 16-bit PNG is read as millimetres, through read_depth_file as raw values
    Image.fromarray(np.array([[1500, 3000]], np.uint16)).save(tmp_path / "bare.png")
    assert read_depth(tmp_path / "bare.png") == (pytest.approx(np.array([[1.5, 3.0]])), {})
    assert read_depth_file(tmp_path / "bare.png").tolist() == [[1500.0, 3000.0]]
    assert read_depth_file(tmp_path / "bare.png").dtype == np.float32
    Image.fromarray(np.array([[15, 30]], np.uint8)).save(tmp_path / "eight.png")
    assert read_depth_file(tmp_path / "eight.png").tolist() == [[15.0, 30.0]]  # allowed unless 16-bit is required
    with pytest.raises(DataError, match=_msg(tmp_path / "eight.png", r"an 8-bit PNG carries no metric depth; "
                                                                     r"write 16-bit PNGs \(format png16\)")):
        read_depth(tmp_path / "eight.png")
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match=_msg(tmp_path / "rgb.png", r"depth PNG must be single-channel, got shape "
                                                                   r"\(4, 5, 3\)")):
        read_depth(tmp_path / "rgb.png")
    (tmp_path / "junk.png").write_text("not a png")
    with pytest.raises(DataError, match=rf"^{tmp_path / 'junk.png'}: unreadable depth PNG \(.*\); re-export it as "
                                       r"16-bit PNG$"):
        read_depth(tmp_path / "junk.png")


def test_exr_channels_and_a_missing_openexr(tmp_path, monkeypatch):
    import sys

    import OpenEXR

    from depthforge.io.depth import read_depth_file
    from depthforge.io.errors import DataError

    d = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    path, _ = write_depth(tmp_path / "z", d, "exr")
    with OpenEXR.File(str(path)) as f:
        assert list(f.channels()) == ["Z"]
    other = tmp_path / "other.exr"  # another tool's single channel: read whatever its name
    with OpenEXR.File({"type": OpenEXR.scanlineimage}, {"depth": d * 2}) as f:
        f.write(str(other))
    assert read_depth_file(other).tolist() == (d * 2).tolist() and read_depth_file(other).dtype == np.float32
    both = tmp_path / "both.exr"  # Z among others: Z
    with OpenEXR.File({"type": OpenEXR.scanlineimage}, {"A": d * 3, "Z": d}) as f:
        f.write(str(both))
    assert read_depth_file(both).tolist() == d.tolist()
    half = tmp_path / "half.exr"  # half-float pixels come back as float32
    with OpenEXR.File({"type": OpenEXR.scanlineimage}, {"Z": d.astype(np.float16)}) as f:
        f.write(str(half))
    assert read_depth_file(half).dtype == np.float32
    (tmp_path / "bad.exr").write_text("no exr")
    with pytest.raises(DataError, match=rf"^{tmp_path / 'bad.exr'}: unreadable depth file \(.*\)$"):
        read_depth_file(tmp_path / "bad.exr")
    monkeypatch.setitem(sys.modules, "OpenEXR", None)
    with pytest.raises(ImportError, match=r"^EXR needs the OpenEXR bindings: pip install 'depthforge\[formats\]' "
                                          r"\(or write npy, pfm or png16\)$") as missing:
        write_depth(tmp_path / "y", d, "exr")
    assert missing.value.name == "OpenEXR"  # the command line names the extra from the module


def test_sidecars_written_before_0_2_read_with_the_new_key_names(tmp_path):
    import json

    from depthforge.io import read_sidecar

    old = {"units": "metres", "valid_range": [0.5, 9.0], "clamped": {"range": [0.001, 20.0], "below": 0.1}}
    (tmp_path / "a.npy.json").write_text(json.dumps(old))
    assert read_sidecar(tmp_path / "a.npy") == {"units": "metres", "value_range": [0.5, 9.0],
                                                "clamped": {"model_range": [0.001, 20.0], "below": 0.1}}
    new = {"value_range": [1.0, 2.0], "clamped": {"model_range": [0.001, 10.0]}, "calibration": {"range": 3}}
    (tmp_path / "b.npy.json").write_text(json.dumps(new))
    assert read_sidecar(tmp_path / "b.npy") == new  # a new sidecar, and other keys named range, stay as they are
    (tmp_path / "c.npy.json").write_text(json.dumps({"clamped": None, "valid_range": None}))
    assert read_sidecar(tmp_path / "c.npy") == {"clamped": None, "value_range": None}
    assert read_sidecar(tmp_path / "none.npy") == {}


def test_the_sidecar_is_indented_json_a_person_can_read(tmp_path):
    import json

    _, side = write_depth(tmp_path / "d", np.full((2, 3), 1.5, np.float32), "npy", meta={"model": "m"})
    text = side.read_text()
    assert text == json.dumps(json.loads(text), indent=2)  # two spaces, one key per line: diffable, greppable
    assert text.splitlines()[1] == '  "units": "metres",'
