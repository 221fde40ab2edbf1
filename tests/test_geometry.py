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
