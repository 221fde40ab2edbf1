"""depthforge: train, evaluate and run supervised monocular depth estimation models.

The layers and what each may import: ARCHITECTURE.md at the repository root.
"""

__version__ = "0.1.0"

# Public shortcuts resolved on first use (PEP 562), so `import depthforge` stays light.
_LAZY = {"load": "depthforge.inference.sources", "DepthSource": "depthforge.inference.sources"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'depthforge' has no attribute {name!r}")
