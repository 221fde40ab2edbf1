"""Reading RGB images: every suffix the data sets and ``predict`` accept, decoded by Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from depthforge.io.errors import DataError

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to uint8 (H, W, 3) RGB, or raise :class:`DataError` naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            return np.array(img.convert("RGB"))
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable image ({err}); re-export it as JPEG/PNG or remove the pair "
                        "(or pass data.skip_invalid=true to skip such samples)") from err
