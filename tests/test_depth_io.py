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


# ---- #50: each refusal's exact text and each check's boundary (the mutants of io/depth.py that survived) ----

def _error(call, *args) -> str:
    """What ``call(*args)`` refuses with (a `DataError` or the readers' own ValueError), as one string."""
    from depthforge.io.errors import DataError

    with pytest.raises((DataError, ValueError)) as err:
        call(*args)
    return str(err.value)


def test_pfm_header_fields_are_checked_at_their_boundaries(tmp_path):
    from depthforge.io.depth import read_depth_file, read_pfm

    def pfm(name, header, values=6, order="<f4", tail=b""):
        path = tmp_path / name
        path.write_bytes(header + np.arange(values, dtype=order).tobytes() + tail)
        return path

    for header, values, says in ((b"Pf\n0 2\n-1\n", 0, "0x2, scale -1.0"), (b"Pf\n3 0\n-1\n", 0, "3x0, scale -1.0"),
                                 (b"Pf\n-2 3\n-1\n", 6, "-2x3, scale -1.0"), (b"Pf\n3 2\n0\n", 6, "3x2, scale 0.0"),
                                 (b"Pf\n3 2\ninf\n", 6, "3x2, scale inf"), (b"Pf\n3 2\nnan\n", 6, "3x2, scale nan")):
        path = pfm("bad.pfm", header, values)
        assert _error(read_pfm, path) == f"{path}: the PFM header says {says}"
    # one pixel wide or high; a scale of exactly 1 (big-endian); rows stored bottom to top
    assert read_pfm(pfm("col.pfm", b"Pf\n1 3\n-1\n", 3)).tolist() == [[2.0], [1.0], [0.0]]
    assert read_pfm(pfm("row.pfm", b"Pf\n3 1\n1\n", 3, ">f4")).tolist() == [[0.0, 1.0, 2.0]]
    # a line break after the values (some writers add one) is not a value; a whole value more is refused
    assert read_pfm(pfm("nl.pfm", b"Pf\n3 2\n-1\n", tail=b"\n")).tolist() == [[3.0, 4.0, 5.0], [0.0, 1.0, 2.0]]
    assert _error(read_pfm, pfm("long.pfm", b"Pf\n3 2\n-1\n", 7)).endswith(": truncated PFM (7 of 6 values)")
    path = pfm("p5.pfm", b"P5 junk header\n")
    assert _error(read_pfm, path) == f"{path}: not a single-channel PFM (header b'P5 junk ')"  # 8 bytes shown
    # through read_depth_file: the reader's message without its own copy of the path, cut at 120 characters
    path = pfm("short.pfm", b"Pf\n3 2\n-1\n", 4)
    assert _error(read_depth_file, path) == f"{path}: unreadable depth file (truncated PFM (4 of 6 values))"
    path = pfm("scale.pfm", b"Pf\n3 2\n" + b"\xff" * 63 + b"\n")
    what = ("could not convert string to float: b'" + "\\xff" * 63)[:120]
    assert _error(read_depth_file, path) == f"{path}: unreadable depth file ({what})"


def test_pfm_header_lines_are_read_within_their_bounds(tmp_path):
    # Bug found by #50: a scale line over 64 bytes was cut there and the rest of it read as the first value,
    # shifting every value by its length (garbage returned, no error). A line without a break within its bound
    # (16 bytes for the first, 64 for the others, the line break included) is now refused.
    from depthforge.io.depth import read_pfm

    d = np.array([[1.5, 2.0, 3.25], [4.0, 5.5, 6.0]], np.float32)
    values = np.flipud(d).astype("<f4").tobytes()
    lines = {"first": (b"Pf" + b" " * 13 + b"\n", b"Pf" + b" " * 14 + b"\n"),
             "size": (b"3" + b" " * 61 + b"2\n", b"3" + b" " * 62 + b"2\n"),
             "scale": (b"-1" + b" " * 61 + b"\n", b"-1" + b" " * 62 + b"\n")}
    for name, (fits, over) in lines.items():
        assert (len(fits), len(over)) == ((16, 17) if name == "first" else (64, 65))
        for line, ok in ((fits, True), (over, False)):
            header = {"first": b"Pf\n", "size": b"3 2\n", "scale": b"-1\n"} | {name: line}
            path = tmp_path / f"{name}.pfm"
            path.write_bytes(header["first"] + header["size"] + header["scale"] + values)
            if ok:
                assert np.array_equal(read_pfm(path), d), name
            else:
                assert _error(read_pfm, path) == (f"{path}: a PFM header line is unterminated or over its limit "
                                                  "(16 bytes for the first, 64 for the others)"), name
    (tmp_path / "cut.pfm").write_bytes(b"Pf\n3 2\n-1")  # the file ends in its header
    assert "header line is unterminated" in _error(read_pfm, tmp_path / "cut.pfm")


def _exr(path, window, depth):
    import OpenEXR

    with OpenEXR.File({"type": OpenEXR.scanlineimage, "dataWindow": window, "displayWindow": window},
                      {"Z": np.ascontiguousarray(depth)}) as f:  # the bindings ignore a view's strides
        f.write(str(path))
    return path


def test_exr_data_window_is_checked_against_the_pixel_limit_from_the_header(tmp_path, monkeypatch):
    import struct

    from depthforge.io.depth import read_depth_file

    d = np.arange(9, dtype=np.float32).reshape(3, 3)
    path = _exr(tmp_path / "off.exr", ((10, 20), (12, 22)), d)  # 3x3 pixels, not at the origin
    monkeypatch.setattr("depthforge.io.images.MAX_PIXELS", 9)
    assert read_depth_file(path).tolist() == d.tolist()  # exactly at the limit: read
    monkeypatch.setattr("depthforge.io.images.MAX_PIXELS", 8)
    assert _error(read_depth_file, path) == (f"{path}: the EXR header claims a 3x3 data window, over the "
                                             "0-megapixel limit or empty; it was not read")
    # one pixel wide, one pixel high: not empty
    monkeypatch.setattr("depthforge.io.images.MAX_PIXELS", 100)
    col = _exr(tmp_path / "col.exr", ((5, 0), (5, 2)), d[:, :1])
    row = _exr(tmp_path / "row.exr", ((0, 7), (2, 7)), d[:1])
    assert read_depth_file(col).tolist() == [[0.0], [3.0], [6.0]] and read_depth_file(row).tolist() == [[0, 1, 2]]
    # a header claiming 2000x1000 pixels in a 400-byte file: refused from the header alone, the pixels never read
    # (reading them fails: the file has none)
    raw = path.read_bytes()
    at = raw.index(b"dataWindow\x00box2i\x00") + len(b"dataWindow\x00box2i\x00") + 4  # after the size field
    big = tmp_path / "big.exr"
    big.write_bytes(raw[:at] + struct.pack("<4i", 10, 20, 2009, 1019) + raw[at + 16:])
    monkeypatch.setattr("depthforge.io.images.MAX_PIXELS", 1_500_000)  # 1.5 megapixels, shown rounded: 2
    assert _error(read_depth_file, big) == (f"{big}: the EXR header claims a 2000x1000 data window, over the "
                                            "2-megapixel limit or empty; it was not read")
    # a window inverted in x or in y alone: refused (by OpenEXR 3.5 itself when it opens the header)
    for x0, y0, x1, y1 in ((12, 20, 10, 22), (10, 22, 12, 20)):
        bad = tmp_path / "inverted.exr"
        bad.write_bytes(raw[:at] + struct.pack("<4i", x0, y0, x1, y1) + raw[at + 16:])
        assert _error(read_depth_file, bad).startswith(f"{bad}: "), (x0, y0, x1, y1)


def test_exr_without_a_single_channel_or_a_reader_failing_without_words(tmp_path, monkeypatch):
    import OpenEXR

    from depthforge.io.depth import read_depth_file

    d = np.ones((3, 3), np.float32)
    rgb = tmp_path / "rgb.exr"  # R, G and B only: the bindings hand them over as one (H, W, 3) channel
    with OpenEXR.File({"type": OpenEXR.scanlineimage}, {"R": d, "G": d, "B": d}) as f:
        f.write(str(rgb))
    assert _error(read_depth_file, rgb) == (f"{rgb}: unreadable depth file (channel RGB is not a single-channel "
                                            "image ((3, 3, 3)))")

    def out_of_memory(*args, **kwargs):  # a C library's failure that says nothing: named by its type
        raise MemoryError()

    monkeypatch.setattr(OpenEXR, "File", out_of_memory)
    assert _error(read_depth_file, rgb) == f"{rgb}: unreadable depth file (MemoryError)"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_view_of_a_depth_map_is_written_as_its_values(fmt, tmp_path):
    # Bug found by #50: write_depth handed a non-contiguous view (a crop, a transpose) to the OpenEXR bindings,
    # which wrote the memory under it, not its values
    d = np.arange(12, dtype=np.float32).reshape(3, 4)
    for name, view in (("crop", d[:, 1:3]), ("turned", d.T)):
        path, _ = write_depth(tmp_path / name, view, fmt, scale=1.0)
        assert read_depth(path)[0].tolist() == view.tolist(), name


def _npy(shape, descr="<f4", data=b"") -> bytes:
    """A version 1.0 .npy file whose header claims ``shape``, followed by ``data``."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data


def test_npy_header_size_checks_versions_and_zero_d_arrays(tmp_path):
    from numpy.lib import format as npy

    from depthforge.io.depth import read_npy_depth

    d = np.arange(6, dtype=np.float32).reshape(2, 3)
    with open(tmp_path / "v2.npy", "wb") as f:  # version 2.0 (a 4-byte header length)
        npy.write_array(f, d, version=(2, 0))
    assert read_npy_depth(tmp_path / "v2.npy").tolist() == d.tolist()
    np.save(tmp_path / "cut.npy", d)
    raw = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[:-1])  # one byte less than the header's 24
    fix = "; save it with numpy.save as a float array (or pass data.skip_invalid=true)"
    for name, data, claims in (
            ("cut.npy", raw[:-1], "(2, 3) float32 (24 bytes) but the file holds 23"),
            ("half.npy", _npy((4, 4), "<f8", bytes(64)), "(4, 4) float64 (128 bytes) but the file holds 64"),
            # 2^64 values: counted in float64, not wrapped to 0 in int64
            ("huge.npy", _npy((2 ** 32, 2 ** 32)),
             "(4294967296, 4294967296) float32 (73786976294838206464 bytes) but the file holds 0")):
        path = tmp_path / name
        path.write_bytes(data)
        assert _error(read_npy_depth, path) == f"{path}: unreadable .npy depth (its header claims {claims}){fix}"
    np.save(tmp_path / "scalar.npy", np.float64(2.5))  # a 0-d array: one value, read, then refused by its shape
    assert _error(read_npy_depth, tmp_path / "scalar.npy") == (f"{tmp_path / 'scalar.npy'}: depth must be a numeric "
                                                              "HxW array, got dtype float64 shape ()")


def test_sidecar_and_scale_refusals_say_exactly_what_is_wrong(tmp_path):
    from depthforge.io import read_sidecar
    from depthforge.io.depth import read_depth_file

    again = "; delete it or write it again with depthforge predict"
    side = tmp_path / "a.npy.json"
    side.write_text(" " * 1000 + "{x")  # JSON's message is cut at 80 characters
    assert _error(read_sidecar, tmp_path / "a.npy") == (
        f"{side}: not a JSON sidecar (JSONDecodeError: Expecting property name enclosed in double quotes: line 1 "
        f"column 1002 (char 1001){again}")  # its own ")" cut
    side.write_text("[1.0]")
    assert _error(read_sidecar, tmp_path / "a.npy") == f"{side}: a sidecar is a JSON object, got a list{again}"
    for scale, shown in ((0, "0"), (-1.0, "-1.0"), ("Infinity", "inf"), ("NaN", "nan"), ('"mm"', "mm"),
                         ("null", "None"), ("[2]", "[2]"), ('"' + "x" * 50 + '"', "x" * 40)):
        side.write_text(f'{{"scale": {scale}}}')
        assert _error(read_depth, tmp_path / "a.npy") == (f"{tmp_path / 'a.npy'}.json: 'scale' must be a number over "
                                                         f"0 (metres = value / scale), got {shown!r}"), scale
    (tmp_path / "junk.png").write_text("not a png")  # Pillow's own words, quoted
    assert _error(read_depth_file, tmp_path / "junk.png") == (
        f"{tmp_path / 'junk.png'}: unreadable depth PNG (cannot identify image file {str(tmp_path / 'junk.png')!r}); "
        "re-export it as 16-bit PNG")


def test_a_sidecar_is_read_as_utf_8_whatever_the_locale(tmp_path):
    import locale

    from depthforge.io import read_sidecar

    (tmp_path / "d.npy.json").write_text(json.dumps({"model": "Tiefe \u00e4\u00f6\u00fc"}, ensure_ascii=False),
                                         encoding="utf-8")
    old = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # an ASCII locale: open() without an encoding would fail here
    try:
        assert read_sidecar(tmp_path / "d.npy") == {"model": "Tiefe \u00e4\u00f6\u00fc"}
    finally:
        locale.setlocale(locale.LC_CTYPE, old)
