import numpy as np
import pytest
from PIL import Image

from depthforge.geometry.calibration import calibrate, fit, read_points
from depthforge.geometry.camera import Intrinsics, intrinsics_from_exif
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
    with pytest.raises(ValueError, match=r"known.csv: line 3 must be x,y,metres; got \['11', 'oops', '3'\]"):
        read_points(path)
