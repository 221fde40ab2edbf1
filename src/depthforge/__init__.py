"""depthforge: train, evaluate and run supervised monocular depth estimation models."""

__version__ = "0.1.0"
