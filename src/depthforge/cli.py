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


def _print_table(result: dict, title: str) -> None:
    metrics = result["metrics"]
    print(f"{title}  (protocol {result['protocol']['name']}, n={result['n']})")
    print("  " + "  ".join(f"{k:>8}" for k in metrics))
    print("  " + "  ".join(f"{v:8.4f}" for v in metrics.values()))


def _evaluate(args: argparse.Namespace) -> int:
    import dataclasses

    from depthforge.config import DataConfig
    from depthforge.data import build_dataset
    from depthforge.inference import load_checkpoint
    from depthforge.metrics import get_protocol
    from depthforge.metrics.runner import evaluate_model, evaluate_predictions

    if bool(args.checkpoint) == bool(args.predictions):
        raise SystemExit("evaluate: give exactly one of --checkpoint CKPT or --predictions DIR")
    model, data_cfg = None, DataConfig()
    if args.checkpoint:
        model, cfg = load_checkpoint(args.checkpoint, args.device)
        data_cfg = cfg.data
    elif not args.data:
        raise SystemExit("evaluate --predictions needs --data ROOT (the data set the predictions belong to)")
    if args.data:
        data_cfg = dataclasses.replace(data_cfg, name="challenge", root=args.data)
    protocol = get_protocol(args.protocol, args.max_depth)
    # Targets are loaded raw; the protocol alone decides clipping and masking.
    dataset = build_dataset(dataclasses.replace(data_cfg, max_depth=float("inf")), args.split, train=False)
    if model is not None:
        result = evaluate_model(model, dataset, data_cfg, protocol, args.device)
        result["source"] = {"checkpoint": str(args.checkpoint)}
    else:
        result = evaluate_predictions(args.predictions, dataset, protocol)
        result["source"] = {"predictions": str(args.predictions)}
    result["data"] = {"name": data_cfg.name, "root": data_cfg.root, "split": args.split}
    _print_table(result, str(args.checkpoint or args.predictions))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from depthforge.inference import Predictor, expand_inputs, load_checkpoint
    from depthforge.inference.io import write_prediction

    model, cfg = load_checkpoint(args.checkpoint, args.device)
    predictor = Predictor(model, cfg.data, args.device)
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

    p = sub.add_parser("evaluate", help="score a checkpoint or a folder of predictions")
    p.add_argument("--checkpoint")
    p.add_argument("--predictions", help="folder of <stem>.npy predictions in metres")
    p.add_argument("--data", help="challenge-layout data root (default: the checkpoint's own data)")
    p.add_argument("--split", default="val")
    p.add_argument("--protocol", default="challenge", choices=["challenge", "standard"])
    p.add_argument("--max-depth", type=float, help="override the protocol's depth cap (metres)")
    p.add_argument("--json", help="write the result as JSON here")
    p.add_argument("--device", default="cpu")
    p.set_defaults(fn=_evaluate)

    p = sub.add_parser("predict", help="depth maps for images or folders")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder (<stem>.npy in metres and <stem>.png)")
    p.add_argument("--cmap", default="magma")
    p.add_argument("--vmax", type=float, help="fixed colour range 0..vmax metres (default: per image)")
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
