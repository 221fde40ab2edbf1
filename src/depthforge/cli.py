"""``depthforge`` command line: parse, build a config, call the library. No logic lives here."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from depthforge import __version__


def _train(args: argparse.Namespace) -> int:
    from depthforge.config import load_config
    from depthforge.engine import train

    overrides = list(args.overrides)
    if args.data:
        overrides = [f"data.root={args.data}", "data.name=challenge"] + overrides
    for flag, key in ((args.out, "out"), (args.max_steps, "train.max_steps"), (args.epochs, "train.epochs"),
                      (args.device, "train.device")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    cfg = load_config(args.config, overrides)
    out = train(cfg)
    print(f"run folder: {out}\n  best: {out / 'checkpoints' / 'best.ckpt'}\n  last: {out / 'checkpoints' / 'last.ckpt'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from depthforge.metrics import get_protocol
    from depthforge.metrics.card import read_card, write_card
    from depthforge.metrics.protocols import Protocol
    from depthforge.metrics.report import comparison_table, evaluate_sources

    command = "depthforge " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("depthforge") else ""
    if args.card:
        card = read_card(args.card)
        source = dict(card["source"])
        source.pop("sha256", None)
        source["data_config"] = card["data"].get("config")
        new = evaluate_sources([source], Protocol.from_dict(card["protocol"]), None, card["data"]["split"],
                               args.device, command=command)[0]
        print(comparison_table([card, new]))
        diff = max(abs(card["metrics"][k] - new["metrics"][k]) for k in card["metrics"]
                   if card["metrics"][k] == card["metrics"][k])  # NaN != NaN: undefined metrics are skipped
        print(f"max |recorded - now| = {diff:.3g}")
        return 0 if diff <= 1e-6 else 1
    sources = [{"checkpoint": c} for c in args.checkpoint or []] + [{"predictions": d} for d in args.predictions or []]
    if not sources:
        raise SystemExit("evaluate: give --checkpoint CKPT..., --predictions DIR... or --card FILE")
    crop = args.crop
    if crop and "," in crop:
        crop = [float(v) for v in crop.split(",")]
    protocol = get_protocol(args.protocol, args.max_depth, crop=crop, alignment=args.alignment,
                            flip_tta=True if args.flip_tta else None)
    cards = evaluate_sources(sources, protocol, args.data, args.split, args.device, args.report, args.worst, command)
    print(comparison_table(cards))
    if args.json:
        if len(cards) == 1:
            write_card(cards[0], args.json)
        else:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(cards, indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from depthforge.inference import Predictor, expand_inputs, load_checkpoint
    from depthforge.inference.io import write_prediction

    model, cfg = load_checkpoint(args.checkpoint, args.device)
    predictor = Predictor(model, cfg.data, args.device, flip=args.flip_tta)
    paths = expand_inputs(args.inputs)
    for path in paths:
        depth = predictor.predict_file(path)
        npy, png = write_prediction(depth, args.out, path.stem, args.cmap, args.vmax)
        print(f"{path} -> {npy}, {png}  (depth {depth.min():.2f}..{depth.max():.2f} m)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="depthforge", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (default: the baseline on the embedded synthetic scenes)")
    p.add_argument("--config", help="recipe YAML file or bundled recipe name (e.g. baseline)")
    p.add_argument("--data", help="challenge-layout data root (sets data.name=challenge)")
    p.add_argument("--out", help="run folder (default runs/<time>-<model>)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. optim.lr=1e-4 data.batch_size=8")
    p.set_defaults(fn=_train)

    p = sub.add_parser("evaluate", help="score checkpoints or prediction folders; compare; write eval cards")
    p.add_argument("--checkpoint", nargs="+", help="one or more checkpoints")
    p.add_argument("--predictions", nargs="+", help="folders of <stem>.npy predictions in metres")
    p.add_argument("--card", help="re-run a saved eval card (JSON) and compare with its recorded numbers")
    p.add_argument("--data", help="challenge-layout data root (default: the checkpoint's own data)")
    p.add_argument("--split", default="val")
    p.add_argument("--protocol", default="challenge", help="challenge | standard | nyu-eigen | kitti-garg | relative")
    p.add_argument("--max-depth", type=float, help="override the protocol's depth cap (metres)")
    p.add_argument("--crop", help="none | eigen | garg | top,bottom,left,right (fractions or pixels)")
    p.add_argument("--alignment", help="none | median | scale | scale_shift | scale_shift_disparity")
    p.add_argument("--flip-tta", action="store_true", help="average with the horizontally flipped prediction")
    p.add_argument("--json", help="write the eval card here (JSON, plus Markdown beside it)")
    p.add_argument("--report", help="folder for per-image CSV, worst-N grid, error-by-depth and density plots")
    p.add_argument("--worst", type=int, default=8, help="images in the worst-N grid")
    p.add_argument("--device", default="cpu")
    p.set_defaults(fn=_evaluate)

    p = sub.add_parser("predict", help="depth maps for images or folders")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder (<stem>.npy in metres and <stem>.png)")
    p.add_argument("--cmap", default="magma")
    p.add_argument("--vmax", type=float, help="fixed colour range 0..vmax metres (default: per image)")
    p.add_argument("--flip-tta", action="store_true", help="average with the horizontally flipped prediction")
    p.add_argument("--device", default="cpu")
    p.set_defaults(fn=_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from depthforge.config import ConfigError
    from depthforge.data import DataError
    from depthforge.inference import CheckpointError
    from depthforge.models import PretrainedWeightsError

    try:
        return args.fn(args)
    except (ConfigError, DataError, CheckpointError, PretrainedWeightsError, FileNotFoundError, KeyError,
            ValueError) as err:
        print(f"depthforge {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
