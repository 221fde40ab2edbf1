"""``depthforge data``: check, convert, cache or preview a data set."""

from __future__ import annotations

import argparse

from depthforge.cli.common import UsageError, detected, subparser


def add_parser(sub, parents: list) -> None:
    p = subparser(sub, "data", parents, "check, convert, cache or preview a data set")
    p.add_argument("action", choices=["check", "convert", "cache", "preview"], help="what to do")
    p.add_argument("root", nargs="?", help="data root (manifest CSV, .mat file or folder)")
    p.add_argument("--format", help="synthetic | challenge | folder | manifest | nyu | nyu-mat | kitti | cache "
                                    "(default: detected from the root's layout)")
    p.add_argument("--config", help="recipe whose data section to use (default: none, the built-in settings)")
    p.add_argument("--split", nargs="+", action="extend", help="splits (default: the config's train and val)")
    p.add_argument("--png", help="check: write sample pairs here")
    p.add_argument("--out", help="convert/cache: output folder; preview: PNG file")
    p.add_argument("--n", type=int, default=8, help="preview: samples")
    p.add_argument("overrides", nargs="*", help="data overrides, e.g. data.depth_scale=256")
    p.set_defaults(fn=run)


def _config(args: argparse.Namespace):
    from depthforge.config import load_config

    overrides = list(args.overrides)
    if args.format:
        overrides.insert(0, f"data.name={args.format}")
    if args.root:
        overrides = [f"data.root={args.root}", *detected(args.root, overrides, "--format <layout>")] + overrides
    return load_config(args.config, overrides)


def run(args: argparse.Namespace) -> int:
    from depthforge.data.datamodule import cache_splits
    from depthforge.data.check import check_split, errors, format_report, save_samples_png
    from depthforge.data.convert import convert
    from depthforge.data.preview import preview_samples

    cfg = _config(args)
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
        for split, out in cache_splits(cfg.data, splits, args.out):
            print(f"{split}: cache in {out} (use data.name=cache data.root={args.out})")
        return 0
    n = preview_samples(cfg, args.out, args.n)
    print(f"{args.out}: {n} augmented samples (image | depth, invalid pixels dark)")
    return 0
