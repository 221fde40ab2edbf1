"""Load a trained model from a checkpoint alone: the model name and resolved config travel inside it."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from depthforge.config import Config, load_config
from depthforge.models import model_from_config


class CheckpointError(RuntimeError):
    """A file that is not a depthforge checkpoint; the message names it."""


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Config]:
    """Return ``(model in eval mode, resolved config)`` from a ``.ckpt`` written by ``depthforge train``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; runs keep them in RUN/checkpoints/{{best,last}}.ckpt")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign files raise several types
        raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from err
    meta = ckpt.get("depthforge") if isinstance(ckpt, dict) else None
    if not meta:
        raise CheckpointError(f"{path}: no 'depthforge' metadata; was it written by depthforge train?")
    cfg = load_config(base=meta["config"])
    # The trained weights replace any pretrained ones, so never download here.
    model = model_from_config(cfg.model, cfg.data.max_depth, pretrained="none")
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    return model.to(device).eval(), cfg
