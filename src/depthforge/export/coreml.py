"""Core ML for iPhone, iPad and Mac: ``depthforge export --format coreml``.

coremltools converts the end-to-end model (`depthforge.export.app.EndToEnd`, through torch.export: its static
shapes leave no shape arithmetic) to an ML program (``.mlpackage``, iOS 16 / macOS 13 or later) at a fixed input
size, fp16 (what the Neural Engine runs) or fp32. Its input is an image (``CVPixelBuffer`` / ``CGImage``, RGB,
scaled by 1/255 inside the model), its output ``depth`` an (1, 1, H, W) array of metres; the input description,
the author, the licence and depthforge's facts are in the package's metadata.

Core ML runs only on Apple systems: on Linux coremltools converts and reads a package but cannot run it.
`check_coreml` verifies what can be verified without a Mac (see its docstring); the numbers a Mac would produce are
not checked here (docs/mobile.md says so where it shows the Swift code).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from depthforge.config import Config

PRECISIONS = ("fp16", "fp32")


def _coremltools():
    try:
        import coremltools as ct
    except ImportError as err:
        raise ImportError("Core ML export needs coremltools: pip install 'depthforge[coreml]'",
                          name="coremltools") from err
    return ct


def export_coreml(model: nn.Module, cfg: Config, path: str | Path, input_size: tuple[int, int],
                  precision: str = "fp16", entries: dict[str, str] | None = None) -> Path:
    """Write ``path`` (.mlpackage): the end-to-end model at ``input_size`` (H, W), an RGB image in, metres out,
    ``entries`` (JSON strings) and the config in its user-defined metadata; built beside it, then renamed."""
    import logging

    ct = _coremltools()
    from depthforge.export.app import EndToEnd

    if precision not in PRECISIONS:
        raise ValueError(f"Core ML precision '{precision}': choose from {PRECISIONS}")
    path = Path(path).with_suffix(".mlpackage")
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = EndToEnd(model.eval().cpu(), cfg, input_size).eval()
    h, w = input_size
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.export.export(graph, (torch.rand(1, 3, h, w),)).run_decompositions({})
    _clone_aliases(program)
    logging.getLogger("coremltools").setLevel(logging.ERROR)  # "torch version not tested" on every call
    ml = ct.convert(program, inputs=[ct.ImageType(name="image", shape=(1, 3, h, w), scale=1 / 255.0,
                                                  color_layout=ct.colorlayout.RGB)],
                    outputs=[ct.TensorType(name="depth")], convert_to="mlprogram",
                    minimum_deployment_target=ct.target.iOS16,
                    compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32)
    facts = json.loads((entries or {}).get("depthforge_model", "{}"))
    ml.author = "depthforge export"
    ml.short_description = (f"Metric depth ({cfg.model.name}, up to {cfg.data.max_depth:g} m) from an RGB image "
                            f"of {w}x{h}; depthforge")
    ml.license = "; ".join(f"{r.get('of', '?')}: {r.get('license', 'unknown')}"
                           for r in facts.get("licenses", [])) or "unknown"
    ml.input_description["image"] = (f"RGB image, {w}x{h} (width x height); the model scales pixels by 1/255 and "
                                      "resizes to its training geometry itself")
    ml.output_description["depth"] = f"depth in metres, (1, 1, {h}, {w}), {precision}"
    ml.user_defined_metadata["depthforge_config"] = json.dumps(cfg.to_dict())
    ml.user_defined_metadata["depthforge_precision"] = json.dumps(precision)
    for key, value in (entries or {}).items():
        ml.user_defined_metadata[key] = value
    tmp = path.with_name(f".{path.stem}.tmp.mlpackage")
    shutil.rmtree(tmp, ignore_errors=True)
    ml.save(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


def _clone_aliases(program) -> None:
    """Turn ``aten.alias`` nodes (a slice that keeps the whole tensor, the padding's ``[..., :h, :w]`` at a size
    already a multiple of the network's, is exported as one), which coremltools' frontend refuses, into the copy it
    converts (``aten.clone``): the same values, and the node keeps its name, which the program's outputs use."""
    for node in program.graph_module.graph.nodes:
        if node.op == "call_function" and node.target == torch.ops.aten.alias.default:
            node.target = torch.ops.aten.clone.default
    program.graph_module.recompile()


def read_coreml_metadata(path: str | Path) -> dict:
    """The depthforge entries of an .mlpackage's user-defined metadata, decoded (no Mac needed)."""
    ct = _coremltools()
    spec = ct.utils.load_spec(str(path))
    return {k: json.loads(v) for k, v in spec.description.metadata.userDefined.items() if k.startswith("depthforge")}


def check_coreml(path: str | Path, model: nn.Module) -> dict:
    """What can be checked of an .mlpackage without a Mac, against the PyTorch ``model`` it was made from; an
    AssertionError naming the first mismatch. Returns the figures:

    - it loads back as a valid ML program (coremltools parses and validates the spec);
    - its input is an RGB image of the size in its facts, scaled by 1/255, and its output ``depth``;
    - every convolution of the PyTorch model is in the program, with the same weight shapes (batch norms are
      folded into them, so their values differ), and the weights of the convolutions that have no batch norm after
      them (the depth head) are the PyTorch ones to the package's precision (fp32: exactly; fp16: within its
      rounding, 2^-11 of the value);
    - the metadata holds the config and the caller's facts.

    Not checked: the numbers Core ML computes (it runs only on Apple systems)."""
    ct = _coremltools()
    from coremltools.optimize.coreml import get_weights_metadata

    ml = ct.models.MLModel(str(path), skip_model_load=True)
    spec = ml.get_spec()
    assert spec.WhichOneof("Type") == "mlProgram", f"{path}: not an ML program"
    meta = {k: json.loads(v) for k, v in spec.description.metadata.userDefined.items() if k.startswith("depthforge")}
    assert "depthforge_config" in meta and "depthforge_model" in meta, f"{path}: no depthforge metadata"
    (image,), (depth,) = spec.description.input, spec.description.output
    size = [image.type.imageType.height, image.type.imageType.width]
    assert image.name == "image" and size == meta["depthforge_model"]["input"]["size"], f"{path}: input {size}"
    assert depth.name == "depth", f"{path}: output {depth.name}"
    precision = meta.get("depthforge_precision", "fp16")
    weights = get_weights_metadata(ml, weight_threshold=0)
    program_convs = [m.val for m in weights.values()
                     if any(c.op_type == "conv" and c.params_name_mapping.get("weight") is not None
                            for c in m.child_ops) and np.ndim(m.val) == 4]
    torch_convs = [m.weight.detach().numpy() for m in model.modules() if isinstance(m, nn.Conv2d)]
    shapes = sorted(tuple(w.shape) for w in program_convs), sorted(tuple(w.shape) for w in torch_convs)
    assert shapes[0] == shapes[1], f"{path}: {len(program_convs)} convolutions, PyTorch has {len(torch_convs)}"
    tol = 0.0 if precision == "fp32" else 2.0 ** -11

    def in_program(w: np.ndarray) -> bool:  # a PyTorch weight found in the program, to the package's precision
        return any(v.shape == w.shape and np.all(np.abs(v.astype(np.float64) - w) <= tol * np.abs(w) + 1e-12)
                   for v in program_convs)

    matched = sum(in_program(w) for w in torch_convs)
    head = getattr(getattr(model, "head", None), "conv", None)
    if isinstance(head, nn.Conv2d):
        assert in_program(head.weight.detach().numpy()), f"{path}: the depth head's weights are not the PyTorch ones"
    return {"convolutions": len(program_convs), "weights_equal": matched, "precision": precision,
            "input_size": size, "spec_version": spec.specificationVersion}
