"""Video in: per-frame raw depth (with sidecars) and a side-by-side RGB | depth video out (PyAV, extra ``video``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from depthforge.viz import colorize

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def _av():
    try:
        import av
    except ImportError as err:
        raise RuntimeError("video needs PyAV: pip install av (or depthforge[video])") from err
    return av


CAMERA_PREFIX = "camera:"


def opencv_frames(source: int | str) -> Iterator[np.ndarray]:
    """RGB uint8 frames from OpenCV's ``VideoCapture``: a camera device index (a live stream, until it ends or the
    caller stops) or a file; a clear error when it cannot be opened."""
    try:
        import cv2
    except ImportError as err:
        raise RuntimeError("camera input needs OpenCV: pip install 'depthforge[video]'") from err
    capture = cv2.VideoCapture(source)
    try:
        if not capture.isOpened():
            what = f"camera {source}" if isinstance(source, int) else str(source)
            raise FileNotFoundError(f"{what} could not be opened; check the device index (ls /dev/video*) and that "
                                    "no other program holds the camera")
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """RGB uint8 frames of a video file, of an image-sequence folder (its images in name order), or of a camera
    (``camera:<index>``, through OpenCV), one at a time."""
    if str(path).startswith(CAMERA_PREFIX):
        index = str(path)[len(CAMERA_PREFIX):]
        if not index.isdigit():
            raise ValueError(f"{path}: give the camera's device index, e.g. camera:0")
        yield from opencv_frames(int(index))
        return
    path = Path(path)
    if path.is_dir():
        from depthforge.io import IMAGE_SUFFIXES, read_rgb

        frames = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not frames:
            raise FileNotFoundError(f"{path}: no images to read as a sequence ({', '.join(IMAGE_SUFFIXES)})")
        for p in frames:
            yield read_rgb(p)
        return
    with _av().open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def predict_video(path: str | Path, predict: Callable[[np.ndarray], np.ndarray], out_dir: str | Path,
                  write_frame: Callable[[np.ndarray, str], object], vmax: float | None = None, fps: int = 10,
                  cmap: str = "magma", max_frames: int | None = None,
                  progress: Callable[[int, int | None], object] | None = None,
                  stabilize: str = "none", flow: str = "farneback",
                  intrinsics: Callable[[int, int], np.ndarray] | None = None) -> tuple[int, Path]:
    """Depth for every frame (``write_frame(depth, stem)`` saves each) and ``<stem>_depth.mp4`` side by side.

    The colour range is fixed over the whole video (``vmax``, else the first frame's 98th percentile) so the
    colours do not flicker from frame to frame. ``max_frames`` stops early; ``progress(done, total)`` is called
    after each frame (``total`` is ``max_frames`` or None).

    Frames stream through (one in memory at a time). ``stabilize``: ``causal`` rescales each frame onto a smoothed
    scale track of the frames so far (:mod:`depthforge.inference.stabilize`); ``offline`` smooths the whole clip's
    track, which costs a first pass over the clip (twice the model time) and keeps memory flat; ``flow`` is causal
    and also filters local flicker along the optical flow (``flow``: farneback, dis or raft[:weights.pth]); ``pose``
    moves the previous output by the camera motion estimated from that flow, which needs ``intrinsics(width,
    height)`` -> the 3x3 camera matrix. A camera
    (``camera:<index>``) streams until ``max_frames`` or until it stops; it takes no ``offline``.
    """
    from depthforge.inference.stabilize import MODES, CausalStabilizer, FlowStabilizer, log_scale, smooth_track

    if stabilize not in MODES:
        raise ValueError(f"--stabilize {stabilize}: choose from {', '.join(MODES)}")
    raw = predict
    if stabilize == "causal":
        causal = CausalStabilizer()

        def predict(rgb):  # noqa: F811 - the stabilised source replaces the raw one
            return causal(raw(rgb))
    elif stabilize in ("flow", "pose"):
        if stabilize == "pose" and intrinsics is None:
            raise ValueError("--stabilize pose needs the camera intrinsics (--fx, or the --hfov guess)")
        filt = FlowStabilizer(flow=flow)  # a bad --flow fails here, before any file is opened
        sizes: list[tuple[int, int]] = []  # the frame size the camera matrix was made for

        def predict(rgb):  # noqa: F811
            if stabilize == "pose" and sizes[-1:] != [rgb.shape[:2]]:  # the intrinsics need the frame's size
                filt.k = np.asarray(intrinsics(rgb.shape[1], rgb.shape[0]), np.float64)
                sizes.append(rgb.shape[:2])
            return filt(raw(rgb), rgb)
    elif stabilize == "offline":
        if str(path).startswith(CAMERA_PREFIX):
            raise ValueError("--stabilize offline needs the whole clip twice; a camera gives it once: use causal "
                             "or flow")
        track = [log_scale(raw(rgb)) for n_, rgb in zip(range(max_frames or 2**62), read_frames(path))]
        gains = iter(np.exp(smooth_track(np.array(track)) - np.array(track)))

        def predict(rgb):  # noqa: F811
            return (raw(rgb) * next(gains)).astype(np.float32)
    av = _av()
    source, out_dir = path, Path(out_dir)
    path = Path(str(path).replace(":", "")) if str(path).startswith(CAMERA_PREFIX) else Path(path)  # camera0
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / f"{path.stem}_depth.mp4"
    n = 0
    with av.open(str(out_path), mode="w") as out:
        stream = None
        try:
            for rgb in read_frames(source):
                if max_frames is not None and n >= max_frames:
                    break
                depth = predict(rgb)
                write_frame(depth, f"{path.stem}_{n:06d}")
                if vmax is None:
                    vmax = float(np.percentile(depth, 98))
                panel = np.concatenate([rgb, colorize(depth, cmap=cmap, vmin=0.0, vmax=vmax)], axis=1)
                h, w = panel.shape[:2]
                panel = panel[: h - h % 2, : w - w % 2]  # yuv420p needs even sides
                if stream is None:
                    stream = out.add_stream("mpeg4", rate=fps)
                    stream.height, stream.width, stream.pix_fmt = panel.shape[0], panel.shape[1], "yuv420p"
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(panel), format="rgb24")):
                    out.mux(packet)
                n += 1
                if progress is not None:
                    progress(n, max_frames)
        except KeyboardInterrupt:
            if not str(source).startswith(CAMERA_PREFIX):
                raise
            # a live camera stopped with Ctrl-C: the frames so far are written; finish the video file
        if stream is not None:
            for packet in stream.encode():
                out.mux(packet)
    return n, out_path


def write_test_video(path: str | Path, frames: Iterable[np.ndarray], fps: int = 10) -> Path:
    """Encode RGB frames (for tests and examples); ``frames`` may be a generator (nothing is kept)."""
    av = _av()
    with av.open(str(path), mode="w") as out:
        stream = None
        for f in frames:
            if stream is None:
                stream = out.add_stream("mpeg4", rate=fps)
                stream.height, stream.width, stream.pix_fmt = f.shape[0], f.shape[1], "yuv420p"
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        if stream is None:
            raise ValueError("write_test_video needs at least one frame")
        for packet in stream.encode():
            out.mux(packet)
    return Path(path)
