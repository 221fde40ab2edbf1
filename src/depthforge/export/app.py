"""The model an app calls: the network with depthforge's geometry around it, and the facts a caller needs.

`EndToEnd` is what `depthforge export` writes for ONNX, LiteRT, Core ML and the web page: RGB in ``[0, 1]``
(N, 3, H, W) in, depth in metres (N, 1, H, W) out at the same size, computed as ``depthforge predict`` computes it
(no flip, one scale): the image resized to the training geometry (``data.resize_short``; a model trained at native
size runs at the image's own), the network (its ImageNet normalisation and its depth head's scaling to metres are
inside it), and the depth resized back. A phone app passes pixels / 255 and reads metres; nothing else to rewrite.

The image is resized as two matrix products with torch's own antialiased bilinear weights (`resize_weights`):
no converter here lowers torch's antialiased resize (LiteRT, Core ML and ONNX's TorchScript exporter all refuse it;
ONNX Runtime's antialiased Resize differs from torch by 1e-3 m), and a matrix product is one operation every
runtime has. Static sizes (LiteRT, Core ML: ``input_size``) hold the weights as constants; dynamic ones (ONNX)
compute them in the graph from the input's shape.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn

from depthforge.config import Config

IO_KEY = "depthforge_model"  # the facts entry in an exported file's metadata


def net_size(size: tuple[int, int], resize_short: int | None) -> tuple[int, int]:
    """The size the network sees for an image of ``size``: `depthforge.data.transforms.model_input`'s rule."""
    if not resize_short:
        return tuple(size)
    scale = resize_short / min(size)
    return round(size[0] * scale), round(size[1] * scale)


def resize_weights(n_in, n_out) -> torch.Tensor:
    """(n_out, n_in) weights of torch's bilinear resize along one axis, antialiased when it shrinks (the triangle
    filter stretched by the scale, cut to torch's window and normalised, as aten's ``_upsample_bilinear2d_aa``),
    so that ``W @ x`` equals ``F.interpolate``. Written in tensor operations: with sizes read from a traced
    input's shape it exports as a dynamic ONNX graph (the exporters have no antialiased Resize of torch's)."""
    n_in, n_out = torch.as_tensor(n_in), torch.as_tensor(n_out)
    scale = n_in.double() / n_out.double()
    support = torch.clamp(scale, min=1.0)  # the filter's half-width in input pixels (1 when enlarging)
    center = scale * (torch.arange(n_out).double() + 0.5)
    j = torch.arange(n_in).double()
    lo = torch.clamp(torch.floor(center - support + 0.5), min=0)  # aten truncates: the same once clamped at 0
    hi = torch.minimum(torch.floor(center + support + 0.5), n_in.double())
    w = torch.clamp(1 - ((j[None] - center[:, None] + 0.5) / support).abs(), min=0)
    w = w * ((j[None] >= lo[:, None]) & (j[None] < hi[:, None]))
    return (w / w.sum(1, keepdim=True)).float()


def resize_image(image: torch.Tensor, rows: torch.Tensor, cols_t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) resized by the weights of `resize_weights`: rows (h, H) and transposed columns (W, w)."""
    return torch.matmul(torch.matmul(rows, image), cols_t)


class EndToEnd(nn.Module):
    """``model`` with the prediction pipeline's resizes inside (see the module's docstring).

    ``input_size``: (H, W) of a static-size export (its resizes precomputed); None: any size (ONNX)."""

    def __init__(self, model: nn.Module, cfg: Config, input_size: tuple[int, int] | None = None):
        super().__init__()
        self.model = model
        self.resize_short = cfg.data.resize_short
        self.input_size = tuple(input_size) if input_size else None
        if self.input_size:
            h, w = net_size(self.input_size, self.resize_short)
            self.inner = (h, w)
            self.register_buffer("rows", resize_weights(self.input_size[0], h), persistent=False)
            self.register_buffer("cols_t", resize_weights(self.input_size[1], w).T.contiguous(), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.input_size:
            x = image
            if self.inner != self.input_size:
                x = resize_image(image, self.rows, self.cols_t)
            depth = self.model(x)
            if tuple(depth.shape[-2:]) != self.input_size:
                depth = F.interpolate(depth, size=self.input_size, mode="bilinear", align_corners=False)
            return depth
        size = image.shape[-2:]
        x = image
        if self.resize_short:
            scale = self.resize_short / torch.minimum(torch.as_tensor(size[0]), torch.as_tensor(size[1])).double()
            h, w = torch.round(size[0] * scale).long(), torch.round(size[1] * scale).long()  # model_input's rule
            x = resize_image(image, resize_weights(size[0], h), resize_weights(size[1], w).T)
        depth = self.model(x)
        if self.resize_short or tuple(depth.shape[-2:]) != tuple(size):  # a network that keeps the size: no resize
            depth = F.interpolate(depth, size=size, mode="bilinear", align_corners=False)
        return depth


def model_facts(cfg: Config, input_size: tuple[int, int] | None, fmt: str, licenses: list[dict] | None = None,
                **extra) -> dict:
    """What a caller of the exported file needs, stored in its own metadata (``depthforge_model``)."""
    from depthforge.version import __version__

    size = list(input_size) if input_size else "any (H, W); the depth comes back at the same size"
    return {
        "format": fmt,
        "input": {"name": "image", "layout": "NCHW", "channels": "RGB", "dtype": "float32",
                  "values": "pixel / 255, in [0, 1]; the ImageNet normalisation is inside the model", "size": size},
        "output": {"name": "depth", "layout": "N1HW", "dtype": "float32", "units": "metres",
                   "size": "the input's"},
        "kind": "metric",
        "max_depth_m": cfg.data.max_depth,
        "model": cfg.model.name,
        "training_geometry": {"resize_short": cfg.data.resize_short,
                              "note": "resized inside the model: feed the photo as it is"},
        "licenses": licenses or [],
        "depthforge_version": __version__,
        **extra,
    }


def facts_json(facts: dict) -> str:
    return json.dumps(facts, sort_keys=True)


class _Runner:
    """What every exported-model runner shares: behaves like an eager model in eval mode on the CPU."""

    config: Config | None
    end_to_end: bool = False  # the file resizes to its training geometry itself (`depthforge.export.app`)
    path: str | None = None

    def eval(self):
        return self

    def to(self, *_args, **_kwargs):
        return self
