"""``depthforge train``: a recipe and overrides -> a run folder with checkpoints."""

from __future__ import annotations

import argparse

from depthforge.cli.common import add_license_policy, detected, subparser
from depthforge.console import configure_console


def add_parser(sub, parents: list) -> None:
    p = subparser(sub, "train", parents, "train a model (default: the baseline on the embedded synthetic scenes)")
    p.add_argument("--config", help="recipe YAML file or bundled recipe name (baseline, cpu, gpu, realtime, "
                                    "small-real, diffusion); default: none, i.e. the baseline model for 3 epochs on "
                                    "the embedded scenes")
    p.add_argument("--resume", help="continue this run folder from checkpoints/last.ckpt (overrides may follow)")
    p.add_argument("--data", help="data root; its layout is detected (or give data.name=...)")
    p.add_argument("--out", help="run folder (default runs/<time>-<model>)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (sets train.max_steps)")
    p.add_argument("--epochs", type=int, help="number of epochs (sets train.epochs)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"],
                   help="where to train (sets train.device; default: the config's, auto: a GPU when there is one)")
    add_license_policy(p)
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. optim.lr=1e-4 data.batch_size=8")
    p.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from depthforge.config import load_config
    from depthforge.engine import train
    from depthforge.engine.train import resume_config

    configure_console(args.verbosity)  # again: importing Lightning attached its own handler
    overrides = list(args.overrides)
    if args.data:
        overrides = [f"data.root={args.data}", *detected(args.data, overrides)] + overrides
    for flag, key in ((args.out, "out"), (args.max_steps, "train.max_steps"), (args.epochs, "train.epochs"),
                      (args.device, "train.device"), (args.license_policy, "model.license_policy")):
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
