"""Sharing trained models: a folder a person can read and a program can load, on disk or on the Hugging Face Hub.

``save_pretrained`` writes ``model.safetensors`` (weights), ``config.json`` (model name and kwargs, the full run
config, what the output means, the preprocessing) and ``README.md`` (a model card with the eval cards' metrics and
protocols). ``load_pretrained`` rebuilds the model from that folder or from a Hub repo holding it; ``push`` uploads
the folder (network needed; nothing else here touches the network).

The layout follows huggingface_hub's ``ModelHubMixin`` (weights + config.json + card); depthforge models are built
by name from the registry, so the config carries the registry name and kwargs rather than constructor arguments.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depthforge.version import __version__
from depthforge.config import Config, load_config
from depthforge.io import DataError
from depthforge.io.errors import one_line
from depthforge.sources.checkpoint import build_model

WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def card_license_lines(licenses: list[dict]) -> tuple[list[str], list[str]]:
    """(front-matter lines, a License section) for the licences a shared model derives from: one licence id when
    they share one (besides depthforge's own code), else ``other`` with each named in the section."""
    from depthforge.sources.licenses import PROJECT, describe, overall

    weights = [r for r in licenses if r["of"] != "depthforge (code)"]
    ids = list(dict.fromkeys(r["license"] for r in weights)) or [PROJECT]
    if len(ids) == 1 and ids[0] != "unknown":
        front = [f"license: {ids[0]}"]
    else:
        front = ["license: other", f"license_name: {'-and-'.join(ids)}"]
    section = ["## License", "", f"Terms for use: **{overall(licenses)}** (the most restrictive of what this model "
               "derives from; `depthforge --license-policy commercial` refuses anything but commercial).", ""]
    section += [f"- {describe(r)}" for r in licenses]
    return front, section + [""]


def model_card(cfg: Config, kind: str, cards: list[dict], licenses: list[dict] | tuple = ()) -> str:
    """README.md: Hub metadata, what the model is, how to load it, every eval card's result with its protocol, and
    the licences it derives from."""
    front, section = card_license_lines(list(licenses))
    lines = ["---", "library_name: depthforge", *front, "pipeline_tag: depth-estimation",
             "tags: [depth-estimation, monocular-depth, depthforge]", "---", "",
             f"# {cfg.model.name} (depthforge)", "",
             f"Monocular depth: one RGB image in, {'depth in metres' if kind == 'metric' else kind} out"
             f"{f', up to {cfg.data.max_depth:g} m' if kind == 'metric' else ''}. "
             f"Trained on `{cfg.data.name}` data with depthforge {__version__}.", "",
             "```python", "import depthforge", "source = depthforge.load(\"THIS_FOLDER_OR_REPO_ID\")", "```", "",
             "```bash", "depthforge predict --model depthforge:THIS_FOLDER_OR_REPO_ID photo.jpg --out out/", "```", ""]
    if cards:
        lines += ["## Evaluation", "", "| data | split | protocol | n | RMSE | SSIM | AbsRel | delta1 |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in cards:
            m, p = c["metrics"], c["protocol"]
            lines.append(f"| {c['data'].get('name')} | {c['data'].get('split')} | {p.get('name')} "
                         f"(cap {p.get('max_depth')} m, alignment {p.get('alignment')}) | {c.get('n')} | "
                         f"{m.get('rmse', float('nan')):.3f} | {m.get('ssim', float('nan')):.3f} | "
                         f"{m.get('abs_rel', float('nan')):.3f} | {m.get('delta1', float('nan')):.3f} |")
        lines += ["", "Each row re-runs with `depthforge evaluate --card CARD` from the eval card it came from."]
    else:
        lines += ["## Evaluation", "", "No eval card was given when this folder was written."]
    return "\n".join([*lines, "", *section])


def save_pretrained(model: nn.Module, cfg: Config, folder: str | Path, cards: list[dict] | tuple = (),
                    licenses: list[dict] | tuple = ()) -> Path:
    """Write the shareable folder (each file atomically); return it. ``licenses``: what the model derives from
    (`depthforge.sources.licenses`), written to config.json and the card."""
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kind = getattr(model, "kind", "metric")
    _atomic_write(folder / WEIGHTS, lambda tmp: save_model(model, tmp, metadata={"format": "pt"}))
    config = {"library_name": "depthforge", "depthforge_version": __version__, "model_name": cfg.model.name,
              "model_kwargs": cfg.model.kwargs, "kind": kind,
              "preprocessing": {"input": "RGB float in [0, 1], any size", "resize_short": cfg.data.resize_short,
                                "normalisation": "inside the model"},
              "output": {"unit": "m" if kind == "metric" else kind, "max_depth": cfg.data.max_depth},
              "config": cfg.to_dict(), "licenses": list(licenses)}
    _atomic_write(folder / CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2)))
    _atomic_write(folder / CARD, lambda tmp: Path(tmp).write_text(model_card(cfg, kind, list(cards), licenses)))
    return folder


def _local_folder(where: str) -> Path:
    path = Path(where).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=where, allow_patterns=[WEIGHTS, CONFIG, CARD]))
    except Exception as err:  # offline, unknown repo, invalid id: one message with the ways out
        raise FileNotFoundError(
            f"{where}: not a local folder, and the Hub copy could not be fetched ({type(err).__name__}). Pass a folder "
            "written by depthforge push / save_pretrained, or run once with network so the repo lands in the "
            "Hugging Face cache (HF_HOME)") from err


def load_pretrained(where: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Config]:
    """The model (eval mode) and its config from a shared folder or Hub repo id."""
    from safetensors.torch import load_model

    folder = _local_folder(str(where))
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise FileNotFoundError(f"{folder}: needs {CONFIG} and {WEIGHTS} (written by depthforge push)")
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise DataError(f"{folder / CONFIG}: not JSON ({type(err).__name__}: {str(err)[:80]}); write the folder "
                         "again with depthforge push") from None
    if not isinstance(config, dict) or config.get("library_name") != "depthforge":
        raise DataError(f"{folder / CONFIG}: not a depthforge model (for a transformers model use hf:{where})")
    cfg = load_config(base=config.get("config"), where=str(folder / CONFIG))
    from safetensors import safe_open

    try:
        with safe_open(str(folder / WEIGHTS), "pt") as f:  # the header only: shapes, no tensor read
            held = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except Exception as err:  # not a safetensors file
        raise DataError(f"{folder / WEIGHTS}: not a safetensors file ({type(err).__name__}: {str(err)[:80]}); "
                        "write the folder again with depthforge push") from None
    model = build_model(cfg, folder / CONFIG, held)
    try:
        load_model(model, str(folder / WEIGHTS), strict=True, device=str(device))
    except Exception as err:  # safetensors' own errors, missing or reshaped tensors
        raise DataError(f"{folder / WEIGHTS}: does not hold this model's weights ({type(err).__name__}: "
                         f"{one_line(err)}); write the folder again with "
                         "depthforge push") from None
    model.name = cfg.model.name
    return model.to(device).eval(), cfg


def init_from_pretrained(model: nn.Module, where: str) -> None:
    """``model.pretrained=hf:<folder or id>`` for a depthforge model: start from a shared model's weights."""
    from safetensors.torch import load_model

    folder = _local_folder(where)
    missing, unexpected = load_model(model, str(folder / WEIGHTS), strict=False)
    if missing or unexpected:
        raise ValueError(f"{where}: its weights do not fit this model (missing {sorted(missing)[:3]}, unexpected "
                         f"{sorted(unexpected)[:3]}); model.name and model.kwargs must match its config.json")


def push(folder: str | Path, repo_id: str, private: bool = False) -> Any:
    """Upload a saved folder to the Hub (needs network and a token: huggingface-cli login)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True, private=private)
    return api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="depthforge push")
