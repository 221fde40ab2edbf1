"""``depthforge models``: the models depthforge knows, each with its licence and whether it may be used commercially."""

from __future__ import annotations

import argparse
import json

from depthforge.cli.common import subparser


def add_parser(sub, parents: list) -> None:
    p = subparser(sub, "models", parents, "list the models depthforge trains and the foundation models it knows, "
                                          "with their licences")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(fn=run)


def recipe_rows() -> list[dict]:
    """Each registered model: the licence of the ImageNet weights ``model.pretrained=imagenet`` starts it from."""
    from depthforge.config import Config
    from depthforge.models.registry import list_models
    from depthforge.sources.license_sources import encoder_records

    rows = []
    for name in list_models():
        if name == "hf":  # a transformers model: listed below, by repo
            continue
        cfg = Config()
        cfg.model.name, cfg.model.pretrained = name, "imagenet"
        try:
            records = encoder_records(cfg)
        except ImportError as err:  # a model whose extra is not installed (diffusers)
            records = [{"license": "?", "terms": "?", "read_from": f"needs {err.name}"}]
        for r in records:
            rows.append({"model": name, "imagenet_weights": r["read_from"], "license": r["license"],
                         "terms": r["terms"] + (f" ({r['note']})" if r.get("note") else "")})
    return rows


def foundation_rows() -> list[dict]:
    from depthforge.sources.license_sources import KNOWN, KNOWN_READ_ON
    from depthforge.sources.licenses import RESTRICTED, terms_of

    return [{"model": f"{'marigold' if 'marigold' in repo else 'hf'}:{repo}", "kind": kind, "weights": size,
             "license": lid or "unknown (none stated)",
             "terms": terms_of(lid) + (f" ({RESTRICTED[lid]})" if lid in RESTRICTED else ""), "read": KNOWN_READ_ON}
            for repo, (lid, kind, size) in KNOWN.items()]


def _table(rows: list[dict], keys: list[str]) -> str:
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(widths[k]) for k in keys)]
    lines += ["  ".join(str(r[k]).ljust(widths[k]) for k in keys) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def run(args: argparse.Namespace) -> int:
    from depthforge.sources.license_sources import KNOWN_READ_ON
    from depthforge.sources.licenses import POLICY_ENV, PROJECT

    recipes, foundation = recipe_rows(), foundation_rows()
    if args.json:
        print(json.dumps({"recipes": recipes, "foundation": foundation}, indent=2))
        return 0
    print(f"depthforge recipes (depthforge train model.name=...; depthforge's code: {PROJECT}; with "
          "model.pretrained=none nothing else is derived from)")
    print(_table(recipes, ["model", "imagenet_weights", "license", "terms"]))
    print(f"\nfoundation models (--model SPEC; licences as their model cards stated them on {KNOWN_READ_ON}; "
          "a local folder's own card is read instead)")
    print(_table(foundation, ["model", "kind", "weights", "license", "terms"]))
    print(f"\n--license-policy commercial (or {POLICY_ENV}=commercial) refuses every source whose terms are not "
          "'commercial', before anything is downloaded")
    return 0
