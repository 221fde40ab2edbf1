"""Video depth: sequences with known camera motion, TAE, stabilisers, streaming with flat memory."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from depthforge.data.synthetic import SKY_DEPTH, render_sequence
from depthforge.inference.stabilize import CausalStabilizer, stabilize
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
from depthforge.inference.video import predict_video, write_test_video
n = int(sys.argv[1])
rng = np.random.default_rng(0)
frames = (rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(n))
clip = write_test_video(sys.argv[2] + "/clip.mp4", frames)
count, _ = predict_video(clip, lambda rgb: rgb.mean(-1).astype(np.float32) / 25 + 1, sys.argv[2],
                         lambda depth, stem: None, stabilize=sys.argv[3])
print(count, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
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


def test_an_image_sequence_folder_is_a_video_with_stabilisation(tmp_path):
    from PIL import Image

    from depthforge.cli import main
    from depthforge.inference.video import read_frames
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
    plain = tmp_path / "plain"  # without --sequence the folder is a set of photos, one depth file each
    assert main(["predict", "--checkpoint", str(ckpt), str(frames), "--out", str(plain)]) == 0
    assert sorted(p.name for p in plain.glob("*.npy")) == [f"{i:04d}.npy" for i in range(6)]
