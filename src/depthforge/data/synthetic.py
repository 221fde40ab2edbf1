"""Procedural scenes with exact per-pixel depth: the embedded default data set (no download).

A small "virtual world" is ray-cast in numpy: a ground plane, street-side walls, an optional far wall, boxes and
spheres, each with a procedural texture and Lambertian shading under a sun, seen by a pinhole camera with a random
height, yaw, pitch and field of view. Depth is planar z-depth (distance along the optical axis), as Unreal Engine's
scene depth is; rays that hit nothing are sky at ``SKY_DEPTH`` (the challenge data stores sky as 100 m).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from depthforge.data.base import DepthDataset, Sample

SKY_DEPTH = 100.0
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


@dataclass
class Camera:
    """Pinhole camera at ``position`` (x right, y up, z forward), rotated by yaw (about y) then pitch (about x)."""

    height: int
    width: int
    fx: float
    fy: float
    cx: float
    cy: float
    position: tuple[float, float, float] = (0.0, 1.5, 0.0)
    yaw: float = 0.0
    pitch: float = 0.0

    def rotation(self) -> np.ndarray:
        cy_, sy = math.cos(self.yaw), math.sin(self.yaw)
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        r_yaw = np.array([[cy_, 0, sy], [0, 1, 0], [-sy, 0, cy_]])
        # Positive pitch looks up: camera +z tilts towards world +y.
        r_pitch = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
        return r_yaw @ r_pitch

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Origin (3,) and world directions (H, W, 3) whose camera-frame z component is 1."""
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        d_cam = np.stack([(u + 0.5 - self.cx) / self.fx, -(v + 0.5 - self.cy) / self.fy, np.ones_like(u)], -1)
        return np.asarray(self.position, dtype=np.float64), d_cam @ self.rotation().T


@dataclass
class Plane:
    """Points p with ``normal . p = offset``; ``normal`` points towards the side that is seen."""

    normal: tuple[float, float, float]
    offset: float
    albedo: tuple[float, float, float] = (0.6, 0.6, 0.6)
    texture: str = "checker"
    scale: float = 1.0


@dataclass
class Box:
    """Axis-aligned box between corners ``lo`` and ``hi``."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    albedo: tuple[float, float, float] = (0.7, 0.3, 0.2)
    texture: str = "stripes"
    scale: float = 0.5


@dataclass
class Sphere:
    center: tuple[float, float, float]
    radius: float
    albedo: tuple[float, float, float] = (0.2, 0.5, 0.8)
    texture: str = "noise"
    scale: float = 0.3


@dataclass
class Scene:
    objects: list = field(default_factory=list)
    sun: tuple[float, float, float] = (0.4, 0.8, -0.3)
    sky_top: tuple[float, float, float] = (0.35, 0.55, 0.9)
    sky_bottom: tuple[float, float, float] = (0.8, 0.85, 0.95)


def _hit_plane(obj: Plane, o: np.ndarray, d: np.ndarray, normals: bool) -> tuple[np.ndarray, np.ndarray | None]:
    n = np.asarray(obj.normal, dtype=np.float64)
    n = n / np.linalg.norm(n)
    denom = d @ n
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (obj.offset - o @ n) / denom
    t = np.where((denom < -1e-9) & (t > 1e-6), t, np.inf)
    return t, np.broadcast_to(n, d.shape) if normals else None


def _hit_box(obj: Box, o: np.ndarray, d: np.ndarray, normals: bool) -> tuple[np.ndarray, np.ndarray | None]:
    lo, hi = np.asarray(obj.lo, dtype=np.float64), np.asarray(obj.hi, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1, t2 = (lo - o) * inv, (hi - o) * inv
    tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
    tmin = np.nan_to_num(tmin, nan=-np.inf)
    tmax = np.nan_to_num(tmax, nan=np.inf)
    # Slice-wise max/min: numpy's reductions over a length-3 last axis are several times slower.
    t_near = np.maximum(np.maximum(tmin[..., 0], tmin[..., 1]), tmin[..., 2])
    t_far = np.minimum(np.minimum(tmax[..., 0], tmax[..., 1]), tmax[..., 2])
    t = np.where((t_near <= t_far) & (t_near > 1e-6), t_near, np.inf)
    if not normals:
        return t, None
    axis = tmin.argmax(-1)
    normal = np.zeros_like(d)
    sign = -np.sign(np.take_along_axis(d, axis[..., None], -1))[..., 0]
    np.put_along_axis(normal, axis[..., None], sign[..., None], -1)
    return t, normal


def _hit_sphere(obj: Sphere, o: np.ndarray, d: np.ndarray, normals: bool) -> tuple[np.ndarray, np.ndarray | None]:
    c = np.asarray(obj.center, dtype=np.float64)
    oc = o - c
    a = (d * d).sum(-1)
    b = 2.0 * (d @ oc)
    disc = b * b - 4 * a * (oc @ oc - obj.radius**2)
    root = np.sqrt(np.maximum(disc, 0.0))
    t = (-b - root) / (2 * a)
    t = np.where((disc >= 0) & (t > 1e-6), t, np.inf)
    if not normals:
        return t, None
    point = o + d * np.where(np.isfinite(t), t, 0.0)[..., None]
    return t, (point - c) / obj.radius


_HIT = {Plane: _hit_plane, Box: _hit_box, Sphere: _hit_sphere}


def _texture(kind: str, p: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Brightness factor in about [0.55, 1.15] from world coordinates (so texture sticks to the surface)."""
    q = p / max(scale, 1e-6)
    if kind == "checker":
        f = (np.floor(q[..., 0]) + np.floor(q[..., 2]) + np.floor(q[..., 1])) % 2
        return 0.7 + 0.35 * f
    if kind == "stripes":
        return 0.75 + 0.3 * (np.floor(q[..., 1] * 2) % 2)
    # Cheap value noise: sums of sines with seed-dependent phases.
    rng = np.random.default_rng(seed)
    acc = np.zeros(p.shape[:-1])
    for k in range(3):
        w = rng.normal(size=3) * (k + 1)
        acc += np.sin(q @ w + rng.uniform(0, 6.28)) / (k + 1)
    return 0.85 + 0.15 * acc


def render(scene: Scene, camera: Camera, sky_depth: float = SKY_DEPTH) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast ``scene``; return uint8 RGB (H, W, 3) and float32 z-depth (H, W) in metres."""
    origin, dirs = camera.rays()
    h, w = camera.height, camera.width
    best_t = np.full((h, w), np.inf)
    best_id = np.full((h, w), -1)
    for i, obj in enumerate(scene.objects):
        t = _HIT[type(obj)](obj, origin, dirs, False)[0]
        closer = t < best_t
        best_t[closer] = t[closer]
        best_id[closer] = i
    hit = np.isfinite(best_t)
    # dirs have camera-frame z == 1, so the ray parameter t is exactly the planar z-depth.
    depth = np.where(hit, np.minimum(best_t, sky_depth), sky_depth).astype(np.float32)

    sun = np.asarray(scene.sun) / np.linalg.norm(scene.sun)
    elevation = np.clip(dirs[..., 1] / np.linalg.norm(dirs, axis=-1), 0.0, 1.0)[..., None]
    rgb = (1 - elevation) * np.asarray(scene.sky_bottom) + elevation * np.asarray(scene.sky_top)
    points = origin + dirs * np.where(hit, best_t, 0.0)[..., None]
    for i, obj in enumerate(scene.objects):
        sel = best_id == i
        if not sel.any():
            continue
        normal = _HIT[type(obj)](obj, origin, dirs[sel], True)[1]
        lambert = np.clip(normal @ sun, 0.0, 1.0)
        tex = _texture(obj.texture, points[sel], obj.scale, seed=i)
        shade = (0.35 + 0.65 * lambert) * tex
        # Aerial perspective: far surfaces fade towards the horizon colour, a cue real renderers also give.
        fog = (1 - np.exp(-best_t[sel] / 60.0))[:, None]
        colour = np.asarray(obj.albedo) * shade[:, None]
        rgb[sel] = (1 - fog) * colour + fog * np.asarray(scene.sky_bottom)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), depth


def _colour(rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(float(c) for c in rng.uniform(0.15, 0.95, size=3))


def random_scene(rng: np.random.Generator, height: int, width: int) -> tuple[Scene, Camera]:
    """A street-like scene: ground, two building rows, maybe a far wall, boxes and spheres; and a camera."""
    hfov = math.radians(rng.uniform(60, 90))
    f = width / (2 * math.tan(hfov / 2))
    camera = Camera(height, width, f, f, width / 2, height / 2,
                    position=(float(rng.uniform(-1.5, 1.5)), float(rng.uniform(1.2, 2.5)), 0.0),
                    yaw=float(rng.uniform(-0.35, 0.35)), pitch=float(rng.uniform(-0.2, 0.08)))
    half_street = float(rng.uniform(4, 12))
    objects: list = [Plane((0, 1, 0), 0.0, _colour(rng), "checker", float(rng.uniform(0.5, 3)))]
    for side in (-1.0, 1.0):
        # A row of buildings with gaps, so sky and far depth show between and above them.
        z, texture = float(rng.uniform(-5, 5)), str(rng.choice(["stripes", "checker"]))
        while z < 110:
            length, depth_ = rng.uniform(6, 25), rng.uniform(5, 15)
            inner = side * half_street
            x0, x1 = sorted((inner, inner + side * depth_))
            objects.append(Box((x0, 0.0, z), (x1, rng.uniform(3, 30), z + length), _colour(rng), texture,
                               float(rng.uniform(0.5, 3))))
            z += length + rng.uniform(0, 8)
    if rng.random() < 0.5:
        objects.append(Plane((0, 0, -1), -float(rng.uniform(25, 90)), _colour(rng), "stripes", 2.0))
    for _ in range(int(rng.integers(2, 8))):
        x, z = rng.uniform(-half_street + 1, half_street - 1), rng.uniform(3, 40)
        sx, sy, sz = rng.uniform(0.5, 3), rng.uniform(0.5, 4), rng.uniform(0.5, 3)
        objects.append(Box((x - sx / 2, 0.0, z - sz / 2), (x + sx / 2, sy, z + sz / 2), _colour(rng),
                           str(rng.choice(["stripes", "checker", "noise"])), float(rng.uniform(0.2, 1))))
    for _ in range(int(rng.integers(0, 4))):
        r = rng.uniform(0.3, 1.5)
        objects.append(Sphere((rng.uniform(-half_street + 1, half_street - 1), r, rng.uniform(3, 30)), r,
                              _colour(rng), "noise", float(rng.uniform(0.2, 1))))
    sun = (float(rng.uniform(-1, 1)), float(rng.uniform(0.3, 1)), float(rng.uniform(-1, 0.2)))
    return Scene(objects, sun=sun), camera


def random_room(rng: np.random.Generator, height: int, width: int) -> tuple[Scene, Camera]:
    """An indoor scene: a closed room 3-8 m wide and 4-9 m deep with furniture-like boxes and balls; and a camera.

    Every ray hits a surface within about 12 m, as in indoor RGB-D data (NYU, ScanNet); no sky.
    """
    hfov = math.radians(rng.uniform(55, 75))  # RGB-D sensors: about 58-70 degrees
    f = width / (2 * math.tan(hfov / 2))
    half_w, depth_, ceiling = float(rng.uniform(1.5, 4)), float(rng.uniform(4, 9)), float(rng.uniform(2.4, 3.2))
    camera = Camera(height, width, f, f, width / 2, height / 2,
                    position=(float(rng.uniform(-half_w + 0.5, half_w - 0.5)), float(rng.uniform(1.0, 1.8)), 0.0),
                    yaw=float(rng.uniform(-0.5, 0.5)), pitch=float(rng.uniform(-0.35, 0.1)))
    walls = [((0, 1, 0), 0.0), ((0, -1, 0), -ceiling), ((1, 0, 0), -half_w), ((-1, 0, 0), -half_w),
             ((0, 0, -1), -depth_), ((0, 0, 1), -1.0)]
    objects: list = [Plane(n, off, _colour(rng), str(rng.choice(["checker", "stripes", "noise"])),
                           float(rng.uniform(0.3, 1.5))) for n, off in walls]
    for _ in range(int(rng.integers(2, 9))):
        sx, sy, sz = rng.uniform(0.3, 1.8), rng.uniform(0.3, 1.6), rng.uniform(0.3, 1.5)
        x, z = rng.uniform(-half_w + sx / 2, half_w - sx / 2), rng.uniform(1.0, depth_ - sz / 2)
        objects.append(Box((x - sx / 2, 0.0, z - sz / 2), (x + sx / 2, sy, z + sz / 2), _colour(rng),
                           str(rng.choice(["stripes", "checker", "noise"])), float(rng.uniform(0.1, 0.5))))
    for _ in range(int(rng.integers(0, 3))):
        r = rng.uniform(0.1, 0.5)
        objects.append(Sphere((rng.uniform(-half_w + r, half_w - r), r, rng.uniform(1.0, depth_ - r)), r,
                              _colour(rng), "noise", float(rng.uniform(0.1, 0.3))))
    light = (float(rng.uniform(-1, 1)), float(rng.uniform(0.3, 1)), float(rng.uniform(-1, 1)))
    return Scene(objects, sun=light), camera


SCENES = {"street": random_scene, "room": random_room}


def sensor_depth(depth: np.ndarray, rng: np.random.Generator, min_range: float = 0.5, max_range: float = 8.0,
                 edge_holes: float = 0.08, blobs: int = 6) -> np.ndarray:
    """What a structured-light / stereo RGB-D sensor would record of the exact ``depth``: 0 where it has no data.

    - out of range (nearer than ``min_range``, farther than ``max_range``): 0;
    - axial noise growing with the square of the distance, sigma = 1.2 mm + 1.9 mm * (z - 0.4 m)^2 (the Kinect
      model of Nguyen, Izadi and Lovell, 3DIMPVT 2012);
    - holes along depth edges (occlusion shadows and mixed pixels): pixels whose 3x3 neighbourhood spans more than
      ``edge_holes`` of their depth, grown by 0-2 pixels;
    - ``blobs`` random elliptic dropouts (dark, shiny or transparent surfaces);
    - quantised to millimetres, as a 16-bit PNG stores it.
    """
    z = depth.astype(np.float64)
    h, w = z.shape
    out = z + rng.normal(size=z.shape) * (0.0012 + 0.0019 * (z - 0.4) ** 2)
    invalid = (z < min_range) | (z > max_range)
    pad = np.pad(z, 1, mode="edge")
    windows = np.stack([pad[i:i + h, j:j + w] for i in range(3) for j in range(3)])
    edges = (windows.max(0) - windows.min(0)) > edge_holes * z
    for _ in range(int(rng.integers(0, 3))):
        grown = np.pad(edges, 1)
        edges = edges | grown[2:, 1:-1] | grown[:-2, 1:-1] | grown[1:-1, 2:] | grown[1:-1, :-2]
    invalid |= edges
    v, u = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(0, blobs + 1))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.02, 0.12) * h, rng.uniform(0.02, 0.12) * w
        invalid |= ((v - cy) / ry) ** 2 + ((u - cx) / rx) ** 2 < 1
    return np.where(invalid, 0.0, np.round(out * 1000) / 1000).astype(np.float32)


def render_sequence(seed: int, frames: int, height: int, width: int, scene: str = "street", speed: float = 0.25,
                    turn: float = 0.01, shake: float = 0.004) -> dict[str, np.ndarray]:
    """A camera moving smoothly through one scene: forward at ``speed`` metres a frame (half that indoors), turning
    ``turn`` radians a frame, with a little random shake.

    Returns ``rgb`` (N, H, W, 3) uint8, ``depth`` (N, H, W) float32 planar z-depth (sky at ``SKY_DEPTH``), ``K``
    (3, 3) and ``poses`` (N, 4, 4) camera-to-world in the OpenCV convention (x right, y down, z forward), the world
    axes being the same (right-handed, y down).
    """
    rng = np.random.default_rng([seed, 7, frames])
    world, cam = SCENES[scene](rng, height, width)
    step = speed * (0.5 if scene == "room" else 1.0)
    flip = np.diag([1.0, -1.0, 1.0])  # the renderer's camera has y up; OpenCV's has y down
    rgbs, depths, poses = [], [], []
    pos = np.asarray(cam.position, dtype=np.float64)
    for t in range(frames):
        yaw = cam.yaw + turn * t + shake * rng.normal()
        pitch = cam.pitch + shake * rng.normal()
        frame = Camera(height, width, cam.fx, cam.fy, cam.cx, cam.cy, tuple(pos), yaw, pitch)
        rgb, depth = render(world, frame)
        pose = np.eye(4)
        # The renderer's world (x right, y up, z forward) is left-handed: expressed with y down it is right-handed,
        # and the poses are proper rotations (a TUM quaternion can hold them; relative poses are unchanged).
        pose[:3, :3], pose[:3, 3] = flip @ frame.rotation() @ flip, flip @ pos
        rgbs.append(rgb)
        depths.append(depth)
        poses.append(pose)
        pos = pos + step * np.array([math.sin(yaw), 0.0, math.cos(yaw)])
    # Pixel centres: the renderer casts rays through (u + 0.5, v + 0.5); K maps integer pixel indices to them.
    k = np.array([[cam.fx, 0, cam.cx - 0.5], [0, cam.fy, cam.cy - 0.5], [0, 0, 1]])
    return {"rgb": np.stack(rgbs), "depth": np.stack(depths), "K": k, "poses": np.stack(poses)}


class SyntheticScenes(DepthDataset):
    """Deterministic procedural samples: sample ``i`` of a split is the same for the same ``seed``, everywhere."""

    def __init__(self, num_samples: int = 256, height: int = 144, width: int = 256, seed: int = 0,
                 split: str = "train", max_depth: float = 20.0,
                 transform: Callable[[Sample], Sample] | None = None, scene: str = "street"):
        # Rendering costs tens of milliseconds a sample: always keep rendered pairs.
        super().__init__(max_depth=max_depth, transform=transform, cache=True)
        self.num_samples, self.height, self.width = num_samples, height, width
        self.seed, self.split = seed, split
        if scene not in SCENES:
            raise ValueError(f"unknown synthetic scene '{scene}'; choose from {sorted(SCENES)}")
        self.scene = scene

    def __len__(self) -> int:
        return self.num_samples

    def stem(self, index: int) -> str:
        return f"{self.split}_{index:05d}"

    def describe(self, index: int) -> str:
        return f"synthetic scene {self.stem(index)} (seed {self.seed})"

    def _render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, _SPLIT_IDS.get(self.split, 3), index])
        scene, camera = SCENES[self.scene](rng, self.height, self.width)
        return render(scene, camera)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index not in self._cached:
            self._cached[index] = self._render(index)
        return self._cached[index]

    def get_color(self, index: int) -> np.ndarray:
        return self.load(index)[0]

    def get_depth(self, index: int) -> np.ndarray:
        return self.load(index)[1]
