"""Eval cards: a result saved with everything needed to re-run it (JSON) and to read it (Markdown)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from itertools import zip_longest
from pathlib import Path

from depthforge.version import __version__


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_paths(source: dict) -> list[str]:
    """A source's checkpoint as a list: one path, or an ensemble's members."""
    ck = source["checkpoint"]
    return list(ck) if isinstance(ck, (list, tuple)) else [ck]


def make_card(result: dict, source: dict, data: dict, command: str) -> dict:
    """Add provenance to an evaluator result: what was scored, on what data, by which command and version."""
    if "checkpoint" in source:
        hashes = [file_sha256(p) if Path(p).is_file() else None for p in checkpoint_paths(source)]
        source = {**source, "sha256": hashes if isinstance(source["checkpoint"], (list, tuple)) else hashes[0]}
    return {**result, "source": source, "data": data, "command": command, "depthforge": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": f"{platform.machine()} {platform.node()}"}


def _root(root: str | None) -> str:
    """`` `root` `` for a data set on disk; the embedded scenes have none (rendered in memory)."""
    return f" `{root}`" if root else " (rendered in memory, no files)"


def card_markdown(card: dict) -> str:
    """A human-readable card: metrics table, then the protocol field by field."""
    m, p = card["metrics"], card["protocol"]
    src = next(card["source"][k] for k in ("checkpoint", "predictions", "onnx", "model") if k in card["source"])
    members = src if isinstance(src, list) else [src]
    sha = card["source"].get("sha256")
    shas = sha if isinstance(sha, list) else [sha]  # an ensemble has one per member
    title = Path(str(members[0])).name + (f" (ensemble of {len(members)})" if len(members) > 1 else "")
    lines = [f"# Eval card: {title}", "",
             *(f"- source: `{m}`" + (f" (sha256 `{h[:16]}…`)" if h else "") for m, h in zip_longest(members, shas)),
             f"- data: {card['data'].get('name')}{_root(card['data'].get('root'))} split `{card['data'].get('split')}`, "
             f"n = {card['n']}",
             f"- command: `{card['command']}`", f"- depthforge {card['depthforge']}, {card['created']}", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in m.items()]
    if card.get("alignment_note"):
        lines += ["", f"Output kind `{card.get('source_kind')}`: {card['alignment_note']}."]
    if card.get("licenses"):
        from depthforge.sources.licenses import describe, summary

        lines += ["", f"Licences: {summary(card['licenses'])}", "", *(f"- {describe(r)}" for r in card["licenses"])]
    lines += ["", f"## Protocol `{p['name']}`", "", "| field | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in p.items()]
    return "\n".join(lines) + "\n"


SOURCE_KEYS = ("checkpoint", "predictions")


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def write_card(card: dict, path: str | Path) -> tuple[Path, Path]:
    """Write ``path`` (JSON) and the Markdown beside it (same name, ``.md``).

    The source's files are also recorded as absolute paths and relative to the card (``source["locations"]``), so
    ``evaluate --card`` re-runs from any working directory and after the card and its run move together.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    source = card["source"]
    locations = {}
    for key in SOURCE_KEYS:
        if key in source:
            files = [Path(f).resolve() for f in _as_list(source[key])]
            locations[key] = {"absolute": [str(f) for f in files],
                              "relative_to_card": [os.path.relpath(f, path.parent.resolve()) for f in files]}
    card = {**card, "source": {**source, "locations": locations}}
    path.write_text(json.dumps(card, indent=2))
    md = path.with_suffix(".md")
    md.write_text(card_markdown(card))
    return path, md


def card_source(card: dict, path: str | Path) -> dict:
    """The card's source with each file found: as recorded (relative to the working directory), else the absolute
    path, else relative to the card; a file found nowhere is an error listing where it was looked for."""
    source = {k: v for k, v in card["source"].items() if k not in ("sha256", "locations")}
    for key in SOURCE_KEYS:
        if key not in source:
            continue
        where = card["source"].get("locations", {}).get(key, {})
        recorded = _as_list(source[key])
        found = []
        for i, name in enumerate(recorded):
            tries = [Path(name), *(Path(where[k][i]) for k in ("absolute",) if k in where),
                     *(Path(path).parent / where[k][i] for k in ("relative_to_card",) if k in where)]
            hit = next((t for t in tries if t.exists()), None)
            if hit is None:
                raise FileNotFoundError(f"{path}: {key} '{name}' not found (looked at {', '.join(map(str, tries))}); "
                                        "move the card together with its run, or re-run evaluate")
            found.append(str(hit))
        source[key] = found if isinstance(source[key], (list, tuple)) else found[0]
    return source


def read_card(path: str | Path) -> dict:
    path = Path(path)
    try:
        card = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable eval card ({err}); pass the .json written by --json") from err
    for key in ("protocol", "source", "data", "metrics"):
        if key not in card:
            raise ValueError(f"{path}: eval card lacks '{key}'; was it written by depthforge evaluate --json?")
    return card
