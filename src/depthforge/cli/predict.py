"""``depthforge predict``: depth files for images, folders, globs, videos and cameras, through
`depthforge.predict.save_predictions` (the Python API's pipeline; nothing is computed here)."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from depthforge.cli.common import (DEPTH_FORMATS, TTA_SCALES_HELP, UsageError, add_devices_option,
                                   add_source_options, positive_int, relaunch, scales, shard_from_env, source_spec,
                                   subparser)
from depthforge.console import print_line


def add_parser(sub, parents: list) -> None:
    p = subparser(sub, "predict", parents, "depth maps (raw + sidecar, preview, optional PLY) for images or folders")
    add_source_options(p)
    p.add_argument("inputs", nargs="+", help="image files, folders, globs ('photos/*.jpg'), video files (.mp4 .avi "
                                             ".mov .mkv .webm) or a camera (camera:0, OpenCV; streamed until "
                                             "--max-frames or Ctrl-C)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", nargs="+", action="extend", choices=DEPTH_FORMATS,
                   help="raw depth formats, each with a <file>.json sidecar (default: npy)")
    p.add_argument("--cmap", default="magma", help="matplotlib colour map of the <stem>_color.png preview")
    p.add_argument("--vmax", type=float, help="fixed colour range 0..vmax metres (default: per image)")
    p.add_argument("--no-colorbar", dest="colorbar", action="store_false",
                   help="the <stem>_color.png preview without its colour bar (labelled in metres)")
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
    p.add_argument("--max-frames", type=positive_int, help="video / camera: stop after this many frames "
                   "(a camera streams until stopped otherwise)")
    p.add_argument("--skip-existing", action="store_true",
                   help="resume an interrupted run: images whose files are all there and whole are not done again")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (under torchrun: cuda takes "
                                                   "cuda:LOCAL_RANK)")
    add_devices_option(p)
    p.set_defaults(fn=run)


def options(args: argparse.Namespace) -> dict:
    """The flags as `depthforge.predict.Options` keywords."""
    from depthforge.geometry.calibration import POINT_FORMAT, parse_point, read_points
    from depthforge.io import DataError

    points = read_points(args.calibrate) if args.calibrate else []
    for text in args.point or []:
        try:
            points.append(parse_point(text))
        except DataError:
            raise UsageError(f"--point {text}: give {POINT_FORMAT}") from None
    return {"flip_tta": args.flip_tta, "tta_scales": scales(args) or (1.0,), "tile": args.tile,
            "overlap": args.overlap, "uncertainty": args.uncertainty, "batch_size": args.batch_size,
            "points": points, "shift": True if args.shift else None, "fx": args.fx, "fy": args.fy, "cx": args.cx,
            "cy": args.cy, "hfov": args.hfov, "sequence": args.sequence, "stabilize": args.stabilize,
            "flow": args.flow, "max_frames": args.max_frames}


def run(args: argparse.Namespace) -> int:
    from depthforge.predict import load, save_predictions

    if (code := relaunch(args)) is not None:
        return code
    shard, device = shard_from_env(args.device)
    if shard:  # a group only to finish together: torchrun stops every rank as soon as one exits non-zero
        import torch.distributed as dist

        dist.init_process_group("gloo")
    pipeline = load(source_spec(args), device)
    saved = save_predictions(pipeline, args.inputs, args.out, tuple(args.format or DEPTH_FORMATS[:1]),
                             ply=args.ply, cmap=args.cmap, vmax=args.vmax, skip_existing=args.skip_existing,
                             colorbar=args.colorbar,
                             shard=shard, **options(args))
    failed = []
    for item in tqdm(saved, desc="predict", unit="image", disable=not sys.stderr.isatty()):
        if item.error is not None:
            failed.append(f"{item.input} ({item.error})")
            continue
        if item.frames is not None:
            print_line(f"{item.input} -> {item.frames} frames, {item.paths[0]}")
            continue
        r = item.result
        unit = "m" if r.kind == "metric" else f"({r.kind})"
        print_line(f"{item.input} -> {', '.join(str(p) for p in item.paths)}  "
                   f"(depth {r.depth.min():.3g}..{r.depth.max():.3g} {unit})")
    if shard:  # every rank waits for the others and learns whether any input failed anywhere
        import torch

        total = torch.tensor([len(failed)])
        dist.all_reduce(total)
        dist.destroy_process_group()
        if total.item() and not failed:
            return 1
    if failed:
        print(f"depthforge predict: error: {len(failed)} input(s) skipped, nothing written for them (the others "
              f"were written): {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0
