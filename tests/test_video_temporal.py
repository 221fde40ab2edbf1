"""Video depth: sequences with known camera motion, TAE, stabilisers, streaming with flat memory."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from depthforge.data.synthetic import SKY_DEPTH, render_sequence
from depthforge.video.stabilize import CausalStabilizer, FlowStabilizer, stabilize
from depthforge.metrics.temporal import tae


def test_tae_by_hand_on_a_wall_the_camera_walks_towards():
    # A fronto-parallel wall 4 m away; the camera moves 1 m forward: 3 m in frame 2. The prediction of frame 2 is
    # 10 % too far (3.3 m). Frame 1 moved into frame 2 reads 3 m against 3.3: |3 - 3.3| / 3.3; frame 2 moved back
    # into frame 1 reads 4.3 m against 4: 0.3 / 4. TAE = 100 * mean of both.
    k = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    poses = np.stack([np.eye(4), np.eye(4)])
    poses[1, 2, 3] = 1.0
    gt = np.stack([np.full((48, 64), 4.0), np.full((48, 64), 3.0)])
    pred = np.stack([np.full((48, 64), 4.0), np.full((48, 64), 3.3)])
    expected = 100 * (0.3 / 3.3 + 0.3 / 4.0) / 2
    assert tae(pred, gt, k, poses, align=False) == pytest.approx(expected, rel=1e-6)
    assert tae(gt, gt, k, poses, align=False) == pytest.approx(0.0, abs=1e-9)


def test_tae_is_zero_for_the_truth_and_grows_with_scale_noise():
    seq = render_sequence(0, 8, 72, 128)
    gt, k, poses = seq["depth"], seq["K"], seq["poses"]
    valid = gt < SKY_DEPTH
    assert tae(gt, gt, k, poses, valid) < 0.05  # the truth moves with the camera
    wobble = np.random.default_rng(0).uniform(-1, 1, (len(gt), 1, 1))  # one pattern, growing amplitude
    scores = [tae(gt * (1 + a * wobble), gt, k, poses, valid) for a in (0.02, 0.05, 0.1)]
    assert 0.5 < scores[0] < scores[1] < scores[2]


def test_stabilisers_cut_scale_flicker_and_the_causal_one_never_looks_ahead():
    seq = render_sequence(1, 30, 72, 128)
    gt, k, poses = seq["depth"], seq["K"], seq["poses"]
    valid = gt < SKY_DEPTH
    rng = np.random.default_rng(0)
    noisy = (gt * rng.uniform(0.93, 1.07, (len(gt), 1, 1))).astype(np.float32)
    raw = tae(noisy, gt, k, poses, valid)
    assert tae(stabilize(noisy, "causal"), gt, k, poses, valid) < 0.6 * raw
    assert tae(stabilize(noisy, "offline"), gt, k, poses, valid) < 0.6 * raw
    # Changing frame 20 leaves the causal outputs of frames 0..19 as they were.
    changed = noisy.copy()
    changed[20] *= 3.0
    a, b = stabilize(noisy, "causal"), stabilize(changed, "causal")
    np.testing.assert_array_equal(a[:20], b[:20])
    assert not np.allclose(a[20], b[20])
    with pytest.raises(ValueError, match="alpha"):
        CausalStabilizer(alpha=0)


STREAM = """
import resource, sys
import numpy as np
from depthforge.video.frames import SideBySideWriter, write_test_video
from depthforge.video.stream import stabilized_depths
n = int(sys.argv[1])
rng = np.random.default_rng(0)
frames = (rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(n))
clip = write_test_video(sys.argv[2] + "/clip.mp4", frames)
writer = SideBySideWriter(sys.argv[2] + "/clip_depth.mp4")
for rgb, depth in stabilized_depths(clip, lambda rgb: rgb.mean(-1).astype(np.float32) / 25 + 1, sys.argv[3]):
    writer.write(rgb, depth)
writer.close()
print(writer.frames, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_a_long_clip_streams_with_flat_memory(tmp_path):
    mode = "offline"  # the two-pass mode: both passes must stream
    peaks = {}
    for n in (200, 2000):
        folder = tmp_path / str(n)
        folder.mkdir()
        out = subprocess.run([sys.executable, "-c", STREAM, str(n), str(folder), mode], capture_output=True,
                             text=True, check=True).stdout.split()
        assert int(out[0]) == n
        peaks[n] = int(out[1])
    # 2,000 frames of 32x48 held in memory would add ~9 MB of RGB alone, and their depth maps more.
    assert peaks[2000] < peaks[200] + 8 * 1024  # KiB


def test_an_image_sequence_folder_is_a_video_with_stabilisation(tmp_path, monkeypatch):
    from PIL import Image

    import depthforge.video.stabilize as stabilize_module
    from depthforge.cli import main
    from depthforge.video.frames import read_frames
    from tests.conftest import train_tiny

    frames = tmp_path / "walk"
    frames.mkdir()
    seq = render_sequence(3, 6, 48, 64)
    for i, rgb in enumerate(seq["rgb"]):
        Image.fromarray(rgb).save(frames / f"{i:04d}.png")
    ckpt = train_tiny(tmp_path / "run")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(ckpt), str(frames), "--sequence", "--stabilize", "causal",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("walk_*.npy")) == [f"walk_{i:06d}.npy" for i in range(6)]
    assert sum(1 for _ in read_frames(out / "walk_depth.mp4")) == 6
    made = []  # the pose filter gets the camera of --fx (principal point at the frame's centre)

    class Spy(stabilize_module.FlowStabilizer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    import depthforge.video.stream as stream_module

    monkeypatch.setattr(stream_module, "FlowStabilizer", Spy)  # the stream builds the filter
    assert main(["predict", "--checkpoint", str(ckpt), str(frames), "--sequence", "--stabilize", "pose", "--fx", "40",
                 "--flow", "dis", "--out", str(tmp_path / "pose")]) == 0
    assert len(list((tmp_path / "pose").glob("walk_*.npy"))) == 6 and len(made) == 1
    np.testing.assert_allclose(made[0].k, [[40, 0, 31.5], [0, 40, 23.5], [0, 0, 1]])
    plain = tmp_path / "plain"  # without --sequence the folder is a set of photos, one depth file each
    assert main(["predict", "--checkpoint", str(ckpt), str(frames), "--out", str(plain)]) == 0
    assert sorted(p.name for p in plain.glob("*.npy")) == [f"{i:04d}.npy" for i in range(6)]


def _local_flicker(gt: np.ndarray, amount: float, seed: int = 0) -> np.ndarray:
    """Ground truth times a smooth random field per frame (blobs of +-amount): flicker that is local, not a global
    scale (a global-scale stabiliser cannot remove it)."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = gt.shape[1:]
    fields = [cv2.resize(rng.uniform(-amount, amount, (3, 4)).astype(np.float32), (w, h),
                         interpolation=cv2.INTER_CUBIC) for _ in gt]
    return (gt * (1 + np.stack(fields))).astype(np.float32)


def _flickering_walk():
    """A rendered walk (16 frames, 72x128) with a model's flicker: a global scale wobble of up to 10 % and local
    blobs of up to 8 %. Returns the sequence, the valid mask, the flickering depth and an AbsRel function."""
    seq = render_sequence(1, 16, 72, 128)
    gt = seq["depth"]
    valid = (gt < SKY_DEPTH) & (gt > 0.5)
    wobble = np.random.default_rng(1).uniform(0.9, 1.1, (len(gt), 1, 1)).astype(np.float32)

    def absrel(pred):
        return float(np.mean(np.abs(pred[valid] - gt[valid]) / gt[valid]))

    return seq, valid, _local_flicker(gt, 0.08) * wobble, absrel


def test_flow_filter_cuts_local_flicker_keeps_accuracy_and_never_looks_ahead():
    seq, valid, noisy, absrel = _flickering_walk()
    gt, k, poses, rgb = seq["depth"], seq["K"], seq["poses"], seq["rgb"]
    raw_tae = tae(noisy, gt, k, poses, valid)
    flow = stabilize(noisy, "flow", rgb)
    causal = stabilize(noisy, "causal")
    assert tae(flow, gt, k, poses, valid) < 0.5 * raw_tae  # measured: 0.35
    assert tae(flow, gt, k, poses, valid) < tae(causal, gt, k, poses, valid)  # the local part is what flow adds
    assert absrel(flow) <= 1.02 * absrel(noisy)
    geometric = stabilize(noisy, "flow", rgb, scale="flow")  # the scale from the flow fit instead of the median
    assert tae(geometric, gt, k, poses, valid) < 0.5 * raw_tae and absrel(geometric) <= 1.02 * absrel(noisy)
    changed = noisy.copy()
    changed[10] *= 2.0
    a, b = flow, stabilize(changed, "flow", rgb)
    np.testing.assert_array_equal(a[:10], b[:10])
    assert not np.allclose(a[10], b[10])
    with pytest.raises(ValueError, match="RGB frames"):
        stabilize(noisy, "flow")


def test_pose_from_exact_matches_and_depth_moved_by_it_by_hand():
    from depthforge.video.stabilize import move_depth, pixel_rays, relative_pose

    seq = render_sequence(4, 2, 48, 64, turn=0.08)  # a visible turn: 4.6 degrees between the frames
    k, rel = seq["K"], np.linalg.inv(seq["poses"][1]) @ seq["poses"][0]  # camera 0 -> camera 1
    assert np.degrees(np.arccos((np.trace(rel[:3, :3]) - 1) / 2)) > 4
    z0 = seq["depth"][0].astype(np.float64)
    v, u = np.mgrid[0:48, 0:64].astype(np.float64)
    pts = np.einsum("ij,jhw->hwi", np.linalg.inv(k), np.stack([u * z0, v * z0, z0]))  # (H, W, 3) camera 0
    cam1 = pts @ rel[:3, :3].T + rel[:3, 3]
    near = (z0 < SKY_DEPTH) & (cam1[..., 2] > 0.1)
    pix = (cam1[near] @ k.T)[:, :2] / cam1[near][:, 2:]
    r, t = relative_pose(pts[near][::7], pix[::7], k)
    np.testing.assert_allclose(r, rel[:3, :3], atol=1e-6)
    np.testing.assert_allclose(t, rel[:3, 3], atol=1e-5)
    moved = move_depth(z0.astype(np.float32), pixel_rays(np.stack([u, v], -1), k), r, t)
    np.testing.assert_allclose(moved[near], cam1[near][:, 2], rtol=1e-4)
    assert relative_pose(pts[near][:8], pix[:8], k) is None  # too few matches
    rng = np.random.default_rng(0)
    assert relative_pose(pts[near][::7], rng.uniform(0, 64, pix[::7].shape), k) is None  # no consistent motion


def test_pose_filter_beats_the_flow_filter_on_a_moving_camera_and_never_looks_ahead(monkeypatch):
    seq, valid, noisy, absrel = _flickering_walk()
    gt, k, poses, rgb = seq["depth"], seq["K"], seq["poses"], seq["rgb"]
    raw_tae = tae(noisy, gt, k, poses, valid)
    flow = stabilize(noisy, "flow", rgb, "dis")
    pose = stabilize(noisy, "pose", rgb, "dis", k=k)
    assert tae(pose, gt, k, poses, valid) < 0.8 * tae(flow, gt, k, poses, valid)  # measured: 0.66
    assert tae(pose, gt, k, poses, valid) < 0.3 * raw_tae  # measured: 0.22
    # measured 1.028 on this synthetic flicker (a 1.74 drift when the scale was locked wrongly); on a trained model's
    # predictions its AbsRel is 8 % better than per-frame (BENCHMARKS.md, Video)
    assert absrel(pose) <= 1.03 * absrel(noisy)
    filt = FlowStabilizer(flow="dis", k=k)
    np.testing.assert_array_equal(np.stack([filt(d, f) for d, f in zip(noisy, rgb)]), pose)
    assert filt.poses_found == len(noisy) - 1  # every frame after the first moved by a pose ...
    monkeypatch.setattr("depthforge.video.stabilize.relative_pose", lambda *a, **kw: None)
    np.testing.assert_array_equal(stabilize(noisy, "pose", rgb, "dis", k=k), flow)  # ... else the flow filter's
    monkeypatch.undo()
    changed = noisy.copy()
    changed[10] *= 2.0
    later = stabilize(changed, "pose", rgb, "dis", k=k)
    np.testing.assert_array_equal(pose[:10], later[:10])
    assert not np.allclose(pose[10], later[10])
    with pytest.raises(ValueError, match="intrinsics"):
        stabilize(noisy, "pose", rgb)


def test_warp_follows_the_flow_by_hand():
    from depthforge.video.stabilize import optical_flow, warp

    image = np.arange(20, dtype=np.float32).reshape(4, 5)
    flow = np.zeros((4, 5, 2), np.float32)
    flow[..., 0] = 1.0  # every pixel looks one to the right
    out, inside = warp(image, flow)
    np.testing.assert_array_equal(out[:, :-1], image[:, 1:])
    assert inside[:, :-1].all() and not inside[:, -1].any()
    # A classical flow recovers a known shift of a textured image (interior pixels).
    rng = np.random.default_rng(0)
    import cv2

    base = cv2.GaussianBlur(rng.integers(0, 255, (64, 96, 3)).astype(np.uint8), (5, 5), 1.5)
    shifted = np.roll(base, 2, axis=1)  # b[y, x + 2] = a[y, x]
    for method in ("farneback", "dis"):
        f = optical_flow(method)(base, shifted)
        assert np.median(f[16:-16, 16:-16, 0]) == pytest.approx(2.0, abs=0.3)
    with pytest.raises(ValueError, match="choose from"):
        optical_flow("lucas")


def test_raft_flow_from_a_local_weights_file_and_offline_errors(tmp_path, monkeypatch):
    import torch
    from torchvision.models.optical_flow import Raft_Small_Weights, raft_small

    from depthforge.video.stabilize import optical_flow

    torch.manual_seed(0)
    weights = tmp_path / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), weights)
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 255, (36, 50, 3), dtype=np.uint8) for _ in range(2))  # sides not multiples of 8
    f = optical_flow(f"raft:{weights}")(a, b)
    assert f.shape == (36, 50, 2) and np.isfinite(f).all()
    with pytest.raises(FileNotFoundError, match="RAFT weights not found"):
        optical_flow(f"raft:{tmp_path / 'missing.pth'}")

    def offline(*_a, **_k):
        raise OSError("Name or service not known")

    monkeypatch.setattr(Raft_Small_Weights.C_T_V2.__class__, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match="--flow farneback"):
        optical_flow("raft")


class _FakeCapture:
    """cv2.VideoCapture for a camera that is not here: three BGR frames, then the stream ends."""

    def __init__(self, source):
        self.opened = source == 0
        self.frames = [np.full((24, 32, 3), (255, 0, 0), np.uint8)] * 3  # pure blue in BGR
        self.released = False

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self.opened

    def read(self):
        return (True, self.frames.pop()) if self.frames else (False, None)

    def release(self):
        self.released = True


def test_a_camera_streams_through_opencv(tmp_path, monkeypatch):
    import cv2

    from depthforge.cli import main
    from depthforge.video.frames import opencv_frames, read_frames, write_test_video
    from tests.conftest import train_tiny

    clip = write_test_video(tmp_path / "c.mp4", (np.full((32, 48, 3), i * 20, np.uint8) for i in range(5)))
    assert sum(1 for _ in opencv_frames(str(clip))) == sum(1 for _ in read_frames(clip)) == 5  # the real OpenCV
    monkeypatch.setattr(cv2, "VideoCapture", _FakeCapture)
    frames = list(read_frames("camera:0"))
    assert len(frames) == 3 and (frames[0][..., 2] == 255).all() and (frames[0][..., 0] == 0).all()  # RGB now
    with pytest.raises(FileNotFoundError, match="camera 5 could not be opened.*ls /dev/video"):
        list(read_frames("camera:5"))
    with pytest.raises(ValueError, match="camera:0"):
        list(read_frames("camera:front"))
    ckpt = train_tiny(tmp_path / "run")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(ckpt), "camera:0", "--max-frames", "2", "--stabilize", "flow",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.npy")) == ["camera0_000000.npy", "camera0_000001.npy"]
    assert main(["predict", "--checkpoint", str(ckpt), "camera:0", "--stabilize", "offline",
                 "--out", str(out)]) == 2  # a camera cannot be read twice


def test_a_sequence_folder_round_trips_and_is_scored_with_tae(tmp_path, capsys):
    import json

    from depthforge.cli import main
    from depthforge.data.sequence import load_sequence, save_sequence
    from depthforge.io import DataError
    from tests.conftest import train_tiny

    seq = render_sequence(2, 5, 48, 64)
    folder = save_sequence(seq, tmp_path / "walk")
    back = load_sequence(folder)
    np.testing.assert_allclose(back["poses"], seq["poses"], atol=1e-6)  # TUM quaternions there and back
    np.testing.assert_allclose(back["K"], seq["K"], atol=1e-5)
    near = seq["depth"] <= 65
    np.testing.assert_allclose(back["depth"][near], seq["depth"][near], atol=5e-4)  # millimetre PNGs
    assert (back["depth"][~near] == 0).all() and np.array_equal(back["rgb"], seq["rgb"])
    # The truth scores TAE 0 through the same path the command uses.
    assert tae(back["depth"], back["depth"], back["K"], back["poses"], back["depth"] > 0) < 0.1  # mm rounding
    ckpt = train_tiny(tmp_path / "run", size=(48, 64))
    card = tmp_path / "seq.json"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--sequence", str(folder), "--stabilize",
                 "none,causal,flow,pose", "--json", str(card)]) == 0
    rows = json.loads(card.read_text())["rows"]
    assert [r["stabilize"] for r in rows] == ["none", "causal", "flow", "pose"] and all(r["frames"] == 5 for r in rows)
    assert all(np.isfinite(r["tae"]) and r["tae"] > 0 and r["rmse"] > 0 for r in rows)
    # Without poses TAE is undefined (NaN), flicker still measured; bad files say what to write.
    (folder / "poses.txt").unlink()
    assert main(["evaluate", "--checkpoint", str(ckpt), "--sequence", str(folder), "--json", str(card)]) == 0
    row = json.loads(card.read_text())["rows"][0]
    assert np.isnan(row["tae"]) and row["flicker"] > 0
    (folder / "intrinsics.txt").unlink()  # the pose filter needs the camera
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(ckpt), "--sequence", str(folder), "--stabilize", "pose"]) == 2
    assert "intrinsics.txt (fx fy cx cy)" in capsys.readouterr().err
    (folder / "poses.txt").write_text("0 1 2 3\n")
    with pytest.raises(DataError, match="1 poses for 5 frames"):
        load_sequence(folder)
    (folder / "poses.txt").write_text("0 0 0 0 0 0 0 1\n" * 4 + "0 0 0 x 0 0 0 1\n")
    with pytest.raises(DataError, match="pose 5: expected 'timestamp tx ty tz qx qy qz qw'"):
        load_sequence(folder)
    assert main(["evaluate", "--checkpoint", str(ckpt), "--sequence", str(folder), "--stabilize", "smooth"]) == 2


def test_evaluate_sequence_scores_each_modes_own_output():
    """Each row of evaluate --sequence is the metrics of that mode's stabilised output (not the raw one's), and
    stabilising a flickering source lowers its TAE."""
    import torch

    from depthforge.config import Config
    from depthforge.evaluation import Evaluator, get_protocol
    from depthforge.evaluation.sequence import evaluate_sequence
    from depthforge.sources import LoadedSource

    seq = render_sequence(5, 8, 48, 64)
    gt = np.where(seq["depth"] < SKY_DEPTH, seq["depth"], 15.0).astype(np.float32)
    seq = {**seq, "depth": gt}
    gains = np.array([1.0, 1.25, 0.8, 1.2, 0.85, 1.3, 0.75, 1.2], np.float32)  # frame-to-frame scale flicker
    frames = torch.from_numpy(seq["rgb"]).permute(0, 3, 1, 2).float() / 255

    class Flicker(torch.nn.Module):  # finds its frame and returns the truth times that frame's gain
        kind = "metric"

        def forward(self, x):
            i = int(((frames - x[:1]).abs().flatten(1).mean(1)).argmin())
            return torch.from_numpy(gt[i] * gains[i])[None, None].expand(x.shape[0], 1, -1, -1)

    cfg = Config()
    modes = ("none", "causal", "offline")
    rows = evaluate_sequence(LoadedSource(Flicker(), cfg, "metric", {"checkpoint": "flicker"}), seq, modes,
                             max_depth=20.0)
    raw = gt * gains[:, None, None]
    protocol = get_protocol("standard", 20.0)
    for mode in modes:
        out = stabilize(raw, mode)
        evaluator = Evaluator(protocol)
        for pred, depth in zip(out, gt):
            evaluator.process(torch.from_numpy(pred)[None, None], torch.from_numpy(depth)[None, None])
        expected = evaluator.compute()
        assert rows[mode]["rmse"] == pytest.approx(expected["rmse"], rel=1e-9)
        assert rows[mode]["abs_rel"] == pytest.approx(expected["abs_rel"], rel=1e-9)
        valid = (gt > 0) & (gt <= 20.0)
        assert rows[mode]["tae"] == pytest.approx(tae(np.clip(out, 1e-3, 20.0), gt, seq["K"], seq["poses"], valid),
                                                  rel=1e-9)
    assert rows["causal"]["tae"] < 0.8 * rows["none"]["tae"] and rows["offline"]["tae"] < 0.8 * rows["none"]["tae"]
    assert rows["none"]["rmse"] != pytest.approx(rows["offline"]["rmse"], rel=1e-3)


def test_flicker_by_hand_median_aligned_and_over_static_pixels():
    from depthforge.metrics.temporal import flicker

    a = np.array([[1.0, 2.0, 2.5], [3.0, 4.0, 2.5]])
    b = np.array([[2.0, 4.0, 5.0], [6.0, 10.0, 5.0]])  # twice as far, and one pixel moved
    clip = np.stack([a, b, b])
    # pair (a, b): b rescaled by median(a) / median(b) = 2.5 / 5 -> [[1, 2, 2.5], [3, 5, 2.5]]: relative change
    # 1/4 at one pixel of six; pair (b, b): 0. Mean over pairs x 100 = 100 * (1/24) / 2.
    assert flicker(clip) == pytest.approx(100 / 48)
    assert flicker(clip / 10) == pytest.approx(100 / 48)  # depths below 1 m: scale-free
    static = np.array([[True, True, True], [True, False, True]])
    assert flicker(clip, static) == pytest.approx(0.0)  # the moved pixel left out: nothing flickers
    assert flicker(np.stack([a, b])) == pytest.approx(100 / 24)


def test_reprojection_scores_every_pixel_inside_the_frame_and_only_valid_corners():
    from depthforge.metrics.temporal import _reprojection_absrel

    h, w, z = 5, 6, 0.5
    k, pose = np.eye(3), np.eye(4)  # identity camera and no motion: each pixel lands on itself, exactly
    d_i = np.full((h, w), z)
    e = np.zeros((h, w))
    e[:, 0], e[:, -1], e[0, :], e[-1, :] = 0.01, 0.02, 0.03, 0.04  # each border off by its own amount (< 5 %)
    d_j = z * (1 + e)
    ones = np.ones((h, w), bool)
    expected = np.mean(np.abs(d_i - d_j) / d_j)
    assert _reprojection_absrel(d_i, d_j, ones, ones, k, pose, pose) == pytest.approx(expected, rel=1e-12)
    # an invalid pixel of frame j removes the pixels that would read it (their four corners), not only itself
    valid_j = ones.copy()
    valid_j[2, 2] = False
    keep = ones.copy()
    keep[1:3, 1:3] = False
    got = _reprojection_absrel(d_i, d_j, ones, valid_j, k, pose, pose)
    assert got == pytest.approx(np.mean((np.abs(d_i - d_j) / d_j)[keep]), rel=1e-12)
    assert np.isnan(_reprojection_absrel(d_i, d_j, ones, ~ones, k, pose, pose))  # nothing to compare
    # camera j half a pixel left of and above camera i: pixel (v, u) lands at (v + 0.5, u + 0.5), read by bilinear
    # interpolation of inverse depth (exact here: frame j's inverse depth is affine); the last row and column land
    # outside frame j and are left out.
    moved = np.eye(4)
    moved[:2, 3] = -0.25
    v, u = np.mgrid[0:h, 0:w].astype(float)
    d_j = z / (1 + 0.01 * u + 0.02 * v)
    target = z / (1 + 0.01 * (u + 0.5) + 0.02 * (v + 0.5))
    expected = np.mean((np.abs(z - target) / target)[:-1, :-1])
    assert _reprojection_absrel(d_i, d_j, ones, ones, k, pose, moved) == pytest.approx(expected, rel=1e-9)


def test_tae_aligns_the_clip_once_in_disparity_and_uses_every_pair_both_ways():
    from depthforge.metrics.temporal import fit_clip_scale_shift_disparity

    from depthforge.metrics.temporal import _reprojection_absrel

    seq = render_sequence(seed=3, frames=3, height=24, width=32, speed=0.2, turn=0.03)
    gt = np.where(seq["depth"] >= SKY_DEPTH, 0.0, seq["depth"]).astype(np.float64) / 10  # sky unmeasured; < 1 m too
    seq["poses"][:, :3, 3] /= 10  # the whole scene a tenth the size: still consistent
    pred = 1.0 / ((1.0 / np.clip(gt, 1e-3, None) + 0.3) / 2.0)          # disparity 2x + shift: an affine model
    gt[:, 0, :4], gt[:, 1, :4] = 0.0, np.nan                             # no measurement: 0 or NaN
    mask = (gt > 0) & np.isfinite(gt)
    aligned = fit_clip_scale_shift_disparity(pred, gt, mask)
    assert np.allclose(aligned[mask], gt[mask], rtol=1e-9)
    far = pred.copy()
    far[~mask] = 10.0  # disparity 0.1 -> 2 * 0.1 - 0.3 < 0 after the fit: clipped to a huge depth, never negative
    assert np.all(fit_clip_scale_shift_disparity(far, gt, mask)[~mask] == 1e6)
    truth = tae(gt, gt, seq["K"], seq["poses"])
    assert truth == pytest.approx(tae(pred, gt, seq["K"], seq["poses"]), abs=1e-6)  # aligned by default
    assert tae(pred, gt, seq["K"], seq["poses"], align=False) > truth + 0.3  # 0.50 against 0.04
    assert tae(pred, gt, seq["K"], seq["poses"]) == tae(pred, gt, seq["K"], seq["poses"], mask=mask)  # 0, NaN out
    low = tae(pred.astype(np.float32), gt.astype(np.float32), seq["K"], seq["poses"])  # computed in float64
    assert low == pytest.approx(tae(pred.astype(np.float32).astype(np.float64),
                                    gt.astype(np.float32).astype(np.float64), seq["K"], seq["poses"]), rel=1e-12)
    # the mean over every consecutive pair, both directions
    noisy = gt.copy()
    noisy[2][mask[2]] *= 1.1
    pairs = [(0, 1), (1, 0), (1, 2), (2, 1)]
    by_hand = np.mean([_reprojection_absrel(noisy[a], noisy[b], mask[a], mask[b], seq["K"], seq["poses"][a],
                                            seq["poses"][b]) for a, b in pairs])
    assert tae(noisy, gt, seq["K"], seq["poses"], align=False) == pytest.approx(100 * by_hand, rel=1e-12)
    with pytest.raises(ValueError, match=r"tae needs \(N>=2, H, W\)"):
        tae(gt[:1], gt[:1], seq["K"], seq["poses"][:1])
    with pytest.raises(ValueError, match=r"of one shape, got \(3, 24, 32\) and \(3, 24, 31\)"):
        tae(gt, gt[:, :, :-1], seq["K"], seq["poses"])


def test_scale_filters_by_hand():
    from depthforge.video.stabilize import log_scale, smooth_track, stabilize_offline

    d = np.array([[0.5, 0.0, np.nan], [np.inf, 2.0, 0.25]])  # only finite positive pixels count, below 1 m too
    assert log_scale(d) == pytest.approx(np.log(0.5))
    assert log_scale(np.zeros((2, 2))) == 0.0               # nothing measured: no rescaling
    f = CausalStabilizer(alpha=0.5, beta=0.5)
    levels = []
    for g in (0.0, 1.0, 1.0, 3.0):  # alpha-beta filter on log-scales, by hand
        levels.append(np.log(f(np.full((2, 2), np.exp(g)))[0, 0]))
    # level 0; predicted 0 -> level 0.5, trend 0.25; predicted 0.75 -> 0.875, trend 0.3125;
    # predicted 1.1875 -> 2.09375, trend 0.765625; predicted 2.859375 -> 2.9296875
    assert levels == pytest.approx([0.0, 0.5, 0.875, 2.09375])
    out = f(np.full((2, 2), np.exp(3.0), np.float32))
    assert out.dtype == np.float32 and np.log(out[0, 0]) == pytest.approx(2.9296875, rel=1e-6)
    for alpha, beta in ((1.0, 0.0), (1.0, 1.0)):  # the ends of the ranges are allowed
        CausalStabilizer(alpha, beta)
    for alpha, beta in ((0.0, 0.5), (1.5, 0.5), (0.5, 1.5), (0.5, -0.1)):
        with pytest.raises(ValueError, match=rf"^alpha must be in \(0, 1\] and beta in \[0, 1\], got {alpha}, {beta}$"):
            CausalStabilizer(alpha, beta)
    # zero-phase Gaussian over the track, sigma 2 frames by default (radius 6), the ends reflected
    g = np.array([0.0, 1.0, 0.0, 2.0, 0.0, 1.0, 0.5, 0.0, 1.5, 0.0])
    kern = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)
    kern /= kern.sum()
    padded = np.concatenate([g[6:0:-1], g, g[-2:-8:-1]])
    assert smooth_track(g) == pytest.approx(np.convolve(padded, kern, "valid"), rel=1e-12)
    short = np.array([0.0, 1.0, 0.0, 2.0, 0.0, 1.0])  # as long as the radius: the ends repeated instead
    assert smooth_track(short) == pytest.approx(np.convolve(np.pad(short, 6, mode="edge"), kern, "valid"), rel=1e-12)
    clip = (np.exp(g)[:, None, None] * np.ones((10, 2, 3))).astype(np.float32)
    flat = stabilize_offline(clip)
    assert flat.dtype == np.float32
    assert np.log(flat[:, 0, 0]) == pytest.approx(smooth_track(g, 2.0), abs=1e-6)
    assert np.log(stabilize_offline(clip, 1.0)[:, 0, 0]) == pytest.approx(smooth_track(g, 1.0), abs=1e-6)
    k1 = np.exp(-0.5 * (np.arange(-1, 2) / 0.5) ** 2)  # sigma 0.5: radius int(1.5) = 1
    assert smooth_track(g, 0.5) == pytest.approx(np.convolve(np.pad(g, 1, mode="reflect"), k1 / k1.sum(), "valid"))


def test_flow_filter_blend_by_hand_with_a_fixed_flow():
    from depthforge.video.stabilize import FlowStabilizer, optical_flow, stabilize

    h, w = 6, 8
    d1 = np.linspace(0.2, 0.9, h * w, dtype=np.float32).reshape(h, w)  # below 1 m
    d1[2, 3] = 0.0                                              # the previous output holds no depth there
    d2 = d1 * 1.1 + 0.05
    d2[0, 0], d2[0, 1], d2[5, 7] = 0.0, np.nan, d1[5, 7] * 3   # unmeasured, undefined, a new object
    rgb = np.full((h, w, 3), 100, np.uint8)
    rgb2 = rgb.copy()
    rgb2[3, :2] = 220                                           # the flow cannot be trusted there
    filt = FlowStabilizer(weight=0.5, scale="none")
    filt.flow = lambda a, b: np.zeros((h, w, 2), np.float32)   # still camera: each pixel its own match
    assert np.array_equal(filt(d1, rgb), d1)
    out = filt(d2, rgb2)
    ok = np.isfinite(d2) & (d2 > 0) & (d1 > 0)
    ok[3, :2] = False
    a, b = np.polyfit(d1[ok].astype(np.float64), d2[ok].astype(np.float64), 1)
    fitted = (a * d1 + b).astype(np.float32)
    ok &= np.abs(fitted - d2) <= 0.2 * np.abs(d2)
    expected = np.where(ok, 0.5 * fitted + 0.5 * d2, d2)
    assert out.dtype == np.float32 and np.allclose(out, expected, rtol=1e-6, equal_nan=True)
    assert not ok[5, 7] and out[5, 7] == d2[5, 7] and out[3, 0] == d2[3, 0]
    # scale "flow": most of the frame's scale against the previous output (a = 0.9 < 1) is removed first
    sc = FlowStabilizer(weight=0.5, scale="flow")
    sc.flow = filt.flow
    sc(d1, rgb)
    d3 = d1 * 0.9
    got = sc(d3, rgb)
    rescaled = d3 * np.float32(0.9 ** (0.3 - 1))
    assert np.allclose(got, rescaled, rtol=1e-5) and got.dtype == np.float32  # then it matches the fit exactly
    # too few trusted pixels (16): the frame as it is; 17: blended
    for n, blended in ((16, False), (17, True)):
        f = FlowStabilizer(weight=0.5, scale="none")
        f.flow = lambda a, b: np.zeros(a.shape[:2] + (2,), np.float32)
        row = np.linspace(1, 2, n, dtype=np.float32)[None]
        f(row, np.full((1, n, 3), 100, np.uint8))
        nxt = row * 1.05
        nxt[0, 0] *= 1.5
        assert (not np.array_equal(f(nxt, np.full((1, n, 3), 100, np.uint8)), nxt)) == blended, n
    # defaults and bounds
    assert FlowStabilizer().weight == 0.6 and FlowStabilizer(k=np.eye(3)).weight == 0.8
    assert FlowStabilizer(weight=0.0).weight == 0.0
    a_img = np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    b_img = np.roll(a_img, 2, axis=1)
    assert np.array_equal(FlowStabilizer().flow(a_img, b_img), optical_flow("farneback")(a_img, b_img))
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=rf"^weight must be in \[0, 1\), got {bad}$"):
            FlowStabilizer(weight=bad)
    with pytest.raises(ValueError, match=r"^scale filter 'mean': choose from \('median', 'flow', 'none'\)$"):
        FlowStabilizer(scale="mean")
    with pytest.raises(ValueError, match=r"^intrinsics must be a 3x3 matrix, got shape \(2, 3\)$"):
        FlowStabilizer(k=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^stabilisation 'smooth': choose from \('none', 'causal', 'offline', "):
        stabilize(d1[None], "smooth")
    with pytest.raises(ValueError, match=r"^pose stabilisation needs the camera intrinsics \(intrinsics.txt, or "
                                         r"--fx / --hfov\)$"):
        stabilize(d1[None], "pose", rgb[None])
    # stabilize() passes the scale filter and uses the intrinsics in pose mode only
    clip = np.stack([d1, d1 * 1.3, d1 * 0.8])
    rgbs = np.stack([a_img[:h, :w]] * 3)
    by_hand = FlowStabilizer(scale="none")
    assert np.array_equal(stabilize(clip, "flow", rgbs, scale="none"), np.stack([by_hand(d, r) for d, r in zip(clip, rgbs)]))
    plain = FlowStabilizer()
    assert np.array_equal(stabilize(clip, "flow", rgbs, k=np.eye(3) * 50), np.stack([plain(d, r) for d, r in zip(clip, rgbs)]))
    from depthforge.video.stabilize import stabilize_offline

    assert np.array_equal(stabilize(clip, "offline"), stabilize_offline(clip, 2.0))


def test_warp_marks_samples_inside_the_frame_and_interpolates_in_float(monkeypatch):
    import sys

    from depthforge.video.stabilize import relative_pose, warp

    img = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    img[2, 1] = 115
    flow = np.zeros((4, 5, 2), np.float32)
    out, inside = warp(img, flow)
    assert inside.all() and np.array_equal(out, img.astype(np.float32))  # every pixel, borders included
    flow[..., 0], flow[..., 1] = 0.5, 1.5
    out, inside = warp(img, flow)
    assert inside.tolist() == [[True] * 4 + [False]] * 2 + [[False] * 5] * 2
    assert out[0, 0] == pytest.approx((50 + 60 + 100 + 115) / 4)  # at (0.5, 1.5), bilinear, in float: 81.25
    # PnP needs 12 matches at least: exactly 12 exact ones give the motion
    rng = np.random.default_rng(0)
    pts = np.c_[rng.uniform(-1, 1, (12, 2)), rng.uniform(3, 6, 12)]
    k = np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])
    t = np.array([0.1, -0.05, 0.2])
    proj = (pts + t) @ k.T
    pose = relative_pose(pts, proj[:, :2] / proj[:, 2:], k)
    assert pose is not None and np.allclose(pose[0], np.eye(3), atol=1e-6) and np.allclose(pose[1], t, atol=1e-6)
    assert relative_pose(pts[:11], (proj[:, :2] / proj[:, 2:])[:11], k) is None
    # 12 agreeing matches among 17 (70 %) is a pose, but not when 90 % must agree: no pose rather than a guess
    junk = np.c_[rng.uniform(-1, 1, (5, 2)), rng.uniform(3, 6, 5)]
    noise = rng.uniform(0, 64, (5, 2))
    mixed = (np.r_[pts, junk], np.r_[proj[:, :2] / proj[:, 2:], noise], k)
    assert relative_pose(*mixed) is not None and relative_pose(*mixed, min_inliers=0.9) is None
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ImportError, match=r"^flow-guided stabilisation needs OpenCV: pip install 'depthforge\[video\]'$"):
        warp(img, flow)


def test_pose_filter_by_hand_on_a_plane_below_one_metre(monkeypatch):
    from depthforge.video.stabilize import FlowStabilizer, optical_flow, stabilize

    # a textured wall 0.5 m away; the camera steps 2.5 cm right, so every pixel's match is 2 px to its right
    # (exact flow given), and the new frame's depth wobbles 20 % too far. The previous output moved into this
    # camera is the wall at 0.5 m again; the frame and it meet at the lock (0.3): both become 0.5 * 1.2 ** 0.7.
    h, w, z = 24, 32, 0.5
    k = np.array([[40.0, 0, 15.5], [0, 40.0, 11.5], [0, 0, 1]])
    rgb1 = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    rgb2 = np.roll(rgb1, -2, axis=1)
    d1, d2 = np.full((h, w), z, np.float32), np.full((h, w), 1.2 * z, np.float32)
    shift = lambda a, b: np.dstack([np.full((h, w), 2.0, np.float32), np.zeros((h, w), np.float32)])
    filt = FlowStabilizer(scale="none", k=k)
    filt.flow = shift
    filt(d1, rgb1)
    out = filt(d2, rgb2)
    assert filt.poses_found == 1 and out.dtype == np.float32
    assert np.allclose(out, z * 1.2 ** 0.7, rtol=1e-4)
    # stabilize(): the intrinsics turn pose on for mode "pose" only
    monkeypatch.setattr("depthforge.video.stabilize.optical_flow", lambda method="farneback": shift)
    clip, rgbs = np.stack([d1, d2]), np.stack([rgb1, rgb2])
    assert np.allclose(stabilize(clip, "pose", rgbs, scale="none", k=k)[1], out)
    flow_only = stabilize(clip, "flow", rgbs, scale="none", k=k)[1]
    assert not np.allclose(flow_only, out, rtol=1e-3)
    monkeypatch.undo()
    a_img = np.random.default_rng(1).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    assert np.array_equal(optical_flow()(a_img, np.roll(a_img, 2, 1)), optical_flow("farneback")(a_img, np.roll(a_img, 2, 1)))


class _NotWeights:
    """A pickled object in a .pth file: torch.load(weights_only=True) must refuse it."""


def test_raft_pads_any_size_to_its_constraints_and_loads_weights_only(tmp_path, monkeypatch):
    import pickle

    import torch
    from torchvision.models.optical_flow import Raft_Small_Weights, raft_small

    from depthforge.video.stabilize import optical_flow

    torch.manual_seed(0)
    weights = tmp_path / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), weights)
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 255, (130, 133, 3), dtype=np.uint8) for _ in range(2))  # above 128, not multiples of 8
    flow = optical_flow(f"raft:{weights}")
    f = flow(a, b)
    assert f.shape == (130, 133, 2) and np.isfinite(f).all()
    assert not np.allclose(f, flow(b, a)) and not np.allclose(f, flow(b, b))  # both frames, in order
    # at 128 x 128 (no padding) it is torchvision's RAFT with torchvision's own preprocessing, 12 updates, last
    model = raft_small(weights=None)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    a1, b1 = a[:128, :128], b[:128, :128]
    ia, ib = Raft_Small_Weights.C_T_V2.transforms()(*(torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None]
                                                      for x in (a1, b1)))
    with torch.inference_mode():
        ref = model(ia, ib, num_flow_updates=12)[-1][0].permute(1, 2, 0).numpy()
    assert np.allclose(flow(a1, b1), ref, atol=1e-4)
    torch.save({"evil": _NotWeights()}, tmp_path / "pickled.pth")
    with pytest.raises(pickle.UnpicklingError):
        optical_flow(f"raft:{tmp_path / 'pickled.pth'}")

    def offline(*_a, **_k):
        raise OSError("Name or service not known")

    monkeypatch.setattr(Raft_Small_Weights.C_T_V2.__class__, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match=r"^RAFT weights are not on this machine and cannot be downloaded; give a "
                                           r"local file \(--flow raft:<raft_small.pth>\) or use --flow farneback / dis$"):
        optical_flow("raft")
