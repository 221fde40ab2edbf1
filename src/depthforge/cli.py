"""``depthforge`` command line: parse, build a config, call the library (the logic lives in the package)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from tqdm import tqdm

from depthforge import __version__
from depthforge.console import configure_console

DESCRIPTION = ("Train, evaluate and run monocular depth models: one RGB image in, a depth map in metres out. "
               "Run 'depthforge COMMAND --help' for a command's options.")
DEPTH_FORMATS = ["npy", "png16", "pfm", "exr"]  # depthforge.io.FORMATS, without importing the package at start-up
OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")
# Options taking several values, per command, and what a value of each looks like. The first token that does not
# look like one ends the list, so "--split train val data.depth_scale=1000" keeps the override an override and
# "--format npy png16 photo.jpg" keeps the photo an input.
MULTI_VALUE = {
    "data": {"--split": lambda v: not OVERRIDE.match(v)},
    "predict": {"--format": lambda v: v in DEPTH_FORMATS},
    "evaluate": {"--checkpoint": lambda v: not OVERRIDE.match(v), "--predictions": lambda v: not OVERRIDE.match(v)},
}


def separate_values(argv: list[str]) -> list[str]:
    """``--opt a b rest`` -> ``--opt=a --opt=b rest`` for the options in :data:`MULTI_VALUE` (declared with
    ``action="extend"``), ending each list at the first token that is not one of its values."""
    command = next((a for a in argv if not a.startswith("-")), None)
    options = MULTI_VALUE.get(command, {})
    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token not in options:
            out.append(token)
            continue
        values = []
        while i < len(argv) and not argv[i].startswith("-") and options[token](argv[i]):
            values.append(argv[i])
            i += 1
        out += [f"{token}={v}" for v in values] if values else [token]
    return out


class UsageError(Exception):
    """A command line that cannot work as given; exits 2 like argparse's own usage errors."""


TTA_SCALES_HELP = ("multi-scale test-time augmentation: comma-separated input resize factors relative to the "
                   "training geometry whose predictions are averaged, e.g. 0.83,1,1.17")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive whole number (e.g. 16)")
    return value


def _scales(args: argparse.Namespace) -> tuple[float, ...] | None:
    from depthforge.inference.native import parse_scales

    try:
        return parse_scales(args.tta_scales)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _train(args: argparse.Namespace) -> int:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from depthforge.config import load_config
    from depthforge.engine import train
    from depthforge.engine.train import resume_config

    configure_console(args.verbosity)  # again: importing Lightning attached its own handler
    overrides = list(args.overrides)
    if args.data:
        overrides = [f"data.root={args.data}", *_detected(args.data, overrides)] + overrides
    for flag, key in ((args.out, "out"), (args.max_steps, "train.max_steps"), (args.epochs, "train.epochs"),
                      (args.device, "train.device")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    try:
        if args.resume:
            out = train(resume_config(args.resume, overrides), resume=True)
        else:
            out = train(load_config(args.config, overrides))
    except SIGTERMException:
        return 143  # 128 + SIGTERM: interrupted (FaultCheckpoint printed whether last.ckpt was written)
    ckpts = out / "checkpoints"
    print(f"run folder: {out}\n  best: {ckpts / 'best.ckpt'}\n  last: {ckpts / 'last.ckpt'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from depthforge.evaluation import get_protocol
    from depthforge.evaluation.card import card_source, read_card, write_card
    from depthforge.evaluation.protocols import Protocol
    from depthforge.evaluation.report import comparison_table, evaluate_sources

    command = "depthforge " + " ".join(args.argv)
    if args.card:
        card = read_card(args.card)
        source = card_source(card, args.card)
        source["data_config"] = card["data"].get("config")
        new = evaluate_sources([source], Protocol.from_dict(card["protocol"]), None, card["data"]["split"],
                               args.device, command=command, uncertainty=card.get("uncertainty"))[0]
        print(comparison_table([card, new]))
        diff = max(abs(card["metrics"][k] - new["metrics"][k]) for k in card["metrics"]
                   if card["metrics"][k] == card["metrics"][k])  # NaN != NaN: undefined metrics are skipped
        print(f"max |recorded - now| = {diff:.3g}")
        return 0 if diff <= 1e-6 else 1
    if args.ensemble and len(args.checkpoint or []) < 2:
        raise UsageError("--ensemble averages several checkpoints; give two or more with --checkpoint")
    if args.sequence:
        return _evaluate_sequences(args)
    checkpoints = [args.checkpoint] if args.ensemble else args.checkpoint or []
    sources = ([{"checkpoint": c, **_sampling(args)} for c in checkpoints] + _model_specs(args)
               + [{"predictions": d} for d in args.predictions or []])
    if not sources:
        raise UsageError("give --checkpoint CKPT..., --model SPEC..., --predictions DIR... or --card FILE")
    crop = args.crop
    if crop and "," in crop:
        crop = [float(v) for v in crop.split(",")]
    protocols = [get_protocol(name.strip(), args.max_depth, crop=crop, alignment=args.alignment,
                              flip_tta=True if args.flip_tta else None, tta_scales=_scales(args),
                              batch_size=args.protocol_batch) for name in args.protocol.split(",")]
    cards = evaluate_sources(sources, protocols, args.data, args.split, args.device, args.report, args.worst, command,
                             args.overrides, args.uncertainty)
    print(comparison_table(cards))
    if args.json:
        if len(cards) == 1:
            write_card(cards[0], args.json)
        else:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(cards, indent=2))
    return 0


def _evaluate_sequences(args: argparse.Namespace) -> int:
    """``evaluate --sequence DIR``: per-frame accuracy, TAE and flicker for each source and stabilisation mode."""
    from depthforge.data.sequence import load_sequence
    from depthforge.evaluation.sequence import evaluate_sequence
    from depthforge.inference.sources import load_source
    from depthforge.inference.stabilize import MODES

    modes = tuple(m.strip() for m in args.stabilize.split(","))
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise UsageError(f"--stabilize {','.join(unknown)}: choose from {', '.join(MODES)} (comma-separated)")
    specs = [{"checkpoint": c, **_sampling(args)} for c in args.checkpoint or []] + _model_specs(args)
    if not specs:
        raise UsageError("--sequence scores a model: give --checkpoint CKPT or --model SPEC")
    rows = []
    for spec in specs:
        loaded = load_source(spec, args.device)
        for folder in args.sequence:
            seq = load_sequence(folder)
            for mode, m in evaluate_sequence(loaded, seq, modes, args.max_depth or loaded.cfg.data.max_depth,
                                             args.flow, args.device).items():
                rows.append({"source": next(iter(spec.values())), "sequence": str(folder), "stabilize": mode,
                             "frames": len(seq["rgb"]), **m})
    lines = ["| source | sequence | stabilize | RMSE | AbsRel | delta1 | TAE | flicker |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['source']} | {r['sequence']} | {r['stabilize']} | {r['rmse']:.3f} | {r['abs_rel']:.4f} | "
              f"{r['delta1']:.3f} | {r['tae']:.3f} | {r['flicker']:.3f} |" for r in rows]
    print("\n".join(lines))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"command": "depthforge " + " ".join(args.argv), "rows": rows},
                                              indent=2))
    return 0


def _sampling(args: argparse.Namespace) -> dict:
    """--samples / --steps / --seed for a diffusion checkpoint (the source spec, hence the eval card, records them)."""
    return {k: v for k, v in (("samples", args.ensemble_size), ("steps", args.denoise_steps), ("seed", args.seed))
            if v is not None}


def _model_specs(args: argparse.Namespace) -> list[dict]:
    """``--model`` values as source specs; Marigold ones carry the ensemble options given."""
    specs = []
    for text in args.model or []:
        if not text.startswith(("hf:", "marigold:", "depthforge:")):
            raise UsageError(f"--model {text}: give hf:<repo id or folder>, marigold:<repo id or folder> or "
                             "depthforge:<shared folder or repo id>")
        spec = {"model": text}
        if text.startswith("marigold:"):
            spec.update({k: v for k, v in (("ensemble_size", args.ensemble_size), ("steps", args.denoise_steps),
                                           ("processing_resolution", args.processing_res), ("seed", args.seed))
                         if v is not None})
        specs.append(spec)
    return specs


def _predict(args: argparse.Namespace) -> int:
    from depthforge.io import read_rgb
    from depthforge.inference import Predictor, expand_inputs
    from depthforge.inference.calibration import read_points
    from depthforge.inference.outputs import clamp_depth, model_range, write_prediction
    from depthforge.inference.video import CAMERA_PREFIX, VIDEO_SUFFIXES, predict_video

    from depthforge.inference.sources import load_source

    if [bool(args.checkpoint), bool(args.onnx), bool(args.model)].count(True) != 1 or len(args.model or []) > 1:
        raise UsageError("give exactly one of --checkpoint CKPT (repeatable: an ensemble), --onnx MODEL.onnx or "
                         "--model hf:|marigold:|depthforge:<repo id or folder>")
    if args.onnx:
        source = {"onnx": str(args.onnx), **{k: v for k, v in (("backend", args.backend), ("threads", args.threads),
                                                                ("opt_level", args.ort_opt_level)) if v}}
    elif args.checkpoint:
        source = {"checkpoint": args.checkpoint[0] if len(args.checkpoint) == 1 else list(args.checkpoint),
                  **_sampling(args)}
    else:
        source = _model_specs(args)[0]
    loaded = load_source(source, args.device)
    if str(source.get("model", "")).startswith("marigold:") and (args.flip_tta or args.tta_scales or args.tile):
        raise UsageError("Marigold ensembles its own passes: use --ensemble-size instead of --flip-tta, "
                         "--tta-scales or --tile")
    model, cfg = loaded.model, loaded.cfg
    source = {**source, "kind": loaded.kind}
    if args.uncertainty == "model" and not getattr(model, "uncertainty_kind", None):
        raise UsageError(f"{next(iter(source.values()))} predicts no uncertainty of its own: use a model with "
                         "model.kwargs.head=laplace, Marigold with --ensemble-size 3+, or --uncertainty tta")
    if args.stabilize == "pose" and loaded.kind != "metric":
        raise UsageError(f"--stabilize pose makes 3D points from the depth, and this source predicts {loaded.kind} "
                         "depth: use --stabilize flow")
    predictor = Predictor(model, cfg.data, args.device, flip=args.flip_tta, scales=_scales(args) or (1.0,),
                          uncertainty=args.uncertainty if args.uncertainty == "tta" else None)
    points = read_points(args.calibrate) if args.calibrate else []
    for text in args.point or []:
        x, y, m = text.split(",")
        points.append((int(x), int(y), float(m)))
    videos = [p if p.startswith(CAMERA_PREFIX) else Path(p) for p in args.inputs
              if p.startswith(CAMERA_PREFIX) or Path(p).suffix.lower() in VIDEO_SUFFIXES
              or (args.sequence and Path(p).is_dir())]
    for video in videos:
        meta = {"model": cfg.model.name, **source, "video": str(video)}
        valid = model_range(cfg.data.max_depth) if loaded.kind == "metric" else None

        def write_frame(depth, stem, meta=meta, valid=valid):
            clamped = None
            if valid is not None:
                depth, clamped = clamp_depth(depth, valid, stem)
            return write_prediction(depth, args.out, stem, args.cmap, args.vmax, tuple(args.format or DEPTH_FORMATS[:1]),
                                    {**meta, "clamped": clamped})

        n, out = predict_video(video, predictor, args.out, write_frame, args.vmax, stabilize=args.stabilize,
                               flow=args.flow, max_frames=args.max_frames,
                               intrinsics=lambda w, h: _intrinsics(args, w, h).matrix())
        print(f"{video} -> {n} frames, {out}")
    images = [p for p in args.inputs if p not in videos and Path(p) not in videos]
    paths = expand_inputs(images) if images else []
    for group in tqdm(_same_size_batches(paths, args.batch_size), desc="predict", unit="batch",
                      disable=not sys.stderr.isatty()):
        rgbs = [read_rgb(p) for p in group]
        if args.tile:
            th, tw = (int(v) for v in args.tile.lower().split("x"))
            depths = [predictor.tiled(rgb, (th, tw), args.overlap) for rgb in rgbs]
        else:
            depths = predictor.batch(rgbs)
        extras = predictor.extras if not args.tile and len(predictor.extras) == len(group) else [{} for _ in group]
        for path, rgb, depth, extra in zip(group, rgbs, depths, extras):
            _write_one(args, cfg, source, points, path, rgb, depth, predictor.scales, extra)
    return 0


def _same_size_batches(paths: list[Path], size: int) -> list[list[Path]]:
    """Consecutive images of one size, at most ``size`` per batch (sizes are read from headers, not decoded)."""
    from PIL import Image

    batches: list[list[Path]] = []
    last = None
    for p in paths:
        with Image.open(p) as img:
            dims = img.size
        if batches and dims == last and len(batches[-1]) < size:
            batches[-1].append(p)
        else:
            batches.append([p])
        last = dims
    return batches


def _intrinsics(args: argparse.Namespace, w: int, h: int, predicted_fx: float | None = None):
    """The camera of a ``w`` x ``h`` frame: --fx/--fy/--cx/--cy where given, else a focal length the model
    predicted (Depth Pro), else the --hfov guess."""
    from depthforge.inference.pointcloud import Intrinsics

    fx = args.fx or predicted_fx
    if not fx:
        return Intrinsics.from_fov(w, h, args.hfov)
    return Intrinsics(fx, args.fy or fx, args.cx if args.cx is not None else (w - 1) / 2,
                      args.cy if args.cy is not None else (h - 1) / 2,
                      source="given" if args.fx else "predicted by the model (Depth Pro)")


def _write_one(args, cfg, source, points, path, rgb, depth, scales, extra=None) -> None:
    import numpy as np

    from depthforge.inference.calibration import calibrate
    from depthforge.inference.outputs import clamp_depth, model_range, write_prediction
    from depthforge.inference.pointcloud import Intrinsics, depth_to_ply, intrinsics_from_exif

    h, w = depth.shape
    extra = extra or {}
    kind = source.get("kind", "metric")
    meta = {"model": cfg.model.name, **source, "input_size": [h, w], "flip_tta": args.flip_tta,
            "tta_scales": list(scales), "tiles": {"window": args.tile, "overlap": args.overlap} if args.tile else None}
    if kind == "metric":
        depth, meta["clamped"] = clamp_depth(depth, model_range(cfg.data.max_depth), str(path))
        meta["max_depth"] = cfg.data.max_depth
    if points:
        # Known distances turn an affine-invariant output into metres: fitted in disparity space for disparity.
        inverse = kind == "disparity"
        cal = calibrate(depth, [(x, y, 1 / m if inverse else m) for x, y, m in points], shift=args.shift or
                        kind != "metric")
        depth = cal.apply(depth).astype(np.float32)
        if inverse:
            depth = 1 / np.clip(depth, 1e-6, None)
        meta["calibration"] = {"scale": cal.scale, "shift": cal.shift, "inliers": cal.inliers,
                               "rms_m" if not inverse else "rms_inverse_m": cal.residual_m,
                               "space": "disparity" if inverse else "depth"}
        meta["units"], kind = "metres", "metric"
    else:
        meta["units"] = "metres" if kind == "metric" else f"{kind} (affine-invariant; give --calibrate for metres)"
    if "focal_px" in extra and not args.fx:
        meta["focal_px_predicted"] = extra["focal_px"]
    if args.fx or "focal_px" in extra:
        k = _intrinsics(args, w, h, extra.get("focal_px"))
    else:
        k = intrinsics_from_exif(path, w, h) or Intrinsics.from_fov(w, h, args.hfov)
    meta["intrinsics"] = k.to_dict()
    formats = tuple(args.format or DEPTH_FORMATS[:1])
    written = write_prediction(depth, args.out, path.stem, args.cmap, args.vmax, formats, meta)
    if "uncertainty" in extra:  # a Laplace head, Marigold with 3+ members, or --uncertainty tta
        written += write_prediction(extra["uncertainty"].astype(np.float32), args.out, f"{path.stem}_uncertainty",
                                    "viridis", None, ("npy",), {**meta, "units": extra["uncertainty_kind"],
                                                                "uncertainty_kind": extra["uncertainty_kind"]})
    if args.ply:
        if kind != "metric":
            raise UsageError(f"--ply needs metres: {source.get('model')} predicts {kind}; add --calibrate or --point")
        written.append(depth_to_ply(Path(args.out) / f"{path.stem}.ply", depth, rgb, k, cfg.data.max_depth))
    unit = "m" if kind == "metric" else f"({kind})"
    tqdm.write(f"{path} -> {', '.join(str(p) for p in written)}  (depth {depth.min():.2f}..{depth.max():.2f} {unit})")
    return 0


def _push(args: argparse.Namespace) -> int:
    from depthforge.evaluation.card import read_card
    from depthforge.inference import load_checkpoint
    from depthforge.inference.hub import push, save_pretrained

    model, cfg = load_checkpoint(args.checkpoint)
    cards = [read_card(c) for c in args.card or []]
    folder = save_pretrained(model, cfg, args.out, cards)
    print(f"{args.checkpoint} -> {folder} (model.safetensors, config.json, README.md with {len(cards)} eval card(s))")
    if args.repo:
        push(folder, args.repo, private=args.private)
        print(f"uploaded to https://huggingface.co/{args.repo}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from depthforge.demo import DemoApp, default_sources, launch

    app = DemoApp(default_sources(args.checkpoint, args.model, args.onnx), max_side=args.max_side,
                  max_frames=args.max_frames)
    print(f"depthforge demo: {', '.join(app.sources)} on http://{args.host}:{args.port} (files under {app.workdir})")
    launch(app, args.host, args.port)
    return 0


def _quantize(args: argparse.Namespace, cfg, fp32: Path) -> int:
    """INT8 next to the fp32 file; both scored on the model's val split, the deltas printed and stored inside."""
    from depthforge.data import build_dataset
    from depthforge.evaluation import get_protocol
    from depthforge.evaluation.report import comparison_table, evaluate_sources
    from depthforge.inference.quantize import calibration_images, quantize_onnx, record_accuracy

    images = None
    if args.quant_mode == "static":
        if args.calibration:
            images = calibration_images(args.calibration, args.calibration_n)
        else:  # the first images of the model's own training split
            train_set = build_dataset(cfg.data, cfg.data.train_split, train=False)
            images = [train_set[i]["image"] for i in range(min(args.calibration_n, len(train_set)))]
    int8 = quantize_onnx(fp32, fp32.with_name(fp32.stem + ".int8.onnx"), cfg, args.quant_mode, images,
                         args.calibration_method, args.quant_exclude)
    print(f"{int8}: INT8 ({args.quant_mode}{f', calibrated on {len(images)} images' if images else ''})")
    if args.no_accuracy:
        return 0
    protocol = get_protocol(args.accuracy_protocol)
    cards = evaluate_sources([{"onnx": str(fp32)}, {"onnx": str(int8)}], protocol, split=args.accuracy_split,
                             command="depthforge " + " ".join(args.argv))
    print(comparison_table(cards))
    record = record_accuracy(int8, cards[0]["metrics"], cards[1]["metrics"], protocol.name,
                             cards[0]["data"]["split"], cards[0]["n"])
    print("int8 - fp32: " + ", ".join(f"{k} {v:+.4f}" for k, v in record["delta"].items()
                                      if k in ("rmse", "ssim", "abs_rel", "delta1")) + f" (stored in {int8.name})")
    return 0


def _export(args: argparse.Namespace) -> int:
    from depthforge.inference import load_checkpoint
    from depthforge.inference.export import OnnxModel, check_parity, export_onnx, export_torch

    model, cfg = load_checkpoint(args.checkpoint)
    out = Path(args.out)
    if args.quantize and args.format != "onnx":
        raise UsageError("--quantize int8 needs --format onnx")
    if args.format == "onnx":
        path = export_onnx(model, out.with_suffix(".onnx"), cfg)
        diff = check_parity(model, OnnxModel(path), tol=args.tol)
        if args.quantize:
            print(f"{path}: max |exported - eager| = {diff:.3g} (tolerance {args.tol:g})")
            return _quantize(args, cfg, path)
    else:
        import torch

        path = export_torch(model, out.with_suffix(".pt2"))
        m = model.multiple
        diff = check_parity(model, torch.export.load(str(path)).module(), sizes=((5 * m, 8 * m), (3 * m, 4 * m)),
                            tol=args.tol)
    print(f"{path}: max |exported - eager| = {diff:.3g} (tolerance {args.tol:g})")
    return 0


def _detected(root: str, overrides: list[str]) -> list[str]:
    """``["data.name=<layout found in root>"]``, printed; nothing when the overrides already name the format."""
    from depthforge.data.detect import detect_format

    if any(o.startswith("data.name=") for o in overrides):
        return []
    name, description = detect_format(root)
    print(f"{root}: detected {description} (data.name={name})")
    return [f"data.name={name}"]


def _data_config(args: argparse.Namespace):
    from depthforge.config import load_config

    overrides = list(args.overrides)
    if args.format:
        overrides.insert(0, f"data.name={args.format}")
    if args.root:
        overrides = [f"data.root={args.root}", *_detected(args.root, overrides)] + overrides
    return load_config(args.config, overrides)


def _data(args: argparse.Namespace) -> int:
    import dataclasses

    import numpy as np
    import torch
    from PIL import Image

    from depthforge.data.cache import write_cache
    from depthforge.data.check import check_split, errors, format_report, save_samples_png
    from depthforge.data.convert import convert
    from depthforge.data.datamodule import build_dataset
    from depthforge.viz import colorize

    cfg = _data_config(args)
    splits = args.split or [cfg.data.train_split, cfg.data.val_split]
    if args.action == "check":
        reports = [check_split(cfg.data, split) for split in splits]
        print(format_report(reports))
        if args.png and save_samples_png(reports, args.png):
            print(f"sample pairs: {args.png}")
        n = errors(reports)
        print("OK" if n == 0 else f"{n} error(s)")
        return 0 if n == 0 else 1
    if not args.out:
        raise UsageError(f"{args.action}: --out is required")
    if args.action == "convert":
        counts = convert(cfg.data, splits, args.out)
        print(f"wrote {counts} to {args.out} (generic layout: data.name=folder data.root={args.out})")
        return 0
    if args.action == "cache":
        for split in splits:
            raw = dataclasses.replace(cfg.data, max_depth=float("inf"), cache=False)
            out = write_cache(build_dataset(raw, split, train=False), Path(args.out) / split)
            print(f"{split}: cache in {out} (use data.name=cache data.root={args.out})")
        return 0
    # preview: augmented training samples, as the training loop sees them
    torch.manual_seed(cfg.train.seed)
    dataset = build_dataset(cfg.data, cfg.data.train_split, train=True)
    rows = []
    for i in range(min(args.n, len(dataset))):
        s = dataset[i]
        depth = np.where(s["mask"][0].numpy(), s["depth"][0].numpy(), np.nan)
        rgb = (s["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        rows.append(np.concatenate([rgb, colorize(depth, vmin=0, vmax=cfg.data.max_depth)], axis=1))
    Image.fromarray(np.concatenate(rows, 0)).save(args.out)
    print(f"{args.out}: {len(rows)} augmented samples (image | depth, invalid pixels dark)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="depthforge", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=__version__)
    common = argparse.ArgumentParser(add_help=False)
    talk = common.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="print warnings and errors only")
    talk.add_argument("-v", "--verbose", action="store_true", help="print debug messages too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    models = argparse.ArgumentParser(add_help=False)
    group = models.add_argument_group("foundation models (extras hf / marigold)")
    group.add_argument("--model", action="append", metavar="SPEC",
                       help="hf:<repo id or folder> (transformers: Depth Anything, DPT, ZoeDepth, GLPN, Depth Pro), "
                            "marigold:<repo id or folder> (diffusers) or depthforge:<shared folder or repo id>")
    group.add_argument("--samples", "--ensemble-size", dest="ensemble_size", type=_positive_int,
                       help="diffusion checkpoints and Marigold: samples per image, ensembled (median; 2+ for a "
                            "diffusion checkpoint, 3+ for Marigold: uncertainty map too; default 1)")
    group.add_argument("--steps", "--denoise-steps", dest="denoise_steps", type=_positive_int,
                       help="diffusion checkpoints and Marigold: denoising steps (default: the model's)")
    group.add_argument("--processing-res", type=int, help="Marigold: processing resolution, 0 = native (default: "
                                                          "the pipeline's)")
    group.add_argument("--seed", type=int, help="diffusion checkpoints and Marigold: noise seed (default 0; same "
                                                "seed, same prediction)")

    p = sub.add_parser("train", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="train a model (default: the baseline on the embedded synthetic scenes)")
    p.add_argument("--config", help="recipe YAML file or bundled recipe name (e.g. baseline)")
    p.add_argument("--resume", help="continue this run folder from checkpoints/last.ckpt (overrides may follow)")
    p.add_argument("--data", help="data root; its layout is detected (or give data.name=...)")
    p.add_argument("--out", help="run folder (default runs/<time>-<model>)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (sets train.max_steps)")
    p.add_argument("--epochs", type=int, help="number of epochs (sets train.epochs)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where to train (sets train.device)")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. optim.lr=1e-4 data.batch_size=8")
    p.set_defaults(fn=_train)

    p = sub.add_parser("evaluate", parents=[common, models], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="score checkpoints or prediction folders; compare; write eval cards")
    p.add_argument("--checkpoint", nargs="+", action="extend", help="one or more checkpoints")
    p.add_argument("--ensemble", action="store_true",
                   help="score the mean prediction of the --checkpoint models as one source")
    p.add_argument("--predictions", nargs="+", action="extend", help="folders of <stem>.npy predictions in metres")
    p.add_argument("--card", help="re-run a saved eval card (JSON) and compare with its recorded numbers")
    p.add_argument("--data", help="data root in any layout train accepts, detected (default: the checkpoint's own "
                                  "data)")
    p.add_argument("--split", help="data split to score (default: the checkpoint's data.val_split, else val)")
    p.add_argument("--protocol", default="challenge",
                   help="challenge | challenge-224 | standard | nyu-eigen | kitti-garg | relative; several "
                        "comma-separated (challenge,standard) are scored from one prediction pass")
    p.add_argument("--max-depth", type=float, help="override the protocol's depth cap (metres)")
    p.add_argument("--protocol-batch", type=_positive_int, metavar="N",
                   help="batch size of a per-batch protocol (challenge: 16, as the course; participants A and C "
                        "used 32, B 64); recorded in the eval card. The pooled all-pixel RMSE does not depend on it")
    p.add_argument("--crop", help="none | eigen | garg | top,bottom,left,right (fractions or pixels)")
    p.add_argument("--alignment", help="none | median | scale | scale_shift | scale_shift_disparity (depth predictions fitted in inverse depth) | disparity (disparity predictions)")
    p.add_argument("--flip-tta", action="store_true", help="average with the horizontally flipped prediction")
    p.add_argument("--tta-scales", help=TTA_SCALES_HELP)
    p.add_argument("--uncertainty", choices=["model", "tta"],
                   help="also score each source's uncertainty: its own (Laplace head, Marigold ensemble) or the TTA "
                        "spread (with --flip-tta / --tta-scales): AUSE (RMSE, AbsRel), 1/2-sigma coverage, "
                        "per-image uncertainty-error correlation")
    p.add_argument("--json", help="write the eval card here (JSON, plus Markdown beside it)")
    p.add_argument("--sequence", action="append", metavar="DIR",
                   help="score on a video sequence folder (rgb/, depth/, optional intrinsics.txt and TUM poses.txt; "
                        "see depthforge.data.sequence): per-frame accuracy, TAE and flicker; repeatable")
    p.add_argument("--stabilize", default="none", help="--sequence: stabilisation modes to score, comma-separated "
                                                       "(none, causal, offline, flow, pose)")
    p.add_argument("--flow", default="farneback",
                   help="--sequence with flow or pose: farneback, dis or raft[:weights.pth]")
    p.add_argument("--report", help="folder for per-image CSV, worst-N grid, error-by-depth and density plots")
    p.add_argument("--worst", type=int, default=8, help="images in the worst-N grid")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("overrides", nargs="*", help="data overrides for the data scored, e.g. data.depth_scale=256")
    p.set_defaults(fn=_evaluate)

    p = sub.add_parser("predict", parents=[common, models], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="depth maps (raw + sidecar, preview, optional PLY) for images or folders")
    p.add_argument("--checkpoint", action="append",
                   help="a checkpoint; repeat it (--checkpoint A --checkpoint B) for their mean prediction "
                        "(an ensemble)")
    p.add_argument("--onnx", help="run an exported ONNX model (fp32 or INT8) instead of a checkpoint")
    p.add_argument("--backend", choices=["onnxruntime", "openvino"], help="--onnx: the runtime (default "
                   "onnxruntime; openvino needs the openvino extra; benchmarks/latency.py says which is faster)")
    p.add_argument("--threads", type=_positive_int, help="--onnx: CPU threads (default: one per core)")
    p.add_argument("--ort-opt-level", choices=["disable", "basic", "extended", "all"],
                   help="--onnx with onnxruntime: graph optimisation level (default all)")
    p.add_argument("inputs", nargs="+", help="image files, folders, video files (.mp4 .avi .mov .mkv .webm) or a "
                                             "camera (camera:0, OpenCV; streamed until --max-frames or Ctrl-C)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", nargs="+", action="extend", choices=DEPTH_FORMATS,
                   help="raw depth formats, each with a <file>.json sidecar (default: npy)")
    p.add_argument("--cmap", default="magma", help="matplotlib colour map of the <stem>_color.png preview")
    p.add_argument("--vmax", type=float, help="fixed colour range 0..vmax metres (default: per image)")
    p.add_argument("--flip-tta", action="store_true", help="average with the horizontally flipped prediction")
    p.add_argument("--tta-scales", help=TTA_SCALES_HELP)
    p.add_argument("--ply", action="store_true", help="also write a coloured point cloud <stem>.ply")
    p.add_argument("--tile", help="tiled inference for large images: window HxW in pixels, e.g. 720x1280")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction")
    p.add_argument("--fx", type=float, help="focal length in pixels (else EXIF, else the --hfov guess)")
    p.add_argument("--fy", type=float, help="vertical focal length in pixels (default: --fx)")
    p.add_argument("--cx", type=float, help="principal point x in pixels (default: the image centre)")
    p.add_argument("--cy", type=float, help="principal point y in pixels (default: the image centre)")
    p.add_argument("--hfov", type=float, default=60.0, help="horizontal field of view guess in degrees")
    p.add_argument("--calibrate", help="CSV of x,y,metres known distances: fit scale (and --shift) per image")
    p.add_argument("--point", action="append", help="a known distance x,y,metres (repeat); with or without --calibrate")
    p.add_argument("--shift", action="store_true", help="calibration also fits a shift")
    p.add_argument("--uncertainty", choices=["model", "tta"],
                   help="also write <stem>_uncertainty.npy: the model's own (a Laplace head, a checkpoint ensemble, "
                        "a diffusion model with --samples 2+ or Marigold with 3+ write theirs always) or the spread "
                        "of the TTA passes (needs --flip-tta / --tta-scales)")
    p.add_argument("--batch-size", type=int, default=8, help="images of one size predicted together")
    p.add_argument("--sequence", action="store_true",
                   help="treat each input folder as one video (its images in name order): per-frame depth, a "
                        "side-by-side video, and --stabilize")
    p.add_argument("--stabilize", choices=["none", "causal", "offline", "flow", "pose"], default="none",
                   help="video: smooth each frame's global scale over time, online (causal: frames so far) or over "
                        "the whole clip (offline: two passes); flow: causal, and local flicker filtered along the "
                        "optical flow too; pose: flow, the previous depth moved by the camera motion estimated "
                        "from the flow (static scenes; the camera from --fx or --hfov)")
    p.add_argument("--flow", default="farneback", help="--stabilize flow/pose: farneback or dis (OpenCV), or raft "
                   "(torchvision RAFT-small; raft:<weights.pth> for a local file)")
    p.add_argument("--max-frames", type=_positive_int, help="video / camera: stop after this many frames "
                   "(a camera streams until stopped otherwise)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.set_defaults(fn=_predict)

    p = sub.add_parser("data", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="check, convert, cache or preview a data set")
    p.add_argument("action", choices=["check", "convert", "cache", "preview"], help="what to do")
    p.add_argument("root", nargs="?", help="data root (manifest CSV, .mat file or folder)")
    p.add_argument("--format", help="synthetic | challenge | folder | manifest | nyu | nyu-mat | kitti | cache")
    p.add_argument("--config", help="recipe whose data section to use")
    p.add_argument("--split", nargs="+", action="extend", help="splits (default: the config's train and val)")
    p.add_argument("--png", help="check: write sample pairs here")
    p.add_argument("--out", help="convert/cache: output folder; preview: PNG file")
    p.add_argument("--n", type=int, default=8, help="preview: samples")
    p.add_argument("overrides", nargs="*", help="data overrides, e.g. data.depth_scale=256")
    p.set_defaults(fn=_data)

    p = sub.add_parser("push", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="save a checkpoint as a shareable model folder (safetensors, config.json, model card); upload it with --repo")
    p.add_argument("--checkpoint", required=True, help="a .ckpt written by depthforge train")
    p.add_argument("--out", required=True, help="folder to write (load it back with depthforge.load or "
                                                "--model depthforge:FOLDER)")
    p.add_argument("--card", action="append", help="an eval card JSON whose metrics go into the model card (repeat)")
    p.add_argument("--repo", help="also upload to this Hugging Face Hub repo id (network and a token needed)")
    p.add_argument("--private", action="store_true", help="create the Hub repo private")
    p.set_defaults(fn=_push)

    p = sub.add_parser("demo", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="a local web app (Gradio) to try models on photos and videos and measure with them")
    p.add_argument("--checkpoint", action="append", help="a checkpoint (repeat for several models to choose from)")
    p.add_argument("--model", action="append", metavar="SPEC", help="hf:... / marigold:... / depthforge:... (repeat)")
    p.add_argument("--onnx", help="an exported ONNX model")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 shares it on the network)")
    p.add_argument("--port", type=int, default=7860, help="port")
    p.add_argument("--max-side", type=_positive_int, default=1600, help="larger images are downscaled to this side")
    p.add_argument("--max-frames", type=_positive_int, default=60, help="video: frames processed at most")
    p.set_defaults(fn=_demo)

    p = sub.add_parser("export", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="export a checkpoint to ONNX or torch.export, with a parity check")
    p.add_argument("--checkpoint", required=True, help="a .ckpt written by depthforge train")
    p.add_argument("--format", default="onnx", choices=["onnx", "torch"], help="onnx (ONNX Runtime) or torch (.pt2)")
    p.add_argument("--out", required=True, help="output path (suffix .onnx / .pt2 is set)")
    p.add_argument("--tol", type=float, default=1e-4, help="largest allowed |exported - eager|")
    p.add_argument("--quantize", choices=["int8"], help="also write <out>.int8.onnx (ONNX Runtime quantisation), "
                                                       "scored against the fp32 file on the model's val split")
    p.add_argument("--quant-mode", choices=["static", "dynamic"], default="static",
                   help="static: weights and activations (QDQ, calibrated); dynamic: weights only")
    p.add_argument("--calibration", help="folder of images to calibrate on (default: the model's training split)")
    p.add_argument("--calibration-n", type=_positive_int, default=200, help="calibration images")
    p.add_argument("--calibration-method", choices=["minmax", "percentile", "entropy"], default="minmax",
                   help="static: how activation ranges are set from the calibration images")
    p.add_argument("--quant-exclude", choices=["none", "ends", "decoder"], default="none",  # quantize.EXCLUDES
                   help="layers kept in fp32: ends = the first convolution and everything from the last one on (the "
                        "depth head); decoder = everything but the encoder (only the encoder runs in INT8)")
    p.add_argument("--accuracy-protocol", default="standard", help="protocol of the fp32 vs int8 check")
    p.add_argument("--accuracy-split", help="split of the check (default: the model's data.val_split)")
    p.add_argument("--no-accuracy", action="store_true", help="skip the fp32 vs int8 scoring")
    p.set_defaults(fn=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    given = list(argv) if argv is not None else sys.argv[1:]
    args, extra = parser.parse_known_args(separate_values(given))
    args.argv = given
    args.verbosity = 1 if args.verbose else -1 if args.quiet else 0
    configure_console(args.verbosity)
    # Overrides may follow options (argparse stops filling positionals at the first option).
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from depthforge.config import ConfigError
    from depthforge.data import DataError
    from depthforge.inference import CheckpointError
    from depthforge.inference.export import ParityError
    from depthforge.models import PretrainedWeightsError

    try:
        return args.fn(args)
    except UsageError as err:
        print(f"depthforge {args.command}: error: {err}\n(see depthforge {args.command} --help)", file=sys.stderr)
        return 2
    except (ConfigError, DataError, CheckpointError, PretrainedWeightsError, ParityError, FileNotFoundError,
            KeyError, ValueError) as err:
        print(f"depthforge {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
