"""depthforge: train, evaluate and run supervised monocular depth estimation models.

The layers and what each may import: ARCHITECTURE.md at the repository root.
"""

__version__ = "0.1.0"
