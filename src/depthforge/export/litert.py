"""LiteRT (TFLite) for Android and embedded Linux: ``depthforge export --format litert``.

Converted with ``litert-torch``, Google's maintained PyTorch-to-LiteRT converter (torch.export, then LiteRT's own
MLIR passes: no ONNX or TensorFlow step whose operators could drift from torch's), from the end-to-end model
(`depthforge.export.app.EndToEnd`) at a fixed input size, in the layout Android's bitmaps have (NHWC: RGB / 255 in,
metres out at the same size). ``--quantize int8`` is LiteRT's dynamic-range INT8 (``ai-edge-quantizer``: INT8
weights, activations quantised on the fly: INT8 arithmetic), ``--quantize int8-weights`` weight-only INT8 (a
quarter of the file, fp32 arithmetic); docs/benchmarks/mobile.md has what each costs in RMSE.

The config, the caller's facts and the licences travel in the flatbuffer's own metadata table (read with
`read_tflite_metadata`); `LiteRTModel` runs the file through the LiteRT interpreter (``ai-edge-litert``) for
``predict`` / ``evaluate`` / ``depthforge.load``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from depthforge.config import Config, load_config
from depthforge.export.app import _Runner

# int8: dynamic range (INT8 weights, activations quantised on the fly: INT8 arithmetic); int8-weights: weight-only
# (INT8 weights dequantised to fp32 when loaded: a quarter of the file, fp32 arithmetic and accuracy)
QUANTIZE = {"int8": "dynamic-range INT8 (ai-edge-quantizer, dynamic, 8 bits): INT8 weights, activations quantised "
                    "on the fly, fp32 I/O",
            "int8-weights": "weight-only INT8 (ai-edge-quantizer, weight-only, 8 bits): INT8 weights computed in "
                            "fp32, fp32 I/O"}


def _tflite_schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def export_litert(model: nn.Module, cfg: Config, path: str | Path, input_size: tuple[int, int],
                  quantize: str | None = None, entries: dict[str, str] | None = None,
                  fp32: tuple[Path, dict[str, str]] | None = None) -> Path:
    """Write ``path`` (.tflite): the end-to-end model at ``input_size`` (H, W), NHWC float32 in and out, with
    ``entries`` (JSON strings) and the config in its metadata; written under a temporary name, then renamed.
    ``fp32`` (with ``quantize``): also write the converted file before quantisation there, with its own entries
    (one conversion for both files)."""
    try:
        import litert_torch
    except ImportError as err:
        raise ImportError("LiteRT export needs litert-torch: pip install 'depthforge[litert]'",
                          name="litert_torch") from err
    from depthforge.export.app import EndToEnd

    if quantize is not None and quantize not in QUANTIZE:
        raise ValueError(f"LiteRT quantisation '{quantize}': choose from {list(QUANTIZE)}")
    path = Path(path).with_suffix(".tflite")
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = ChannelsLast(EndToEnd(model.eval().cpu(), cfg, input_size)).eval()
    x = torch.rand(1, *input_size, 3)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.export's notes on the traced graph
        edge = litert_torch.convert(graph, sample_kwargs={"image": x})
    tmp = path.with_name(f".{path.stem}.tmp.tflite")
    edge.export(str(tmp))
    converted = tmp.read_bytes()
    config = {"depthforge_config": json.dumps(cfg.to_dict())}
    metadata = {**config, **(entries or {})}
    if quantize:
        metadata["depthforge_quantization"] = json.dumps({"mode": quantize, "how": QUANTIZE[quantize]})
    data = with_metadata(converted, metadata)  # before quantising: the quantiser keeps the table
    if quantize:
        data = _quantize_int8(data, weights_only=quantize == "int8-weights")
        if fp32 is not None:
            _write(fp32[0], with_metadata(converted, {**config, **fp32[1]}))
    _write(path, data)  # over the converter's temporary file
    return path


def _write(path: Path, data: bytes) -> None:
    """``data`` to ``path`` through a temporary file beside it (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.stem}.tmp.tflite")
    tmp.write_bytes(data)
    tmp.replace(path)


class ChannelsLast(nn.Module):
    """NHWC in and out around an NCHW model (an input named ``image``: the signature's name in the file)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


# The layers whose weights become INT8: the network's. The resize's matrix products (BATCH_MATMUL) stay fp32:
# LiteRT has no kernel for an INT8 constant on their left, and INT8 resize weights would move every pixel.
INT8_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_TRANSPOSE", "FULLY_CONNECTED")


def _quantize_int8(data: bytes, weights_only: bool = False) -> bytes:
    from ai_edge_quantizer import quantizer, recipe_manager

    manager = recipe_manager.RecipeManager()
    add = manager.add_weight_only_config if weights_only else manager.add_dynamic_config
    for op in INT8_OPS:
        add(regex=".*", operation_name=op, num_bits=8)
    q = quantizer.Quantizer(bytearray(data))
    q.load_quantization_recipe(manager.get_quantization_recipe())
    return bytes(q.quantize().quantized_model)


def with_metadata(data: bytes, entries: dict[str, str]) -> bytes:
    """A .tflite flatbuffer with ``entries`` (name -> JSON string) added to, or replaced in, its metadata table (each
    entry a buffer, as TFLite's own metadata is stored)."""
    import flatbuffers
    import numpy as np

    schema = _tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    model.metadata = [m for m in (model.metadata or []) if _name(m.name) not in entries]
    for name, value in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(value.encode(), dtype=np.uint8)
        model.buffers.append(buffer)
        meta = schema.MetadataT()
        meta.name, meta.buffer = name, len(model.buffers) - 1
        model.metadata.append(meta)
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _name(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def read_tflite_metadata(path: str | Path) -> dict:
    """The depthforge entries of a .tflite file's metadata, decoded."""
    schema = _tflite_schema()
    buf = Path(path).read_bytes()
    model = schema.Model.GetRootAs(buf, 0)
    found = {}
    for i in range(model.MetadataLength()):
        meta = model.Metadata(i)
        name = _name(meta.Name())
        if name.startswith("depthforge"):
            buffer = model.Buffers(meta.Buffer())
            if buffer.Offset() > 1:  # stored after the flatbuffer (the quantiser writes its buffers so)
                raw = buf[buffer.Offset():buffer.Offset() + buffer.Size()]
            else:
                raw = buffer.DataAsNumpy().tobytes()
            found[name] = json.loads(raw.decode())
    return found


class LiteRTModel(_Runner):
    """A .tflite file written by ``depthforge export --format litert``, run by the LiteRT interpreter: behaves like
    the other exported runners (RGB (N, 3, H, W) in [0, 1] in, metres (N, 1, H, W) out), end to end. The file
    has a fixed input size: other sizes are resized to it (antialiased bilinear) and the depth back, as an app
    does."""

    end_to_end = True

    def __init__(self, path: str | Path, threads: int | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as err:
            raise ImportError("running a .tflite file needs ai-edge-litert: pip install 'depthforge[litert]'",
                              name="ai_edge_litert") from err
        self.path = str(path)
        meta = read_tflite_metadata(path)
        self.config = load_config(base=meta["depthforge_config"]) if "depthforge_config" in meta else None
        self.facts = meta.get("depthforge_model", {})
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.size = tuple(int(d) for d in self.input["shape"][1:3])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        x = x.detach().cpu().float()
        if size != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        depths = []
        for image in x.permute(0, 2, 3, 1).contiguous().numpy():  # the file's batch is 1
            self.interpreter.set_tensor(self.input["index"], image[None])
            self.interpreter.invoke()
            depths.append(torch.from_numpy(self.interpreter.get_tensor(self.output["index"]).copy()))
        depth = torch.cat(depths).permute(0, 3, 1, 2)
        if size != self.size:
            depth = F.interpolate(depth, size=size, mode="bilinear", align_corners=False)
        return depth
