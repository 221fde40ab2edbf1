import numpy as np
import pytest
from PIL import Image

from depthforge.geometry.calibration import calibrate, fit, read_points
from depthforge.geometry.camera import Intrinsics, intrinsics_from_exif
from depthforge.io import DataError
from depthforge.geometry.pointcloud import point_cloud, read_ply, write_ply


def test_ply_of_a_flat_wall_is_coplanar_at_the_right_distance(tmp_path):
    k = Intrinsics(100.0, 100.0, 31.5, 23.5)
    depth = np.full((48, 64), 4.0, np.float32)
    rgb = np.zeros((48, 64, 3), np.uint8)
    pts = read_ply(write_ply(tmp_path / "p.ply", *point_cloud(depth, rgb, k)))
    assert len(pts) == 48 * 64 and np.allclose(pts[:, 2], 4.0)
    # pixel (u=63, v=23.5) -> x = (63 - 31.5) / 100 * 4
    assert pts[:, 0].max() == pytest.approx((63 - 31.5) / 100 * 4, rel=1e-6)


def test_ply_of_a_tilted_plane_is_coplanar():
    from depthforge.geometry.pointcloud import backproject
    k = Intrinsics(80.0, 80.0, 40.0, 30.0)
    v, u = np.mgrid[0:60, 0:80].astype(float)
    # plane n.X = d with n = (0.2, -0.5, 1): z = d / (0.2 (u-cx)/fx - 0.5 (v-cy)/fy + 1)
    n, d = np.array([0.2, -0.5, 1.0]), 6.0
    z = d / (n[0] * (u - k.cx) / k.fx + n[1] * (v - k.cy) / k.fy + n[2])
    pts = backproject(z, k)
    assert np.allclose(pts @ n, d, atol=1e-9)


def test_intrinsics_from_exif_and_fov_guess(tmp_path):
    img = Image.new("RGB", (400, 300))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 27  # 27 mm equivalent focal length
    path = tmp_path / "e.jpg"
    img.save(path, exif=exif)
    k = intrinsics_from_exif(path, 400, 300)
    assert k.fx == pytest.approx(27 / 36 * 400) and "EXIF" in k.source
    img.save(tmp_path / "plain.jpg")
    assert intrinsics_from_exif(tmp_path / "plain.jpg", 400, 300) is None
    guess = Intrinsics.from_fov(400, 300, 90.0)
    assert guess.fx == pytest.approx(200.0) and "guess" in guess.source


def test_calibration_recovers_scale_and_shift_with_an_outlier(tmp_path):
    rng = np.random.default_rng(0)
    rel = rng.uniform(0.1, 1.0, (20, 30))
    metres = 7.0 * rel + 1.5
    pts = [(3, 4), (10, 2), (25, 18), (7, 15), (29, 0)]
    csv = tmp_path / "p.csv"
    rows = [(x, y, metres[y, x]) for x, y in pts]
    rows[2] = (rows[2][0], rows[2][1], rows[2][2] + 5.0)  # one wrong tape measurement
    csv.write_text("x,y,metres\n" + "\n".join(f"{x},{y},{m}" for x, y, m in rows))
    cal = calibrate(rel, read_points(csv), shift=True)
    assert cal.scale == pytest.approx(7.0, rel=1e-6) and cal.shift == pytest.approx(1.5, abs=1e-6)
    assert cal.inliers == [True, True, False, True, True]
    assert np.allclose(cal.apply(rel), metres)


def test_scale_only_calibration():
    cal = fit(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.5, 5.0, 7.5, 30.0]))
    assert cal.scale == pytest.approx(2.5) and cal.shift == 0.0 and cal.inliers == [True, True, True, False]


def test_calibration_rejects_a_subtle_outlier_and_refits_on_the_inliers():
    # Seven exact points of metres = 7 rel + 1.5, one measurement 0.8 m off (a wrong minimal-sample formula gives a
    # loose threshold that lets it in), and one pixel listed twice (equal predictions: that pair is skipped).
    rel = np.array([0.30, 0.30, 0.10, 0.55, 0.80, 0.95, 0.42, 0.66])
    metres = 7.0 * rel + 1.5
    metres[6] += 0.8
    with np.errstate(all="raise"):  # no division by a zero difference of predictions
        cal = fit(rel, metres, shift=True)
    assert cal.inliers == [True] * 6 + [False, True]
    assert cal.scale == pytest.approx(7.0, abs=1e-9) and cal.shift == pytest.approx(1.5, abs=1e-9)
    assert cal.residual_m == pytest.approx(0.0, abs=1e-9)


def test_calibration_residual_is_the_rms_of_the_least_squares_fit_on_the_inliers():
    rel = np.array([0.12, 0.25, 0.33, 0.41, 0.52, 0.63, 0.71, 0.86, 0.97])
    noise = np.array([0.010, -0.010, 0.005, -0.005, 0.008, -0.008, 0.002, -0.002, 0.0])  # within the threshold
    metres = 4.0 * rel + 0.7 + noise
    cal = fit(rel, metres, shift=True)
    assert all(cal.inliers)
    (s, t), *_ = np.linalg.lstsq(np.stack([rel, np.ones(9)], 1), metres, rcond=None)
    assert (cal.scale, cal.shift) == (pytest.approx(s, abs=1e-12), pytest.approx(t, abs=1e-12))
    assert cal.residual_m == pytest.approx(np.sqrt(np.mean((s * rel + t - metres) ** 2)), rel=1e-9)
    # scale only: the least-squares scale through the origin over the inliers, not the best minimal sample's
    metres0 = 4.0 * rel * (1 + noise)
    cal0 = fit(rel, metres0)
    assert cal0.shift == 0.0 and all(cal0.inliers)
    assert cal0.scale == pytest.approx((rel * metres0).sum() / (rel ** 2).sum(), abs=1e-12)
    assert cal0.residual_m == pytest.approx(np.sqrt(np.mean((cal0.scale * rel - metres0) ** 2)), rel=1e-9)


def test_calibration_threshold_is_relative_to_the_distances_with_a_small_floor():
    # Most points exact (median squared residual 0): the threshold is 2 % of the median distance (about 0.2 m here).
    rel = np.array([1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    metres = 2.0 * rel
    metres[1] += 0.1   # within 2 % of the ~8 m median: kept
    metres[5] += 0.5   # beyond it: rejected (a 1 m floor would keep it)
    cal = fit(rel, metres)
    assert cal.inliers == [True, True, True, True, True, False, True]
    tenth = fit(rel / 10, metres)  # predictions below 1 (a disparity, a normalised depth): the same points
    assert tenth.inliers == cal.inliers and tenth.scale == pytest.approx(10 * cal.scale)


def test_calibration_point_count_and_bounds_are_checked():
    assert fit(np.array([2.0]), np.array([5.0])).scale == pytest.approx(2.5)  # one point is enough for a scale
    two = fit(np.array([1.0, 3.0]), np.array([3.0, 7.0]), shift=True)      # two for scale and shift
    assert (two.scale, two.shift) == (pytest.approx(2.0), pytest.approx(1.0))
    with pytest.raises(ValueError, match=r"at least 2 point\(s\) \(and 4\+ to reject an outlier\)"):
        fit(np.array([1.0]), np.array([3.0]), shift=True)
    depth = np.arange(1, 13, dtype=np.float64).reshape(3, 4)  # w=4, h=3
    corners = [(0, 0, 2.0), (3, 2, 24.0)]
    cal = calibrate(depth, corners)  # the corners are inside; the default fits a scale only
    assert cal.shift == 0.0 and cal.scale == pytest.approx(2.0)
    for bad in ((4, 0, 1.0), (0, 3, 1.0), (1, 7, 1.0), (-1, 1, 1.0)):
        with pytest.raises(ValueError, match=rf"point \({bad[0]}, {bad[1]}\) is outside the 4x3 image"):
            calibrate(depth, corners + [bad])


def test_points_file_with_header_comments_and_blank_lines(tmp_path):
    path = tmp_path / "known.csv"
    path.write_text("x,y,metres\n# measured with a tape\n10,20,2.5\n\n# second wall\n30.0,5,4.25\n")
    assert read_points(path) == [(10, 20, 2.5), (30, 5, 4.25)]
    path.write_text("x,y,metres\n10,20,2.5\n11,oops,3\n")
    with pytest.raises(DataError, match=r"known.csv: line 3: '11,oops,3' is not x,y,metres"):
        read_points(path)


def test_pick_intrinsics_takes_the_best_evidence_in_order(tmp_path):
    from depthforge.geometry.camera import pick_intrinsics

    I = Intrinsics
    # given: fy defaults to fx, the principal point to the centre of a 400 x 300 image
    assert pick_intrinsics(400, 300, fx=500) == I(500.0, 500.0, 199.5, 149.5, "given")
    assert pick_intrinsics(400, 300, fx=500, fy=510, cx=190, cy=140) == I(500.0, 510.0, 190.0, 140.0, "given")
    assert pick_intrinsics(400, 300, fx=500, cx=0, cy=0) == I(500.0, 500.0, 0.0, 0.0, "given")  # 0 is a value
    # the model's own focal length next, then EXIF, then the field-of-view guess
    assert pick_intrinsics(400, 300, predicted_fx=321.0, cx=201, cy=151) == \
        I(321.0, 321.0, 201.0, 151.0, "predicted by the model (Depth Pro)")
    assert pick_intrinsics(400, 300, predicted_fx=321.0) == I(321.0, 321.0, 199.5, 149.5,
                                                              "predicted by the model (Depth Pro)")
    img, exif = Image.new("RGB", (400, 300)), Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 27
    img.save(tmp_path / "e.jpg", exif=exif)
    assert pick_intrinsics(400, 300, path=tmp_path / "e.jpg") == \
        I(300.0, 300.0, 199.5, 149.5, "EXIF 35mm-equivalent focal 27 mm")
    img.save(tmp_path / "plain.jpg")
    for path in (tmp_path / "plain.jpg", None):
        assert pick_intrinsics(400, 300, hfov=90.0, path=path) == \
            I(pytest.approx(200.0), pytest.approx(200.0), 199.5, 149.5, "guess: horizontal FOV 90 deg")
    k = I(500.0, 510.0, 190.0, 140.0)
    assert k.matrix().tolist() == [[500.0, 0.0, 190.0], [0.0, 510.0, 140.0], [0.0, 0.0, 1.0]]
    assert k.to_dict() == {"fx": 500.0, "fy": 510.0, "cx": 190.0, "cy": 140.0, "source": "given"}
    assert I.from_fov(400, 300, 60.0).fx == pytest.approx(200 / np.tan(np.radians(30)))


def test_point_cloud_keeps_measured_valid_pixels_with_their_colours():
    depth = np.array([[0.5, 0.0, np.nan], [2.0, np.inf, 3.0]])  # below 1 m kept; 0, NaN, inf dropped
    rgb = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    k = Intrinsics(2.0, 4.0, 1.0, 0.5)
    pts, cols = point_cloud(depth, rgb, k)
    # pixels (0,0), (1,0), (1,2): x = (u - cx) / fx * z, y = (v - cy) / fy * z
    assert pts.tolist() == [[-0.25, -0.0625, 0.5], [-1.0, 0.25, 2.0], [1.5, 0.375, 3.0]]
    assert cols.tolist() == [[0, 1, 2], [9, 10, 11], [15, 16, 17]]
    valid = np.array([[True, True, True], [False, True, True]])  # a clamped pixel is not depth the model meant
    pts, cols = point_cloud(depth, rgb, k, valid)
    assert pts[:, 2].tolist() == [0.5, 3.0] and cols.tolist() == [[0, 1, 2], [15, 16, 17]]


def test_ply_header_and_colours_byte_for_byte(tmp_path):
    pts = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    cols = np.array([[10, 20, 30], [40, 50, 60]], np.uint8)
    raw = write_ply(tmp_path / "c.ply", pts, cols).read_bytes()
    header = ("ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
              "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    assert raw.startswith(header.encode())
    body = np.frombuffer(raw[len(header):], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"),
                                                   ("g", "u1"), ("b", "u1")])
    assert [list(r) for r in body] == [[1.0, 2.0, 3.0, 10, 20, 30], [4.0, 5.0, 6.0, 40, 50, 60]]
    plain = write_ply(tmp_path / "p.ply", pts)  # no colours: xyz only, and it reads back
    assert b"uchar" not in plain.read_bytes() and read_ply(plain).tolist() == pts.tolist()


def test_glb_is_thinned_to_max_points_and_turned_to_gltf_axes(tmp_path):
    import trimesh

    from depthforge.geometry.pointcloud import write_glb

    pts = np.arange(15, dtype=np.float64).reshape(5, 3)
    cols = np.arange(15, dtype=np.uint8).reshape(5, 3)
    path = write_glb(tmp_path / "c.glb", pts, cols, max_points=2)  # every 3rd point: 0 and 3
    assert path == tmp_path / "c.glb"
    cloud = next(iter(trimesh.load(path).geometry.values()))
    assert np.asarray(cloud.vertices).tolist() == [[0.0, -1.0, -2.0], [9.0, -10.0, -11.0]]
    assert np.asarray(cloud.colors).tolist() == [[0, 1, 2, 255], [9, 10, 11, 255]]
    assert len(next(iter(trimesh.load(write_glb(tmp_path / "all.glb", pts, cols)).geometry.values())).vertices) == 5


# ---- #50: the boundaries of each check and the exact refusals (the mutants that survived) ----

POINT_REFUSAL = "is not x,y,metres (pixel column, pixel row, distance > 0 in metres), e.g. 120,80,3.5"


def test_a_point_is_whole_pixels_from_0_and_a_finite_distance_over_0():
    from depthforge.geometry.calibration import parse_point

    assert parse_point("0,0,0.5") == (0, 0, 0.5)  # the first pixel, under a metre
    assert parse_point(" 3 , 4.0 , 1e-3 ") == (3, 4, 0.001)
    for bad in ("-1,5,2", "5,-1,2", "1,2,0", "1,2,-0.5", "1,2,inf", "1,2,nan", "1.5,2,3", "1,2.5,3", "1e400,2,3",
                "1,2", "1,2,3,4", "a,b,c", "1,2,3," + "x" * 100):
        with pytest.raises(DataError) as err:
            parse_point(bad)
        assert str(err.value) == f"{bad[:80]!r} {POINT_REFUSAL}", bad  # the text quoted, cut at 80 characters


def test_points_file_rows_blank_lines_and_refusals(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("x,y,metres\n1,2,3\n   \n,,\n , \n4,5,6.5\n")  # blank lines, however written, are skipped
    assert read_points(path) == [(1, 2, 3.0), (4, 5, 6.5)]
    path.write_text("1,2\n4,5,6.5\n")  # a first row with digits is a bad point, not a header
    with pytest.raises(DataError) as err:
        read_points(path)
    assert str(err.value) == f"{path}: line 1: '1,2' {POINT_REFUSAL}"
    path.write_bytes(b'x,y,metres\n"1\r\n",2,oops\n')  # a refused row is quoted as the file holds it
    with pytest.raises(DataError) as err:
        read_points(path)
    assert str(err.value) == f"{path}: line 2: '1\\r\\n,2,oops' {POINT_REFUSAL}"
    path.write_bytes(b"x,y,metres\n" + b"1,2,3\n" * 200 + b"# \xf0\x9f!\n")  # not UTF-8: the decoder's words, cut
    with pytest.raises(DataError) as err:
        read_points(path)
    assert str(err.value) == (f"{path}: not a UTF-8 CSV of x,y,metres rows (UnicodeDecodeError: 'utf-8' codec can't "
                              "decode bytes in position 1213-1214: invalid continuation byt)")


def test_a_points_file_is_read_as_utf_8_whatever_the_locale(tmp_path):
    import locale

    path = tmp_path / "p.csv"
    path.write_text("x,y,metres\n# gemessen mit dem Ma\u00dfband\n1,2,3\n", encoding="utf-8")
    old = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # an ASCII locale: open() without an encoding would fail here
    try:
        assert read_points(path) == [(1, 2, 3.0)]
    finally:
        locale.setlocale(locale.LC_CTYPE, old)


def test_exif_focal_length_is_taken_from_1_to_9999_mm(tmp_path):
    for f35, found in ((1, True), (9999, True), (10_000, False), (0, False)):
        img, exif = Image.new("RGB", (400, 300)), Image.Exif()
        exif.get_ifd(0x8769)[0xA405] = f35
        img.save(tmp_path / "e.jpg", exif=exif)
        k = intrinsics_from_exif(tmp_path / "e.jpg", 400, 300)
        if found:
            assert k == Intrinsics(f35 / 36 * 400, f35 / 36 * 400, 199.5, 149.5,
                                   f"EXIF 35mm-equivalent focal {f35} mm"), f35
        else:
            assert k is None, f35
