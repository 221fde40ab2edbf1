"""Colormaps and comparison grids."""

from depthforge.viz.colormap import color_range, colorize, comparison_row, with_colorbar

__all__ = ["color_range", "colorize", "comparison_row", "with_colorbar"]
