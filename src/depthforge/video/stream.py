"""A per-frame depth model run over a stream of frames, with the temporal filter the caller chose."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from depthforge.video.frames import CAMERA_PREFIX, read_frames
from depthforge.video.stabilize import MODES, CausalStabilizer, FlowStabilizer, log_scale, smooth_track


def stabilized_depths(path: str | Path, predict: Callable[[np.ndarray], np.ndarray], stabilize: str = "none",
                      flow: str = "farneback", max_frames: int | None = None,
                      intrinsics: Callable[[int, int], np.ndarray] | None = None
                      ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(rgb, depth)`` for every frame of ``path`` (a video file, a folder of frames or ``camera:<index>``).

    Frames stream through (one in memory at a time); ``max_frames`` stops early. ``stabilize``: ``causal``
    rescales each frame onto a smoothed scale track of the frames so far (`depthforge.video.stabilize`);
    ``offline`` smooths the whole clip's track, which costs a first pass over the clip (twice the model time) and
    keeps memory flat; ``flow`` is causal and also filters local flicker along the optical flow (``flow``:
    farneback, dis or raft[:weights.pth]); ``pose`` moves the previous output by the camera motion estimated from
    that flow, which needs ``intrinsics(width, height)`` -> the 3x3 camera matrix. A camera streams until
    ``max_frames`` or until it stops; it takes no ``offline``.
    """
    if stabilize not in MODES:
        raise ValueError(f"--stabilize {stabilize}: choose from {', '.join(MODES)}")
    step = predict
    if stabilize == "causal":
        causal = CausalStabilizer()

        def step(rgb):
            return causal(predict(rgb))
    elif stabilize in ("flow", "pose"):
        if stabilize == "pose" and intrinsics is None:
            raise ValueError("--stabilize pose needs the camera intrinsics (--fx, or the --hfov guess)")
        filt = FlowStabilizer(flow=flow)  # a bad --flow fails here, before any file is opened
        sizes: list[tuple[int, int]] = []  # the frame size the camera matrix was made for

        def step(rgb):
            if stabilize == "pose" and sizes[-1:] != [rgb.shape[:2]]:  # the intrinsics need the frame's size
                filt.k = np.asarray(intrinsics(rgb.shape[1], rgb.shape[0]), np.float64)
                sizes.append(rgb.shape[:2])
            return filt(predict(rgb), rgb)
    elif stabilize == "offline":
        if str(path).startswith(CAMERA_PREFIX):
            raise ValueError("--stabilize offline needs the whole clip twice; a camera gives it once: use causal "
                             "or flow")
        track = [log_scale(predict(rgb)) for _, rgb in zip(range(max_frames or 2**62), read_frames(path))]
        gains = iter(np.exp(smooth_track(np.array(track)) - np.array(track)))

        def step(rgb):
            return (predict(rgb) * next(gains)).astype(np.float32)
    for n, rgb in enumerate(read_frames(path)):
        if max_frames is not None and n >= max_frames:
            return
        yield rgb, step(rgb)
