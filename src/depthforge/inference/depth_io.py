"""Depth file formats moved to :mod:`depthforge.io`; this name stays so existing imports keep working."""

from depthforge.io.depth import FORMATS, SUFFIX, read_depth, read_pfm, write_depth, write_pfm

__all__ = ["FORMATS", "SUFFIX", "read_depth", "read_pfm", "write_depth", "write_pfm"]
