"""depthforge: train, evaluate and run supervised monocular depth estimation models.

The Python API:

```python
import depthforge

m = depthforge.load("runs/quickstart/checkpoints/best.ckpt")   # or .onnx, hf:..., marigold:..., a shared folder
result = m.predict("photo.jpg")                                  # a DepthResult
result.depth, result.kind, result.intrinsics                     # metres (H, W), "metric", the camera
result.save("out", formats=["npy", "png16"], ply=True)
```

The package root is the top layer's face (ARCHITECTURE.md): its names resolve on first use (PEP 562), so
``import depthforge`` stays light and the command line starts fast.
"""

from depthforge.version import __version__

# Public names and the module that holds each; imported on first use.
_PUBLIC = {"load": "depthforge.predict", "Pipeline": "depthforge.predict", "DepthResult": "depthforge.predict",
           "save_predictions": "depthforge.predict", "DepthSource": "depthforge.sources", "train": "depthforge.engine",
           "Client": "depthforge.predict.client", "LicensePolicyError": "depthforge.sources.licenses"}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'depthforge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
