"""Reading RGB images: every suffix the data sets and ``predict`` accept, decoded by Pillow.

The pixel count a header claims is checked before anything is decoded: a 100-byte PNG can claim 50000x50000 pixels
(7.5 GB decoded), so the readers refuse it from the header, naming the file (a decompression bomb never allocates).
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from depthforge.io.errors import DataError, one_line, shown

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Pillow's own hard limit (twice its warning threshold, ~179 megapixels): larger than any camera writes, and
# the point where Pillow itself refuses. The server takes a lower one (--max-pixels).
MAX_PIXELS = 2 * 89_478_485


def _checked(img: Image.Image, path: Path | str, max_pixels: int) -> Image.Image:
    w, h = img.size
    if w * h > max_pixels:
        raise DataError(f"{path}: the image claims {w}x{h} pixels ({w * h / 1e6:.0f} megapixels), over the "
                        f"{max_pixels / 1e6:.0f}-megapixel limit; it was not decoded. Downscale it, or leave it out")
    return img


def _label(path: Path | str | IO[bytes]) -> str:
    """What an error calls the file: its path, or an in-memory file's name (an upload: "the image")."""
    return shown(path) if isinstance(path, (str, Path)) else shown(getattr(path, "name", "the image"))


def _open(path: Path | str | IO[bytes], max_pixels: int) -> Image.Image:
    """The image with its header read and its size checked, not yet decoded."""
    try:
        return _checked(Image.open(path), _label(path), max_pixels)
    except Image.DecompressionBombError as err:  # Pillow's own check, in formats whose size it reads first
        raise DataError(f"{_label(path)}: the header claims more pixels than the {max_pixels / 1e6:.0f}-megapixel "
                        f"limit (Pillow: {err}); it was not decoded. Downscale it, or leave it out") from None


def _unreadable(path: Path | str | IO[bytes], err: Exception) -> DataError:
    # Untrusted bytes meet Pillow's parsers: besides OSError they raise ValueError, SyntaxError, struct.error,
    # EOFError, IndexError, TypeError, ... (found by tests/test_fuzz.py); each is the file's fault, said in one line
    return DataError(f"{_label(path)}: unreadable image ({one_line(err)}); re-export it as JPEG/PNG or remove the pair "
                     "(or pass data.skip_invalid=true to skip such samples)")


def image_size(path: Path | str | IO[bytes], max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(H, W) from the file's header, without decoding it; a size over ``max_pixels`` or a file Pillow cannot
    identify is a `DataError` naming it."""
    try:
        with _open(path, max_pixels) as img:
            return img.size[1], img.size[0]
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - see _unreadable
        raise _unreadable(path, err) from err


def read_rgb(path: Path | str | IO[bytes], max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file to uint8 (H, W, 3) RGB, or raise `DataError` naming the file (also for a header
    that claims more than ``max_pixels`` pixels, before decoding)."""
    try:
        with _open(path, max_pixels) as img:
            img.load()
            return np.array(img.convert("RGB"))
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - see _unreadable
        raise _unreadable(path, err) from err
