"""``depthforge push``: a checkpoint as a shareable model folder, optionally uploaded to the Hub."""

from __future__ import annotations

import argparse

from depthforge.cli.common import add_license_policy, subparser


def add_parser(sub, parents: list) -> None:
    p = subparser(sub, "push", parents, "save a checkpoint as a shareable model folder (safetensors, config.json, "
                                        "model card); upload it with --repo")
    p.add_argument("--checkpoint", required=True, help="a .ckpt written by depthforge train")
    add_license_policy(p)
    p.add_argument("--out", required=True, help="folder to write (load it back with depthforge.load or "
                                                "--model depthforge:FOLDER)")
    p.add_argument("--card", action="append", help="an eval card JSON whose metrics go into the model card (repeat)")
    p.add_argument("--repo", help="also upload to this Hugging Face Hub repo id (network and a token needed)")
    p.add_argument("--private", action="store_true", help="create the Hub repo private")
    p.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    if args.repo:  # before the folder is written
        from depthforge.cli.common import require_extra

        require_extra("hf", "huggingface_hub")
    from depthforge.evaluation.card import read_card
    from depthforge.sources import load_checkpoint
    from depthforge.sources.hub import push, save_pretrained

    from depthforge.sources.license_sources import of_checkpoint
    from depthforge.sources.licenses import check

    licenses = of_checkpoint(args.checkpoint)
    check(licenses, args.license_policy, args.checkpoint)
    model, cfg = load_checkpoint(args.checkpoint)
    cards = [read_card(c) for c in args.card or []]
    folder = save_pretrained(model, cfg, args.out, cards, licenses)
    print(f"{args.checkpoint} -> {folder} (model.safetensors, config.json, README.md with {len(cards)} eval card(s))")
    if args.repo:
        push(folder, args.repo, private=args.private)
        print(f"uploaded to https://huggingface.co/{args.repo}")
    return 0
