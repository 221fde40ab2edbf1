"""Video: frames in (files, image-sequence folders, cameras), side-by-side depth videos out
(`frames`), and temporal filtering of per-frame depth (`stabilize`,
composed with a per-frame model by `stream`)."""

from depthforge.video.frames import CAMERA_PREFIX, VIDEO_SUFFIXES, SideBySideWriter, is_video, read_frames
from depthforge.video.stabilize import MODES
from depthforge.video.stream import stabilized_depths

__all__ = ["CAMERA_PREFIX", "MODES", "VIDEO_SUFFIXES", "SideBySideWriter", "is_video", "read_frames",
           "stabilized_depths"]
