"""Pinhole intrinsics and where they come from: given, EXIF, a model's own focal length, or a field-of-view guess."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# Without EXIF or user intrinsics a horizontal field of view must be guessed; 60 degrees is a typical phone/webcam
# value. The guess is written into the sidecar so nobody mistakes it for a calibration.
DEFAULT_HFOV_DEG = 60.0


@dataclass
class Intrinsics:
    """Pinhole intrinsics in pixels (OpenCV convention: pixel centres at integer coordinates)."""

    fx: float
    fy: float
    cx: float
    cy: float
    source: str = "given"

    def to_dict(self) -> dict:
        return asdict(self)

    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float = DEFAULT_HFOV_DEG) -> Intrinsics:
        f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
        return cls(f, f, (width - 1) / 2, (height - 1) / 2, source=f"guess: horizontal FOV {hfov_deg:g} deg")

    @classmethod
    def from_focal(cls, width: int, height: int, fx: float, fy: float | None = None, cx: float | None = None,
                   cy: float | None = None, source: str = "given") -> Intrinsics:
        """A focal length in pixels; ``fy`` defaults to ``fx``, the principal point to the image centre."""
        return cls(float(fx), float(fy or fx), float(cx) if cx is not None else (width - 1) / 2,
                   float(cy) if cy is not None else (height - 1) / 2, source=source)


def intrinsics_from_exif(path: str | Path, width: int, height: int) -> Intrinsics | None:
    """From EXIF ``FocalLengthIn35mmFilm`` (36 mm wide frame), or None when the file has no such tag."""
    try:
        with warnings.catch_warnings(), Image.open(path) as img:
            warnings.simplefilter("ignore")  # Pillow warns on corrupt EXIF: optional here, the guess takes over
            f35 = float(img.getexif().get_ifd(0x8769).get(0xA405) or 0)  # the Exif sub-IFD's FocalLengthIn35mmFilm
    except Exception:  # noqa: BLE001 - EXIF from untrusted files fails in many ways; without it, no EXIF camera
        return None
    if not (math.isfinite(f35) and 0 < f35 < 10_000):
        return None
    fx = f35 / 36.0 * max(width, height)
    return Intrinsics(fx, fx, (width - 1) / 2, (height - 1) / 2, source=f"EXIF 35mm-equivalent focal {f35:g} mm")


def pick_intrinsics(width: int, height: int, fx: float | None = None, fy: float | None = None,
                    cx: float | None = None, cy: float | None = None, hfov: float = DEFAULT_HFOV_DEG,
                    predicted_fx: float | None = None, path: str | Path | None = None) -> Intrinsics:
    """The camera of a ``width`` x ``height`` image, from the best evidence there is: ``fx`` (and ``fy``, ``cx``,
    ``cy``) given, else a focal length the model predicted (Depth Pro), else the file's EXIF, else the ``hfov``
    guess. The result's ``source`` says which."""
    if fx:
        return Intrinsics.from_focal(width, height, fx, fy, cx, cy)
    if predicted_fx:
        return Intrinsics.from_focal(width, height, predicted_fx, None, cx, cy,
                                     source="predicted by the model (Depth Pro)")
    found = intrinsics_from_exif(path, width, height) if path is not None else None
    return found or Intrinsics.from_fov(width, height, hfov)
