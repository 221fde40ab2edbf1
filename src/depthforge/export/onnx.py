"""Export to ONNX (dynamic batch, height and width) and torch.export, each checked against eager PyTorch.

The resolved config travels inside the ONNX file (``metadata_props['depthforge_config']``), so an exported model
is fed at its training geometry without its checkpoint.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from depthforge.config import Config, load_config
from depthforge.export.app import _Runner

PARITY_SIZES = ((144, 256), (150, 250))
# float32 keeps about 7 significant digits and a network's long sums lose one or two: the quickstart model (20 m
# range) differed from eager by at most 9.2e-5 m in ONNX and 1.1e-4 m in OpenVINO, 5e-6 of its range. The limits are
# 1e-4 of the range at the worst pixel and 1e-5 at the 99th percentile; a wrong resize or a dropped depth scaling is
# metres off (tests/test_new_user_2.py checks both sides).
PARITY_P99, PARITY_MAX = 1e-5, 1e-4


class ParityError(AssertionError):
    """Exported and eager outputs differ by more than the tolerance."""


def export_onnx(model: nn.Module, path: str | Path, cfg: Config | None = None, opset: int = 17,
                entries: dict[str, str] | None = None) -> Path:
    """Write an ONNX graph with dynamic N/H/W (TorchScript-based exporter: no onnxscript dependency).

    With ``cfg`` the graph is end to end (`depthforge.export.app.EndToEnd`: the photo at any size in, metres at its
    size out, the training geometry's resize inside) and carries the config and the caller's facts
    (``depthforge_model``); without, it is the bare network (fed at the training geometry). ``entries`` (JSON
    strings) join or replace the metadata written with it (the CLI's licences and facts)."""
    import onnx

    from depthforge.export.app import IO_KEY, EndToEnd, facts_json, model_facts
    from depthforge.export.qat import qdq_export, quantizers

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    qat = bool(quantizers(model)) and qdq_export(model)  # a QAT model: its quantisers as QuantizeLinear pairs
    # a model trained at native size runs at the photo's own: its end-to-end graph is the network, names unchanged
    graph = EndToEnd(model, cfg).eval() if cfg is not None and cfg.data.resize_short else model
    x = torch.rand(1, 3, *PARITY_SIZES[0])
    dyn = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter warns about traced shape arithmetic it handles correctly
        torch.onnx.export(graph, (x,), str(path), input_names=["image"], output_names=["depth"],
                          dynamic_axes={"image": dyn, "depth": dyn}, opset_version=opset, dynamo=False)
    meta = {}
    if cfg is not None:
        meta = {"depthforge_config": json.dumps(cfg.to_dict()), IO_KEY: facts_json(model_facts(cfg, None, "onnx"))}
    if qat:
        meta["depthforge_qat"] = json.dumps({"quantizers": qat, "format": "QDQ (NNCF, trained ranges)"})
    meta.update(entries or {})
    if meta:
        proto = onnx.load(str(path))
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(path))
    return path


def export_openvino(model: nn.Module, path: str | Path, cfg: Config | None = None) -> Path:
    """OpenVINO IR (``.xml`` + ``.bin``) converted from the PyTorch model itself (``openvino.convert_model``), with
    dynamic batch, height and width and the config in its runtime info; a QAT model's quantisers become OpenVINO
    FakeQuantize operations, which its CPU plugin runs in INT8."""
    try:
        import openvino as ov
    except ImportError as err:
        raise ImportError("OpenVINO IR export needs openvino: pip install 'depthforge[openvino]'") from err
    path = Path(path).with_suffix(".xml")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracing warnings about shape arithmetic it handles
        ir = ov.convert_model(model, example_input=torch.rand(1, 3, *PARITY_SIZES[0]),
                              input=[ov.PartialShape([-1, 3, -1, -1])])
    if cfg is not None:
        ir.set_rt_info(json.dumps(cfg.to_dict()), "depthforge_config")
    from depthforge.export.qat import quantizers

    found = quantizers(model)
    if found:
        ir.set_rt_info(json.dumps({"quantizers": len(found)}), "depthforge_qat")
    save_ir(ir, path)
    return path


def save_ir(ir, path: str | Path) -> Path:
    """Write an OpenVINO model as ``path`` (.xml) + its .bin: both under temporary names, then renamed (the .bin
    first), so a failed write leaves any earlier pair whole and no half-written file; weights stay fp32."""
    import openvino as ov

    path = Path(path).with_suffix(".xml")
    tmp = path.with_name(f".{path.stem}.tmp.xml")
    ov.save_model(ir, str(tmp), compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
    tmp.replace(path)
    return path


ORT_OPT_LEVELS = ("disable", "basic", "extended", "all")
BACKENDS = ("onnxruntime", "openvino", "litert")


def onnx_config(path: str | Path) -> Config | None:
    """The depthforge config an exported file carries, or None."""
    import onnx

    meta = {e.key: e.value for e in onnx.load(str(path), load_external_data=False).metadata_props}
    return load_config(base=json.loads(meta["depthforge_config"])) if "depthforge_config" in meta else None


class OnnxModel(_Runner):
    """An ONNX Runtime session that behaves like the eager model: (N, 3, H, W) tensor in, depth tensor out.

    ``threads``: intra-op threads (default: ONNX Runtime's, one per core); ``opt_level``: graph optimisation level,
    one of `ORT_OPT_LEVELS` (``all``, the default, fuses the most)."""

    def __init__(self, path: str | Path, threads: int | None = None, opt_level: str = "all"):
        import onnxruntime as ort

        if opt_level not in ORT_OPT_LEVELS:
            raise ValueError(f"ONNX Runtime optimisation level '{opt_level}': choose from {ORT_OPT_LEVELS}")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[opt_level]
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.config = load_config(base=json.loads(meta["depthforge_config"])) if "depthforge_config" in meta else None
        self.path = str(path)
        self.end_to_end = "depthforge_model" in meta  # resizes inside itself: fed the photo as it is

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"image": x.detach().cpu().float().numpy()})[0]
        return torch.from_numpy(out)


class OpenVINOModel(_Runner):
    """The same ONNX file run by OpenVINO's CPU plugin (extra ``openvino``), through its ONNX frontend.

    ``precision``: OpenVINO's inference precision hint; ``f32`` (the default) keeps fp32 results, ``bf16`` lets
    CPUs with bfloat16 units trade accuracy for speed. An INT8 (QDQ) file is refused unless ``allow_int8``: OpenVINO
    ran it as INT8, fast, but with wrong depth on the recipe model (BENCHMARKS.md).
    """

    def __init__(self, path: str | Path, threads: int | None = None, precision: str = "f32",
                 allow_int8: bool = False):
        try:
            import openvino as ov
        except ImportError as err:
            raise ImportError("the OpenVINO backend needs openvino: pip install 'depthforge[openvino]'") from err
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if Path(path).suffix == ".xml":  # OpenVINO IR (export --format openvino)
            ir = ov.Core().read_model(str(path))
            self.config = (load_config(base=json.loads(ir.get_rt_info("depthforge_config").astype(str)))
                           if ir.has_rt_info("depthforge_config") else None)
            self.compiled = ov.Core().compile_model(ir, "CPU", config)
            self.request = self.compiled.create_infer_request()
            return
        import onnx

        meta = {e.key for e in onnx.load(str(path), load_external_data=False).metadata_props}
        if "depthforge_qat" in meta and not allow_int8:
            raise ValueError(f"{path}: a QAT INT8 (QDQ) file, for ONNX Runtime; OpenVINO runs the same model from "
                             "its own IR: depthforge export --format openvino (a .xml file)")
        if "depthforge_quantization" in meta and not allow_int8:
            raise ValueError(f"{path}: an INT8 (QDQ) file; OpenVINO runs it fast but its depth was wrong on the "
                             "recipe model (RMSE 11 m against 2.7 m through ONNX Runtime, BENCHMARKS.md 'INT8 on the "
                             "CPU'); run it with --backend onnxruntime, or the fp32 file with openvino")
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.config = onnx_config(path)
        self.path, self.end_to_end = str(path), "depthforge_model" in meta  # as OnnxModel

    @classmethod
    def of(cls, compiled, config: Config | None = None) -> OpenVINOModel:
        """A runner around an already compiled OpenVINO model (e.g. the candidates NNCF's accuracy control tries)."""
        runner = cls.__new__(cls)
        runner.compiled, runner.request, runner.config = compiled, compiled.create_infer_request(), config
        return runner

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.request.infer({0: x.detach().cpu().float().numpy()})
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())


def onnx_runner(path: str | Path, backend: str | None = None, threads: int | None = None,
                opt_level: str = "all") -> _Runner:
    """An exported ONNX file (or OpenVINO IR ``.xml``) ready to run on the CPU with ``backend`` (one of
    `BACKENDS`; default: openvino for a ``.xml`` file, else onnxruntime)."""
    suffix = Path(path).suffix
    if suffix == ".tflite" or backend == "litert":
        if suffix != ".tflite":
            raise ValueError(f"{path}: --backend litert runs LiteRT files (.tflite: depthforge export --format litert)")
        from depthforge.export.litert import LiteRTModel

        return LiteRTModel(path, threads)
    if suffix == ".mlpackage":
        raise ValueError(f"{path}: a Core ML package runs only on Apple systems (Core ML); here, run the checkpoint "
                         "it was exported from, or its ONNX or LiteRT export")
    backend = backend or ("openvino" if suffix == ".xml" else "onnxruntime")
    if Path(path).suffix == ".xml" and backend != "openvino":
        raise ValueError(f"{path}: an OpenVINO IR; run it with --backend openvino (ONNX Runtime reads .onnx files)")
    if backend == "onnxruntime":
        return OnnxModel(path, threads, opt_level)
    if backend == "openvino":
        return OpenVINOModel(path, threads)
    raise ValueError(f"backend '{backend}': choose from {BACKENDS}")


def export_torch(model: nn.Module, path: str | Path) -> Path:
    """``torch.export`` program with dynamic batch, height and width (multiples of the model's input multiple).

    Works for models without data-dependent Python arithmetic on shapes: TF-"same" padding (EfficientNet-Lite)
    and ViT position-embedding resizing are not exportable this way; use ONNX for those.
    """
    path = Path(path)
    multiple = getattr(model, "multiple", 32)
    n = torch.export.Dim("n", min=1, max=64)
    h = torch.export.Dim("h", min=1, max=256)
    w = torch.export.Dim("w", min=1, max=256)
    x = torch.rand(2, 3, 5 * multiple, 8 * multiple)
    shapes = {"x": {0: n, 2: h * multiple, 3: w * multiple}}
    program = torch.export.export(model.eval().cpu(), (x,), dynamic_shapes=shapes)
    torch.export.save(program, str(path))
    return path


def latency_ms(run, size: tuple[int, int] = (144, 256), runs: int = 10, batch: int = 1) -> float:
    """Median time (ms) of one call of ``run`` (an eager model or an exported runner) on a random batch at
    ``size``, after a warm-up."""
    import statistics
    import time

    x = torch.rand(batch, 3, *size)
    times = []
    with torch.inference_mode():
        run(x)
        for _ in range(runs):
            start = time.perf_counter()
            run(x)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def parity_limits(depth_range: float, tol: float | None = None) -> tuple[float, float]:
    """(99th percentile, max) of |exported - eager| in metres a parity check allows for a model whose depth spans
    ``depth_range`` metres; ``tol``: one absolute limit for both instead."""
    if tol is not None:
        return tol, tol
    return PARITY_P99 * depth_range, PARITY_MAX * depth_range


def check_parity(reference: nn.Module, exported, sizes=PARITY_SIZES, tol: float | None = None,
                 depth_range: float = 20.0) -> float:
    """Max |exported - eager| over random inputs of ``sizes``; a `ParityError` when the 99th percentile or the
    max of the difference is over :func:`parity_limits` (relative to ``depth_range``, or ``tol`` metres), naming
    both figures and both limits."""
    torch.manual_seed(0)
    diffs = []
    for h, w in sizes:
        x = torch.rand(2, 3, h, w)
        with torch.no_grad():
            diffs.append((reference(x) - exported(x)).abs().flatten().double())
    diff = torch.cat(diffs)
    worst, p99 = diff.max().item(), torch.quantile(diff[:2**24], 0.99).item()
    p99_limit, max_limit = parity_limits(depth_range, tol)
    if not (np.isfinite(worst) and worst <= max_limit and p99 <= p99_limit):
        how = (f"--tol {tol:g} m" if tol is not None else
               f"{PARITY_P99:g} and {PARITY_MAX:g} x the model's {depth_range:g} m range: float32 round-off stays "
               "well under them, a wrong resize or depth scaling goes far over")
        raise ParityError(f"exported model differs from eager: p99 |diff| {p99:.3g} m, max {worst:.3g} m; the limits "
                          f"are {p99_limit:.3g} m and {max_limit:.3g} m ({how})")
    return worst


def export_checked(model: nn.Module, cfg: Config, out: str | Path, fmt: str = "onnx", tol: float | None = None,
                   entries: dict[str, str] | None = None) -> tuple[Path, float]:
    """``out`` as ONNX (``.onnx``, the config and ``entries`` inside), OpenVINO IR (``.xml``) or torch.export
    (``.pt2``), and the parity check's max |exported - eager| (a `ParityError` over :func:`parity_limits` for the
    model's ``data.max_depth``, or over ``tol`` metres). A file that fails its check is removed."""
    from depthforge.export.app import EndToEnd

    out = Path(out)
    reference = model
    if fmt == "onnx":
        path = export_onnx(model, out.with_suffix(".onnx"), cfg, entries=entries)
        runner, sizes, reference = (lambda: OnnxModel(path)), PARITY_SIZES, EndToEnd(model, cfg).eval()
    elif fmt == "openvino":
        path = export_openvino(model, out, cfg)
        runner, sizes = (lambda: OpenVINOModel(path)), PARITY_SIZES
    elif fmt == "torch":
        path = export_torch(model, out.with_suffix(".pt2"))
        m = model.multiple
        runner, sizes = (lambda: torch.export.load(str(path)).module()), ((5 * m, 8 * m), (3 * m, 4 * m))
    else:
        raise ValueError(f"export format '{fmt}': choose onnx, openvino or torch")
    try:
        return path, check_parity(reference, runner(), sizes, tol, cfg.data.max_depth)
    except BaseException:
        remove_export(path)
        raise


def remove_export(path: Path) -> None:
    """An exported file and what belongs to it (an OpenVINO IR's ``.bin``), or an exported folder (a Core ML
    package, a web page's folder)."""
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
        return
    path.unlink(missing_ok=True)
    if path.suffix == ".xml":
        path.with_suffix(".bin").unlink(missing_ok=True)
