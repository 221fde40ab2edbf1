"""File formats, the bottom layer: depth (npy, 16-bit PNG, PFM, EXR) with JSON sidecars, and RGB images.

Depth is metres once read; a format's scale factor lives in its reader. Nothing here imports another depthforge
package, so data sets, inference and evaluation all read and write files the same way.
"""

from depthforge.io.depth import (DEPTH_SUFFIXES, FORMATS, read_depth, read_depth_file, read_npy_depth, read_sidecar,
                                 write_depth)
from depthforge.io.errors import DataError, shown
from depthforge.io.images import IMAGE_SUFFIXES, MAX_PIXELS, image_size, read_rgb

__all__ = ["DEPTH_SUFFIXES", "FORMATS", "IMAGE_SUFFIXES", "MAX_PIXELS", "DataError", "image_size", "read_depth",
           "read_depth_file", "read_npy_depth", "read_rgb", "read_sidecar", "shown", "write_depth"]
