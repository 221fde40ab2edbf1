import math

import numpy as np
import pytest

from depthforge.data import SyntheticScenes
from depthforge.data.synthetic import SKY_DEPTH, Box, Camera, Plane, Scene, Sphere, render


def _camera(h=36, w=64, f=40.0, **kw):
    return Camera(h, w, f, f, w / 2, h / 2, **kw)


def test_fronto_parallel_wall_has_constant_depth():
    cam = _camera(position=(0.3, 1.0, 0.0))
    _, depth = render(Scene([Plane((0, 0, -1), -7.5)]), cam)
    np.testing.assert_allclose(depth, 7.5, rtol=1e-6)


def test_ground_plane_matches_analytic_depth():
    h, f, height = 36, 40.0, 1.6
    cam = _camera(h=h, f=f, position=(0.0, height, 0.0))
    _, depth = render(Scene([Plane((0, 1, 0), 0.0)]), cam)
    v = np.arange(h) + 0.5 - h / 2
    below = v > 0
    # A level camera at height H sees the ground at row offset v (pixels below the centre) at z = H * f / v.
    expected = np.minimum(height * f / v[below], SKY_DEPTH)
    np.testing.assert_allclose(depth[below], np.repeat(expected[:, None], 64, 1), rtol=1e-5)
    assert np.all(depth[~below] == SKY_DEPTH)


def test_yawed_camera_sees_wall_at_cosine_depth():
    # Camera turned by yaw; a wall 10 m ahead (world z). On the optical axis z-depth = 10 / cos(yaw).
    yaw = 0.3
    h, w = 36, 64
    cam = _camera(h=h, w=w, yaw=yaw)
    _, depth = render(Scene([Plane((0, 0, -1), -10.0)]), cam)
    centre = depth[h // 2 - 1:h // 2 + 1, w // 2 - 1:w // 2 + 1]
    np.testing.assert_allclose(centre, 10 / math.cos(yaw), rtol=0.02)


def test_box_and_sphere_occlude_the_wall():
    cam = _camera()
    scene = Scene([Plane((0, 0, -1), -20.0), Box((-0.5, 0.5, 4.0), (0.5, 1.5, 5.0)), Sphere((0.0, 1.5, 10.0), 1.0)])
    _, depth = render(scene, _camera(position=(0.0, 1.0, 0.0)))
    assert depth.min() == np.float32(4.0)  # the box's front face
    assert depth.max() == np.float32(20.0)


def test_dataset_is_deterministic_per_seed_and_split():
    a, b = SyntheticScenes(3, seed=5), SyntheticScenes(3, seed=5)
    np.testing.assert_array_equal(a.get_color(2), b.get_color(2))
    np.testing.assert_array_equal(a.get_depth(2), b.get_depth(2))
    assert not np.array_equal(a.get_depth(0), SyntheticScenes(3, seed=6).get_depth(0))
    assert not np.array_equal(a.get_depth(0), SyntheticScenes(3, seed=5, split="val").get_depth(0))
    s = a[0]
    assert s["image"].shape == (3, 144, 256) and s["depth"].max() <= 20.0


def test_rooms_are_closed_and_within_indoor_range():
    ds = SyntheticScenes(4, 48, 64, seed=3, scene="room")
    for i in range(4):
        depth = ds.get_depth(i)
        assert np.isfinite(depth).all() and depth.max() < 12.0 and depth.min() > 0.0  # walls everywhere, no sky
    street = SyntheticScenes(4, 48, 64, seed=3)
    assert max(street.get_depth(i).max() for i in range(4)) == SKY_DEPTH
    with pytest.raises(ValueError, match="room"):
        SyntheticScenes(1, scene="cave")


def test_sensor_depth_drops_out_of_range_and_edges_and_adds_distance_noise():
    from depthforge.data.synthetic import sensor_depth

    # Left half a near wall (1 m), right half a far one (4 m), a strip beyond the range (9 m): one depth edge.
    exact = np.full((200, 300), 1.0, np.float32)
    exact[:, 150:] = 4.0
    exact[:, 280:] = 9.0
    rec = sensor_depth(exact, np.random.default_rng(0), max_range=8.0, blobs=0)
    assert (rec[:, 280:] == 0).all()  # beyond the range: no data
    assert (rec[:, 149:151] == 0).all()  # the depth edge is a hole
    assert (rec[:, :140] > 0).all() and (rec[:, 160:270] > 0).all()  # flat surfaces keep their data
    near, far = rec[:, :140] - 1.0, rec[:, 160:270] - 4.0
    # sigma 1.2 mm + 1.9 mm (z - 0.4)^2: ~1.9 mm at 1 m, ~26 mm at 4 m; millimetre steps
    assert 0.001 < near.std() < 0.003 and 0.02 < far.std() < 0.032
    np.testing.assert_allclose(rec * 1000, np.round(rec * 1000), atol=1e-3)
    plain = sensor_depth(exact, np.random.default_rng(1), max_range=20.0, blobs=0)
    blobs = sensor_depth(exact, np.random.default_rng(1), max_range=20.0, blobs=6)
    assert ((blobs == 0) >= (plain == 0)).all() and (blobs == 0).sum() > (plain == 0).sum() + 100  # dropouts
