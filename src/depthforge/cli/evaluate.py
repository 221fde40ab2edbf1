"""``depthforge evaluate``: score sources under protocols (or on video sequences), compare, write eval cards."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from depthforge.cli.common import (TTA_SCALES_HELP, UsageError, add_devices_option, model_specs, policed,
                                   positive_int, relaunch, sampling, scales, shard_from_env, subparser)


def add_parser(sub, parents: list) -> None:
    p = subparser(sub, "evaluate", parents, "score checkpoints or prediction folders; compare; write eval cards")
    p.add_argument("--checkpoint", nargs="+", action="extend", help="one or more checkpoints")
    p.add_argument("--ensemble", action="store_true",
                   help="score the mean prediction of the --checkpoint models as one source")
    p.add_argument("--onnx", nargs="+", action="extend", metavar="FILE",
                   help="exported models, each scored through its runtime: .onnx (ONNX Runtime), .xml (OpenVINO), "
                        ".tflite (LiteRT)")
    p.add_argument("--predictions", nargs="+", action="extend", help="folders of <stem>.npy predictions in metres")
    p.add_argument("--card", help="re-run a saved eval card (JSON) and compare with its recorded numbers")
    p.add_argument("--data", help="data root in any layout train accepts, detected (default: the checkpoint's own "
                                  "data)")
    p.add_argument("--split", help="data split to score (default: the checkpoint's data.val_split, else val)")
    p.add_argument("--protocol", default="challenge",
                   help="challenge | challenge-224 | standard | nyu-eigen | kitti-garg | relative; several "
                        "comma-separated (challenge,standard) are scored from one prediction pass")
    p.add_argument("--max-depth", type=float, help="override the protocol's depth cap (metres)")
    p.add_argument("--protocol-batch", type=positive_int, metavar="N",
                   help="batch size of a per-batch protocol (challenge: 16, as the course; participants A and C "
                        "used 32, B 64); recorded in the eval card. The pooled all-pixel RMSE does not depend on it")
    p.add_argument("--crop", help="none | eigen | garg | top,bottom,left,right (fractions or pixels)")
    p.add_argument("--alignment", help="none | median | scale | scale_shift | scale_shift_disparity (depth "
                                       "predictions fitted in inverse depth) | disparity (disparity predictions)")
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
    add_devices_option(p)
    p.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from depthforge.evaluation import get_protocol
    from depthforge.evaluation.card import write_card
    from depthforge.evaluation.report import comparison_table, evaluate_sources

    if args.card:
        return _rerun_card(args)
    if (code := relaunch(args)) is not None:
        return code
    if args.ensemble and len(args.checkpoint or []) < 2:
        raise UsageError("--ensemble averages several checkpoints; give two or more with --checkpoint")
    if args.sequence:
        return _sequences(args)
    checkpoints = [args.checkpoint] if args.ensemble else args.checkpoint or []
    from depthforge.sources.loading import spec_from

    sources = (policed(args, [{"checkpoint": c, **sampling(args)} for c in checkpoints] + model_specs(args)
                       + [spec_from(f) for f in args.onnx or []])
               + [{"predictions": d} for d in args.predictions or []])
    if not sources:
        raise UsageError("give --checkpoint CKPT..., --model SPEC..., --onnx FILE..., --predictions DIR... or --card "
                         "FILE")
    crop = args.crop
    if crop and "," in crop:
        crop = [float(v) for v in crop.split(",")]
    protocols = [get_protocol(name.strip(), args.max_depth, crop=crop, alignment=args.alignment,
                              flip_tta=True if args.flip_tta else None, tta_scales=scales(args),
                              batch_size=args.protocol_batch) for name in args.protocol.split(",")]
    shard, device = shard_from_env(args.device)
    if shard:  # torchrun: each rank predicts every world-th batch; the scores are gathered over gloo
        import torch.distributed as dist

        dist.init_process_group("gloo")
    try:
        cards = evaluate_sources(sources, protocols, args.data, args.split, device, args.report, args.worst,
                                 _command(args), args.overrides, args.uncertainty, shard)
    finally:
        if shard:
            dist.destroy_process_group()
    if shard and shard[0] != 0:
        return 0  # every rank holds the cards; rank 0 alone prints and writes them
    print(comparison_table(cards))
    if args.json:
        if len(cards) == 1:
            write_card(cards[0], args.json)
            if isinstance(cards[0]["source"].get("checkpoint"), str):  # to the tracker that trained it, if any
                from depthforge.engine.loggers import log_card

                run_id = log_card(args.json, cards[0]["source"]["checkpoint"])
                if run_id:
                    print(f"{args.json}: logged to the MLflow run {run_id} that trained the checkpoint")
        else:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(cards, indent=2))
    return 0


def _command(args: argparse.Namespace) -> str:
    return "depthforge " + " ".join(args.argv)


def _rerun_card(args: argparse.Namespace) -> int:
    """``evaluate --card FILE``: the recorded source, data and protocol scored again; exit 1 when numbers moved."""
    from depthforge.evaluation.card import card_source, read_card
    from depthforge.evaluation.protocols import Protocol
    from depthforge.evaluation.report import comparison_table, evaluate_sources

    card = read_card(args.card)
    source = card_source(card, args.card)
    source["data_config"] = card["data"].get("config")
    new = evaluate_sources([source], Protocol.from_dict(card["protocol"]), None, card["data"]["split"],
                           args.device, command=_command(args), uncertainty=card.get("uncertainty"))[0]
    print(comparison_table([card, new], labels=["recorded", "now"]))
    diff = max(abs(card["metrics"][k] - new["metrics"][k]) for k in card["metrics"]
               if card["metrics"][k] == card["metrics"][k])  # NaN != NaN: undefined metrics are skipped
    print(f"max |recorded - now| = {diff:.3g}")
    return 0 if diff <= 1e-6 else 1


def _sequences(args: argparse.Namespace) -> int:
    """``evaluate --sequence DIR``: per-frame accuracy, TAE and flicker for each source and stabilisation mode."""
    from depthforge.evaluation.sequence import evaluate_sequences, sequence_table
    from depthforge.video.stabilize import MODES

    modes = tuple(m.strip() for m in args.stabilize.split(","))
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise UsageError(f"--stabilize {','.join(unknown)}: choose from {', '.join(MODES)} (comma-separated)")
    specs = policed(args, [{"checkpoint": c, **sampling(args)} for c in args.checkpoint or []] + model_specs(args))
    if not specs:
        raise UsageError("--sequence scores a model: give --checkpoint CKPT or --model SPEC")
    rows = evaluate_sequences(specs, args.sequence, modes, args.max_depth, args.flow, args.device)
    print(sequence_table(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"command": _command(args), "rows": rows}, indent=2))
    return 0
