"""``depthforge export``: a checkpoint as ONNX (optionally INT8) or torch.export, with a parity check."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from depthforge.cli.common import UsageError, add_license_policy, positive_int, subparser

QAT_TOL = 0.02  # a QAT checkpoint's parity tolerance, as a share of data.max_depth (and LiteRT INT8's)
FORMATS = ("onnx", "openvino", "litert", "coreml", "web", "torch")
APP_FORMATS = ("litert", "coreml", "web")  # written by _export_app


def parse_size(text: str) -> tuple[int, int]:
    """``"144x256"`` -> (144, 256): height x width, each at least 16."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': give height x width in pixels, e.g. 480x640") from None
    if min(h, w) < 16 or h * w > 50_000_000:
        raise argparse.ArgumentTypeError(f"'{text}': each side at least 16 pixels, at most 50 megapixels")
    return h, w


def add_parser(sub, parents: list) -> None:
    p = subparser(sub, "export", parents, "export a checkpoint to ONNX, OpenVINO, LiteRT, Core ML, a web page or "
                                          "torch.export, with a parity check")
    p.add_argument("--checkpoint", required=True, help="a .ckpt written by depthforge train")
    add_license_policy(p)
    p.add_argument("--format", default="onnx", choices=list(FORMATS),
                   help="onnx (ONNX Runtime, OpenVINO), openvino (IR .xml + .bin: OpenVINO's own format; with "
                        "--quantize int8 or a QAT checkpoint, the INT8 its CPU plugin runs fastest), litert (.tflite: "
                        "Android, embedded Linux), coreml (.mlpackage: iPhone, Mac), web (a folder: a page that runs "
                        "the model in the browser) or torch (.pt2). onnx, litert, coreml and web take the photo as it "
                        "is (RGB / 255) and give metres at its size: docs/mobile.md")
    p.add_argument("--out", required=True, help="output path (suffix .onnx / .xml / .tflite / .mlpackage / .pt2 is "
                                                "set; web: a folder)")
    p.add_argument("--input-size", type=parse_size, metavar="HxW",
                   help="litert, coreml: the fixed input size (height x width) the app feeds, resized to the "
                        "training geometry inside the model (default: the training images' size when the config "
                        "says it: data.crop, data.random_crop, the embedded scenes, the challenge's 144x256)")
    p.add_argument("--precision", choices=["fp16", "fp32"], default="fp16",
                   help="coreml: fp16 (what the Neural Engine runs; the default) or fp32")
    p.add_argument("--ort-web", metavar="DIR", help="web: an unpacked onnxruntime-web package (or its .tgz) to "
                   "bundle (default: the pinned onnxruntime-web from the npm registry through npm, cached)")
    p.add_argument("--tol", type=float, help="largest allowed |exported - eager| in metres (default: 1e-5 of the "
                                             "model's data.max_depth at the 99th percentile and 1e-4 of it at the "
                                             "worst pixel, what float32 can promise; a QAT checkpoint's INT8 file: "
                                             "2 %% of data.max_depth, as runtimes round INT8 a little differently)")
    p.add_argument("--quantize", choices=["int8", "int8-weights"], help="write INT8 to --out (--format onnx: ONNX "
                   "Runtime's quantisation; --format openvino: NNCF's, both scored against the fp32 export on the "
                   "model's val split; --format litert: LiteRT's dynamic-range INT8, or int8-weights: weight-only, "
                   "INT8 weights computed in fp32)")
    p.add_argument("--keep-fp32", action="store_true", help="--quantize: also keep the fp32 file it is made from, "
                                                             "as <out stem>.fp32.onnx (.xml, .tflite)")
    p.add_argument("--quant-mode", choices=["static", "dynamic"], default="static",
                   help="static: weights and activations (QDQ, calibrated); dynamic: weights only")
    p.add_argument("--calibration", help="folder of images to calibrate on (default: images spread over the "
                                         "model's training split)")
    p.add_argument("--calibration-n", type=positive_int, default=200, help="calibration images")
    p.add_argument("--calibration-method", choices=["minmax", "percentile", "entropy"], default="minmax",
                   help="static: how activation ranges are set from the calibration images")
    p.add_argument("--quant-exclude", choices=["none", "ends", "decoder"], default="none",  # quantize.EXCLUDES
                   help="layers kept in fp32: ends = the first convolution and everything from the last one on (the "
                        "depth head); decoder = everything but the encoder (only the encoder runs in INT8)")
    p.add_argument("--sensitivity", action="store_true", help="static INT8: report the RMSE change when each block "
                   "alone is INT8 (scored on training images the calibration did not use)")
    p.add_argument("--max-rmse-delta", type=float, metavar="M", help="static INT8: keep the most sensitive blocks in "
                   "fp32 until INT8 costs at most M metres of RMSE on training images the calibration did not use "
                   "(--format onnx: implies --sensitivity, whose report says what the choice costs in speed; "
                   "--format openvino: NNCF's accuracy control chooses the layers)")
    p.add_argument("--selection-n", type=positive_int, default=48, help="--sensitivity / --max-rmse-delta: the "
                   "training images the choice is scored on")
    p.add_argument("--accuracy-protocol", default="standard", help="protocol of the fp32 vs int8 check (and of "
                   "the --max-rmse-delta choice)")
    p.add_argument("--accuracy-split", help="split of the check (default: the model's data.val_split)")
    p.add_argument("--check-images", metavar="DIR", help="a few images unlike the training data (your own photos) on "
                   "which the INT8 depth is compared with fp32 beside the calibration images (default: rendered "
                   "rooms and streets); a warning when the two disagree")
    p.add_argument("--no-accuracy", action="store_true", help="skip the fp32 vs int8 scoring and comparison")
    p.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from depthforge.cli.common import require_extra

    if args.format in ("onnx", "web"):  # before anything is loaded or written
        require_extra("export", "onnx", "onnxruntime")
    elif args.format == "openvino":
        require_extra("openvino", "openvino", *(["nncf"] if args.quantize else []))
    elif args.format == "litert":
        require_extra("litert", "litert_torch", "ai_edge_litert", *(["ai_edge_quantizer"] if args.quantize else []))
    elif args.format == "coreml":
        require_extra("coreml", "coremltools")
    if args.format == "web":  # found (or fetched with npm) before the model is loaded
        from depthforge.export.web import OrtWebError, find_ort_web

        try:
            args.ort_web = find_ort_web(args.ort_web)
        except OrtWebError as err:
            raise UsageError(str(err)) from None
    if args.quantize == "int8-weights" and args.format != "litert":
        raise UsageError("--quantize int8-weights is LiteRT's weight-only INT8 (--format litert)")
    if args.quantize and args.format in ("coreml", "web"):
        raise UsageError(f"--quantize int8: --format {args.format} has none here (coreml: --precision fp16 halves "
                         "the file; web: export --format onnx --quantize int8 for ONNX Runtime)")
    if args.input_size and args.format not in ("litert", "coreml"):
        raise UsageError("--input-size is for --format litert and coreml (fixed-size files); onnx and web take "
                         "any size")
    from depthforge.export import export_checked, parity_limits, remove_export
    from depthforge.export.quantize import set_metadata
    from depthforge.sources import load_checkpoint

    if args.quantize and args.format == "torch":
        raise UsageError("--quantize int8 needs --format onnx (ONNX Runtime) or openvino")
    ort_only = [o for o, on in (("--quant-mode dynamic", args.quant_mode != "static"), ("--sensitivity", args.sensitivity),
                                ("--calibration-method", args.calibration_method != "minmax"),
                                ("--quant-exclude", args.quant_exclude != "none")) if on]
    if args.quantize and args.format == "openvino" and ort_only:
        raise UsageError(f"{', '.join(ort_only)}: ONNX Runtime's INT8 options (--format onnx); OpenVINO's INT8 is "
                         "static and min-max calibrated, and --max-rmse-delta chooses its fp32 layers")
    chooses = args.sensitivity or args.max_rmse_delta is not None
    if chooses and (not args.quantize or args.quant_mode != "static"):
        raise UsageError("--sensitivity and --max-rmse-delta need --quantize int8 --quant-mode static")
    if args.max_rmse_delta is not None and args.max_rmse_delta < 0:
        raise UsageError(f"--max-rmse-delta {args.max_rmse_delta}: give the RMSE INT8 may add, in metres (>= 0)")
    from depthforge.export.qat import quantizers

    from depthforge.sources.license_sources import of_checkpoint
    from depthforge.sources.licenses import check

    licenses = of_checkpoint(args.checkpoint)  # refused before it is loaded; carried into the exported file
    check(licenses, args.license_policy, args.checkpoint)
    model, cfg = load_checkpoint(args.checkpoint)
    qat = bool(cfg.train.qat and quantizers(model))
    if qat and args.quantize:
        raise UsageError(f"{args.checkpoint}: a QAT checkpoint exports as INT8 by itself; drop --quantize")
    if args.tol is None and qat:
        args.tol = QAT_TOL * cfg.data.max_depth
    if args.format in APP_FORMATS:
        return _export_app(args, model, cfg, licenses)
    carried = {"depthforge_licenses": json.dumps(licenses)}  # the INT8 file is made from this one: it inherits them
    if args.format == "onnx":  # the caller's facts, with the licences
        from depthforge.export.app import IO_KEY, facts_json, model_facts

        carried[IO_KEY] = facts_json(model_facts(cfg, None, "onnx", licenses))
    out = Path(args.out)
    if args.quantize:  # --out names what was asked for, the INT8 file; the fp32 one is an intermediate
        out = out.with_suffix(".xml" if args.format == "openvino" else ".onnx")
        fp32 = out.with_name(out.stem + ".fp32" + out.suffix)
    try:
        path, diff = export_checked(model, cfg, fp32 if args.quantize else out, args.format, args.tol,
                                    carried if args.format == "onnx" else None)
    except (TypeError, RuntimeError) as err:
        if cfg.model.name != "hf":
            raise
        # a transformers model's own image processor (resize to a multiple of 14 or 32) runs inside its forward:
        # the tracers cannot follow it (found while testing #53); said in one line, not a tracer's traceback
        raise UsageError(f"{args.checkpoint}: a fine-tuned transformers model (model.name=hf) cannot be exported to "
                         f"{args.format} yet ({type(err).__name__}: {str(err).splitlines()[0][:80]}); run it with "
                         "depthforge predict --checkpoint, or export a depthforge recipe") from None
    if args.format == "openvino":  # an ONNX file has them from export_checked
        set_metadata(path, carried)
    kind = "fp32, " if args.quantize else "INT8 (QAT), " if qat and args.format != "torch" else ""
    p99_limit, max_limit = parity_limits(cfg.data.max_depth, args.tol)
    print(f"{path}: {kind}max |exported - eager| = {diff:.3g} m (limits: {max_limit:.3g} m max, {p99_limit:.3g} m "
          "at the 99th percentile)")
    if args.quantize:
        done = False
        try:
            code = _quantize(args, cfg, path, out)
            set_metadata(out, carried)
            done = True
            return code
        finally:
            if not args.keep_fp32:
                remove_export(path)
                print(f"{path}: removed (the fp32 intermediate; --keep-fp32 keeps it)")
            if not done:  # a failed command leaves nothing it made behind
                remove_export(out)
    return 0


def _quantize(args: argparse.Namespace, cfg, fp32: Path, out: Path) -> int:
    from depthforge.evaluation.quantized import quantize_and_check
    from depthforge.evaluation.report import comparison_table

    q = quantize_and_check(fp32, cfg, out, args.quant_mode, args.calibration, args.calibration_n,
                           args.calibration_method, args.quant_exclude, args.accuracy_protocol, args.accuracy_split,
                           not args.no_accuracy, "depthforge " + " ".join(args.argv), args.check_images,
                           args.sensitivity, args.max_rmse_delta, args.selection_n)
    if q.sensitivity is not None:
        print(q.sensitivity.table())
    calibrated = f", calibrated on {q.calibration_images} images" if q.calibration_images else ""
    print(f"{q.path}: INT8 ({args.quant_mode}{calibrated})")
    if q.path.suffix == ".xml":
        from depthforge.export.quantize import read_metadata

        made = read_metadata(q.path)["depthforge_quantization"]
        kept = made["kept_fp32"]
        print(f"OpenVINO INT8 (NNCF): {made['int8_layers']} weighted layers INT8"
              + (f"; kept in fp32 by the accuracy control: {', '.join(kept[:6])}{' ...' if len(kept) > 6 else ''}"
                 if kept else ""))
    if q.selection is not None:
        s = q.selection
        print(f"accuracy control on {s['samples']}: mean RMSE fp32 {s['fp32_rmse']:.4f}, INT8 {s['int8_rmse']:.4f} "
              f"({s['int8_rmse'] - s['fp32_rmse']:+.4f} m, at most {s['bound_m']:+.4f} m with 95 % confidence; "
              f"budget {s['budget_m']:g} m {'met' if s['met'] else 'NOT met: the file holds the last try of the accuracy control; check the val numbers'})")
    if q.record is not None:
        print(comparison_table(q.cards))
        print("int8 - fp32: " + ", ".join(f"{k} {v:+.4f}" for k, v in q.record["delta"].items()
                                          if k in ("rmse", "ssim", "abs_rel", "delta1")) + f" (stored in {q.path.name})")
    if q.drift is not None:
        for name, d in (("calibration images", q.drift["calibration"]), ("val images", q.drift["val"]),
                        ("held-out images", q.drift["held_out"])):
            print(f"int8 vs fp32 depth on {d['n']} {name}: mean |difference| {d['mean_abs_m']:.3g} m "
                  f"({100 * d['mean_rel']:.2f} %), 99th percentile {d['p99_abs_m']:.3g} m, largest "
                  f"{d['max_abs_m']:.3g} m")
    return 0


def default_input_size(cfg) -> tuple[int, int] | None:
    """The training images' size where the config states it, else None."""
    for size in (cfg.data.crop, cfg.data.random_crop):
        if size:
            return tuple(size)
    if cfg.data.name == "synthetic":
        return cfg.data.synthetic.height, cfg.data.synthetic.width
    if cfg.data.name == "challenge":
        return 144, 256
    return None


def _export_app(args: argparse.Namespace, model, cfg, licenses: list[dict]) -> int:
    """LiteRT, Core ML and the web folder: the end-to-end model (`depthforge.export.app`), checked."""
    import tempfile

    from depthforge.export.app import IO_KEY, EndToEnd, facts_json, model_facts
    from depthforge.export.onnx import check_parity, parity_limits, remove_export

    size = args.input_size or (default_input_size(cfg) if args.format != "web" else None)
    if args.format != "web" and size is None:
        raise UsageError(f"{args.checkpoint}: its config does not say the training images' size; give --input-size "
                         "HxW, the size your app will feed (a camera preview's, e.g. 480x640)")
    extra = {"precision": args.precision} if args.format == "coreml" else {}
    if args.quantize:
        from depthforge.export.litert import QUANTIZE

        extra["quantization"] = QUANTIZE[args.quantize]
    facts = model_facts(cfg, size, args.format, licenses, **extra)
    entries = {"depthforge_licenses": json.dumps(licenses), IO_KEY: facts_json(facts)}
    out = Path(args.out)
    if args.format == "coreml":
        from depthforge.export.coreml import check_coreml, export_coreml

        path = export_coreml(model, cfg, out, size, args.precision, entries)
        try:
            found = check_coreml(path, model)
        except BaseException:
            remove_export(path)
            raise
        print(f"{path}: Core ML ML program, {args.precision}, input {size[1]}x{size[0]} RGB image; checked here: the "
              f"spec loads, {found['convolutions']} convolutions with PyTorch's weight shapes, the depth head's "
              "weights equal; not run (Core ML runs only on Apple systems)")
        return 0
    reference = EndToEnd(model, cfg, size).eval()
    tol = args.tol if args.tol is not None else (QAT_TOL * cfg.data.max_depth if args.quantize else None)
    if args.format == "litert":
        from depthforge.export.litert import LiteRTModel, export_litert

        keep = None
        if args.quantize and args.keep_fp32:  # the converted file before quantisation, with its own facts
            plain = {**entries, IO_KEY: facts_json(model_facts(cfg, size, args.format, licenses))}
            keep = (out.with_name(out.with_suffix(".tflite").stem + ".fp32.tflite"), plain)
        path = export_litert(model, cfg, out, size, args.quantize, entries, keep)
        checked = [(path, tol, args.quantize)] + ([(keep[0], args.tol, None)] if keep else [])
        for file, limit, quantized in checked:
            try:
                diff = check_parity(reference, LiteRTModel(file), (size,), limit, cfg.data.max_depth)
            except BaseException:
                for made in checked:
                    remove_export(made[0])
                raise
            kind = {"int8": "INT8 (dynamic range), ", "int8-weights": "INT8 weights, "}.get(quantized, "")
            p99, high = parity_limits(cfg.data.max_depth, limit)
            print(f"{file}: LiteRT, {kind}input {size[1]}x{size[0]} NHWC; max |exported - eager| = {diff:.3g} m "
                  f"(limits: {high:.3g} m max, {p99:.3g} m at the 99th percentile)")
        return 0
    from depthforge.export.onnx import export_checked
    from depthforge.export.web import write_web

    with tempfile.TemporaryDirectory() as tmp:
        onnx_file, diff = export_checked(model, cfg, Path(tmp) / "model.onnx", "onnx", tol, entries)
        folder = write_web(out, onnx_file, facts, args.ort_web)
    print(f"{folder}: index.html, model.onnx (max |exported - eager| = {diff:.3g} m), ONNX Runtime Web in ort/; serve "
          f"it (python -m http.server -d {folder}) and open http://localhost:8000/")
    return 0
