"""Video frames in (files, image-sequence folders, cameras) and side-by-side RGB | depth videos out (PyAV, extra ``video``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from depthforge.viz import colorize

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def _av():
    try:
        import av
    except ImportError as err:
        raise ImportError("video files need PyAV: pip install 'depthforge[video]'", name="av") from err
    return av


CAMERA_PREFIX = "camera:"


def opencv_frames(source: int | str) -> Iterator[np.ndarray]:
    """RGB uint8 frames from OpenCV's ``VideoCapture``: a camera device index (a live stream, until it ends or the
    caller stops) or a file; a clear error when it cannot be opened."""
    try:
        import cv2
    except ImportError as err:
        raise ImportError("camera input needs OpenCV: pip install 'depthforge[video]'", name="cv2") from err
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
    yield from _file_frames(path)


def _file_frames(path: Path) -> Iterator[np.ndarray]:
    """A video file's frames through PyAV; a file it cannot demux or decode, one without a video stream or with
    frames over the image readers' pixel limit is a `DataError` naming it (frames already yielded stay yielded)."""
    from depthforge.io import MAX_PIXELS, DataError

    av = _av()
    # FFmpeg's errors, and what PyAV raises formatting some of them (a non-UTF-8 message)
    failures = (av.FFmpegError, UnicodeDecodeError, ValueError, OSError, EOFError)
    try:
        container = av.open(str(path))
    except failures as err:
        raise DataError(f"{path}: not a video FFmpeg can read ({type(err).__name__}: {str(err)[:100]})") from None
    with container:
        if not container.streams.video:
            raise DataError(f"{path}: the file holds no video stream")
        try:
            for frame in container.decode(video=0):
                if frame.width * frame.height > MAX_PIXELS:
                    raise DataError(f"{path}: a frame of {frame.width}x{frame.height} pixels, over the "
                                    f"{MAX_PIXELS / 1e6:.0f}-megapixel limit of the image readers")
                yield frame.to_ndarray(format="rgb24")
        except failures as err:
            raise DataError(f"{path}: the video stops being readable ({type(err).__name__}: {str(err)[:100]}); "
                            "the frames before it were read") from None


def is_video(item: str | Path, sequence: bool = False) -> bool:
    """Whether an input is a stream of frames: a camera, a video file, or (``sequence``) a folder of frames."""
    text = str(item)
    return (text.startswith(CAMERA_PREFIX) or Path(text).suffix.lower() in VIDEO_SUFFIXES
            or (sequence and Path(text).is_dir()))


def video_stem(item: str | Path) -> str:
    """The file stem a stream's outputs are named after (``camera:0`` -> ``camera0``)."""
    text = str(item)
    return text.replace(":", "") if text.startswith(CAMERA_PREFIX) else Path(text).stem


class SideBySideWriter:
    """``RGB | coloured depth`` frames into an MPEG-4 file, one at a time (nothing is kept in memory).

    The colour range is fixed over the whole video (``vmax``, else the first frame's 98th percentile) so the
    colours do not flicker from frame to frame.
    """

    def __init__(self, path: str | Path, vmax: float | None = None, cmap: str = "magma", fps: int = 10):
        self.av = _av()
        self.path, self.vmax, self.cmap, self.fps = Path(path), vmax, cmap, fps
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = self.av.open(str(self.path), mode="w")
        self._stream = None
        self.frames = 0

    def write(self, rgb: np.ndarray, depth: np.ndarray) -> None:
        if self.vmax is None:
            self.vmax = float(np.percentile(depth, 98))
        panel = np.concatenate([rgb, colorize(depth, cmap=self.cmap, vmin=0.0, vmax=self.vmax)], axis=1)
        h, w = panel.shape[:2]
        panel = panel[: h - h % 2, : w - w % 2]  # yuv420p needs even sides
        if self._stream is None:
            self._stream = self._out.add_stream("mpeg4", rate=self.fps)
            self._stream.height, self._stream.width, self._stream.pix_fmt = panel.shape[0], panel.shape[1], "yuv420p"
        frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(panel), format="rgb24")
        for packet in self._stream.encode(frame):
            self._out.mux(packet)
        self.frames += 1

    def close(self) -> Path:
        """Flush and close the file (safe to call twice); returns its path."""
        if self._out is not None:
            if self._stream is not None:
                for packet in self._stream.encode():
                    self._out.mux(packet)
            self._out.close()
            self._out = None
        return self.path


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
