"""INT8 ONNX models through ONNX Runtime's quantisation tools, with what they cost in accuracy written inside.

- ``static``: weights per channel and activations quantised in the QDQ format, activation ranges calibrated on real
  images of the model's data (``calibration`` samples, fed at the training geometry the model runs at).
- ``dynamic``: weights only, activation ranges computed at run time (no calibration data; helps MatMul-heavy
  models such as ViTs much more than convolutional ones).

The exported file's metadata records the quantisation (``depthforge_quantization``); ``record_accuracy`` adds the
measured fp32 -> int8 metric deltas (``depthforge_accuracy``) once the caller has scored both.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from depthforge.config import Config
from depthforge.data.transforms import model_input
from depthforge.io import IMAGE_SUFFIXES, DataError, read_rgb

MODES = ("static", "dynamic")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
EXCLUDES = ("none", "ends", "decoder")


def calibration_images(folder: str | Path, n: int) -> list[torch.Tensor]:
    """Up to ``n`` images (3, H, W) in [0, 1] from a folder (sorted), for static calibration; a clear error when
    there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: calibration folder not found; give a folder of a few hundred images like the "
                        "model's inputs (e.g. its training images)")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:n]
    if not paths:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) to calibrate on; give a folder of a few "
                        "hundred images like the model's inputs")
    return [torch.from_numpy(np.ascontiguousarray(read_rgb(p))).permute(2, 0, 1).float() / 255 for p in paths]


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol: one ``{"image": batch}`` per call, None at the end."""

    def __init__(self, images: Iterable[torch.Tensor], cfg: Config):
        self._batches = [{"image": model_input(x[None], cfg.data).numpy()} for x in images]
        self._it = iter(self._batches)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self._batches)


def set_metadata(path: Path, entries: dict[str, str]) -> None:
    """Add or replace metadata entries (JSON strings) of an ONNX file, or the runtime info of an OpenVINO IR."""
    if Path(path).suffix in (".tflite", ".mlpackage"):
        raise ValueError(f"{path}: LiteRT and Core ML files get their metadata when they are written")
    if Path(path).suffix == ".xml":
        import openvino as ov

        from depthforge.export.onnx import save_ir

        ir = ov.Core().read_model(str(path))
        for key, value in entries.items():
            ir.set_rt_info(value, key)
        save_ir(ir, path)
        return
    import onnx

    proto = onnx.load(str(path))
    for entry in list(proto.metadata_props):
        if entry.key in entries:
            proto.metadata_props.remove(entry)
    for key, value in entries.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def decoder_nodes(path: str | Path) -> list[str]:
    """Names of every node outside the encoder (the exported module path ``/encoder/...``): the decoder, the head
    and the shape arithmetic around them, so that only the encoder runs in INT8."""
    import onnx

    nodes = onnx.load(str(path)).graph.node
    encoder = ("/encoder/", "/model/encoder/")  # the network alone, or inside the end-to-end graph's resizes
    if not any(n.name.startswith(encoder) for n in nodes):
        raise ValueError(f"{path}: no node named /encoder/...; export it with depthforge export to keep the names")
    return [n.name for n in nodes if not n.name.startswith(encoder)]


def end_nodes(path: str | Path) -> list[str]:
    """Names of the first convolution and of every node from the last convolution on (the depth head and what
    follows it): the layers whose quantisation error reaches the depth most directly."""
    import onnx

    nodes = onnx.load(str(path)).graph.node
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    if not convs:
        return []
    names = [nodes[convs[0]].name] + [n.name for n in nodes[convs[-1]:]]
    if not all(names):
        raise ValueError(f"{path}: unnamed nodes; export it with depthforge export to name them")
    return names


def block_of(node_name: str) -> str:
    """The block a node belongs to: its module path without the last module (``/encoder/model/blocks.3/blocks.3.1``
    for ``/encoder/model/blocks.3/blocks.3.1/conv_dw/Conv``: one MBConv or residual block, one decoder layer);
    ``/`` for the model's own top-level operations (e.g. the depth scaling after the head)."""
    modules = node_name.strip("/").split("/")[:-1]
    return "/" + "/".join(modules[:-1] if len(modules) > 1 else modules)


def blocks(path: str | Path) -> dict[str, list[str]]:
    """Every node name by `block_of`, blocks in graph order: the units whose INT8 error the sensitivity
    report measures one at a time (together they cover the graph, so keeping all of them in fp32 is fp32)."""
    import onnx

    grouped: dict[str, list[str]] = {}
    for node in onnx.load(str(path)).graph.node:
        if not node.name:
            raise ValueError(f"{path}: unnamed nodes; export it with depthforge export to name them")
        grouped.setdefault(block_of(node.name), []).append(node.name)
    return grouped


def quant_pre_process_model(fp32: str | Path, out: str | Path) -> Path:
    """Shape inference and graph clean-up, as ONNX Runtime recommends before quantising; the names stay."""
    from onnxruntime.quantization import quant_pre_process

    quant_pre_process(str(fp32), str(out), skip_symbolic_shape=True)
    return Path(out)


def quantize_onnx(fp32: str | Path, out: str | Path, cfg: Config, mode: str = "static",
                  images: list[torch.Tensor] | None = None, calibration_method: str = "minmax",
                  exclude: str = "none", keep_fp32: list[str] | None = None,
                  only: list[str] | None = None, preprocess: bool = True) -> Path:
    """Write the INT8 model of the fp32 ONNX file ``fp32`` to ``out``; its metadata says how it was made.

    ``calibration_method`` (static): one of `CALIBRATION_METHODS`; ``exclude``: ``none``, ``ends``
    (`end_nodes` stay fp32) or ``decoder`` (`decoder_nodes` stay fp32: only the encoder is INT8);
    ``keep_fp32``: more node names kept in fp32 (e.g. the blocks the sensitivity report chose); ``only``: quantise
    these nodes and no other (one block at a time, for the sensitivity report); ``preprocess=False``: ``fp32`` has
    been through `quant_pre_process_model` already (the sensitivity report does it once for its many files)."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    if mode not in MODES:
        raise ValueError(f"quantisation mode '{mode}': choose from {MODES}")
    if calibration_method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method '{calibration_method}': choose from {CALIBRATION_METHODS}")
    if exclude not in EXCLUDES:
        raise ValueError(f"exclude '{exclude}': choose from {EXCLUDES}")
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[calibration_method]
    skipped: list[str] = []
    fp32, out = Path(fp32), Path(out)
    prepared = out.with_name(out.stem + ".pre.onnx") if preprocess else fp32
    try:
        if preprocess:
            quant_pre_process_model(fp32, prepared)
        skipped = {"none": lambda _: [], "ends": end_nodes, "decoder": decoder_nodes}[exclude](prepared)
        skipped = list(dict.fromkeys([*skipped, *(keep_fp32 or [])]))
        if mode == "static":
            if not images:
                raise DataError("static INT8 needs calibration images (e.g. --calibration DIR)")
            quantize_static(str(prepared), str(out), _Reader(images, cfg), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=method, nodes_to_exclude=skipped, nodes_to_quantize=only)
        else:
            quantize_dynamic(str(prepared), str(out), per_channel=True, weight_type=QuantType.QInt8,
                             nodes_to_exclude=skipped, nodes_to_quantize=only)
    finally:
        if preprocess:
            prepared.unlink(missing_ok=True)
    import onnx

    inherited = {e.key: e.value for e in onnx.load(str(fp32)).metadata_props}  # the depthforge config
    set_metadata(out, {**inherited, "depthforge_quantization": json.dumps({
        "mode": mode, "format": "QDQ" if mode == "static" else "dynamic (QOperator)", "weights": "int8 per channel",
        "activations": f"uint8, {calibration_method}-calibrated" if mode == "static" else "computed at run time",
        "calibration_images": len(images or []) if mode == "static" else 0,
        "calibration_method": calibration_method if mode == "static" else None,
        "excluded": exclude, "excluded_nodes": len(skipped), "kept_fp32": sorted({block_of(n) for n in keep_fp32 or []}),
        "only_nodes": len(only) if only is not None else None})})
    return out


def record_accuracy(path: str | Path, fp32: dict, int8: dict, protocol: str, split: str, n: int) -> dict:
    """Store the scored metrics of both models and their difference in the INT8 file; return that record."""
    delta = {k: int8[k] - fp32[k] for k in fp32 if k in int8 and fp32[k] == fp32[k] and int8[k] == int8[k]}
    record = {"protocol": protocol, "split": split, "n": n, "fp32": fp32, "int8": int8, "delta": delta}
    set_metadata(Path(path), {"depthforge_accuracy": json.dumps(record)})
    return record


def read_metadata(path: str | Path) -> dict:
    """The depthforge entries of an ONNX file's metadata (an OpenVINO IR's runtime info, a LiteRT file's metadata
    table, a Core ML package's user-defined metadata), decoded."""
    if Path(path).suffix == ".tflite":
        from depthforge.export.litert import read_tflite_metadata

        return read_tflite_metadata(path)
    if Path(path).suffix == ".mlpackage":
        from depthforge.export.coreml import read_coreml_metadata

        return read_coreml_metadata(path)
    if Path(path).suffix == ".xml":
        import openvino as ov

        info = ov.Core().read_model(str(path)).get_rt_info()
        return {k: json.loads(info[k].astype(str)) for k in info if str(k).startswith("depthforge")}
    import onnx

    return {e.key: json.loads(e.value) for e in onnx.load(str(path)).metadata_props if e.key.startswith("depthforge")}


# OpenVINO INT8 (``export --format openvino --quantize int8``): NNCF's post-training quantisation of the IR itself,
# which OpenVINO's CPU plugin runs with INT8 kernels. Full bias correction (not NNCF's fast default): on the recipe
# and real-time models it took the val RMSE change from +0.034 / +0.018 m to -0.011 / +0.013 m (docs/benchmarks/int8.md).
OV_WEIGHTED = ("Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData")


def ir_layers(ir) -> tuple[list[str], list[str]]:
    """The weighted layers (convolutions, matrix products) of an OpenVINO model, split into those whose weights are
    INT8 (an int8 constant or a FakeQuantize on the weight path) and those left in fp32, in graph order."""
    int8, fp32 = [], []
    for op in ir.get_ordered_ops():
        if op.get_type_name() not in OV_WEIGHTED:
            continue
        node, quantised = op.input_value(1).get_node(), False
        while True:
            kind = node.get_type_name()
            if kind == "FakeQuantize" or (kind == "Constant" and node.get_element_type().is_integral()):
                quantised = True
            if kind in ("FakeQuantize", "Constant", "Parameter") or not node.get_input_size():
                break
            node = node.input_value(0).get_node()
        (int8 if quantised else fp32).append(op.get_friendly_name())
    return int8, fp32


def quantised_ops(ir) -> set[str]:
    """The operations of an OpenVINO model that take INT8 input: a FakeQuantize on an input, or INT8 weights."""
    weighted = set(ir_layers(ir)[0])
    return {op.get_friendly_name() for op in ir.get_ordered_ops() if op.get_type_name() != "FakeQuantize" and (
        op.get_friendly_name() in weighted or
        any(v.get_node().get_type_name() == "FakeQuantize" for v in op.input_values()))}


def quantize_openvino(fp32: str | Path, out: str | Path, cfg: Config, images: list[torch.Tensor],
                      rmse=None, budget: float | None = None, selection: list[int] | None = None) -> Path:
    """Write the INT8 OpenVINO IR of the fp32 IR ``fp32`` to ``out`` with NNCF, calibrated on ``images`` (3, H, W)
    fed at the training geometry; its runtime info says how it was made.

    With a ``budget`` (m of RMSE): NNCF's accuracy-controlled quantisation, which puts the layers that cost the most
    back into fp32 until ``rmse(runner, indices)`` (a runner's RMSE on those of the ``selection`` indices) is within
    ``budget`` of the fp32 model's."""
    try:
        import nncf
        import openvino as ov
    except ImportError as err:
        raise ImportError("OpenVINO INT8 needs openvino and NNCF: pip install 'depthforge[openvino]'") from err
    ir = ov.Core().read_model(str(fp32))
    calibration = nncf.Dataset([model_input(x[None], cfg.data).numpy() for x in images])
    common = {"subset_size": len(images), "fast_bias_correction": False}
    if budget is None:
        quantised, kept = nncf.quantize(ir, calibration, **common), []
    else:
        from depthforge.export.onnx import OpenVINOModel

        def score(compiled, indices) -> float:  # NNCF maximises its metric
            return -rmse(OpenVINOModel.of(compiled, cfg), list(indices))

        # Where all-INT8 puts its quantisers (the placement needs no statistics: one image, no bias correction), to
        # name what the accuracy control kept in fp32
        placed = nncf.quantize(ir, calibration, subset_size=1, advanced_parameters=(
            nncf.AdvancedQuantizationParameters(disable_bias_correction=True)))
        quantised = nncf.quantize_with_accuracy_control(
            ir, calibration, nncf.Dataset(list(selection)), score, max_drop=budget,
            drop_type=nncf.DropType.ABSOLUTE, **common)
        kept = sorted(quantised_ops(placed) - quantised_ops(quantised))
    int8 = ir_layers(quantised)[0]
    quantised.set_rt_info(json.dumps(cfg.to_dict()), "depthforge_config")
    quantised.set_rt_info(json.dumps({
        "mode": "static", "format": "OpenVINO IR (NNCF post-training quantisation)", "weights": "int8 per channel",
        "activations": "int8, min-max calibrated, full bias correction", "calibration_images": len(images),
        "int8_layers": len(int8), "kept_fp32": kept, "budget_m": budget,
        "accuracy_control": budget is not None}), "depthforge_quantization")
    from depthforge.export.onnx import save_ir

    return save_ir(quantised, out)
