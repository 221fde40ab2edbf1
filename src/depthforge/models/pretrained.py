"""Loading encoder weights: from a hub when online, from a local file always, with errors that say what to do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


class PretrainedWeightsError(RuntimeError):
    """Weights could not be obtained; the message says how to proceed offline."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``torch.save`` file (loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(f"{path}: weights file not found; give an existing file, 'imagenet' or 'none'")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        raise PretrainedWeightsError(f"{path}: not a loadable state dict ({err}); save one with "
                                     "torch.save(model.state_dict(), path) or safetensors") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise PretrainedWeightsError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    return state


def fetch(download: Callable[[], dict[str, torch.Tensor]], what: str, cache_hint: str) -> dict[str, torch.Tensor]:
    """Run a hub download; turn a network failure into a message that names the offline alternatives."""
    try:
        return download()
    except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError; hub errors vary by library
        raise PretrainedWeightsError(
            f"could not download {what} ({type(err).__name__}: {err}). This machine may be offline: place the file "
            f"in {cache_hint}, or set model.pretrained to a local weights file, or to 'none' to train from scratch"
        ) from err


def load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str, ignore_prefixes: tuple[str, ...] = ()
              ) -> None:
    """Load ``state`` strictly (except keys under ``ignore_prefixes``), naming the source on mismatch."""
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    hint = "check that the file was saved from the same architecture"
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches raise even when strict=False
        detail = " ".join(str(err).split())[:300]
        raise PretrainedWeightsError(f"{source}: weights do not fit the encoder ({detail}); {hint}") from err
    if result.missing_keys or result.unexpected_keys:
        raise PretrainedWeightsError(
            f"{source}: weights do not fit the encoder (missing {result.missing_keys[:5]}, unexpected "
            f"{result.unexpected_keys[:5]}); {hint}")
