"""``depthforge demo``: a local web app (Gradio) to try any depth source on photos and videos, and to measure with it.

The page: upload an image (or pick a bundled example rendered by the synthetic scene generator), choose the model,
colour map, range and flip TTA; see input | depth as a before/after slider with a legend in metres; download the raw
16-bit PNG (with its scale), ``.npy``, the JSON sidecar and a coloured point cloud (PLY), and look at it in 3D (GLB).
Click two points for their 3D distance (intrinsics shown and editable); enter one known distance to rescale a
relative model. A video tab writes a side-by-side depth video of the first frames.

Limits that keep it up: uploads above ``max_upload_mb`` are refused by the server, images larger than ``max_side``
are downscaled (the page says so), one job runs at a time (a bounded queue), every file is written under one
temporary folder, and it binds to 127.0.0.1 unless told otherwise. Needs the ``demo`` extra (gradio, trimesh).
"""

from depthforge.demo.app import DemoApp, Result, default_sources, example_images, read_upload
from depthforge.demo.page import build_ui, launch

__all__ = ["DemoApp", "Result", "build_ui", "default_sources", "example_images", "launch", "read_upload"]
