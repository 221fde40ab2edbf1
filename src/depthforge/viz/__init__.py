"""Colormaps and comparison grids."""

from depthforge.viz.colormap import colorize, comparison_row

__all__ = ["colorize", "comparison_row"]
