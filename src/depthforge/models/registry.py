"""One registry and one factory, in the manner of timm: ``create_model(name, pretrained=..., **overrides)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a builder under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model '{fn.__name__}' is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names accepted by `create_model`."""
    return sorted(_MODELS)


def create_model(name: str, pretrained: str | bool | None = "none", **overrides: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from `list_models`.
        pretrained: ``none``, ``imagenet`` (downloads through torchvision/timm; fails clearly offline) or the path of
            a local weights file for the encoder; as in timm, ``True`` means the model's default weights
            (``imagenet``) and ``False`` none.
        **overrides: builder keyword arguments; ``None`` values are dropped so CLI defaults never override a
            model's own defaults.
    """
    if name not in _MODELS:
        raise KeyError(f"unknown model '{name}'; available: {', '.join(list_models())}")
    if isinstance(pretrained, bool):
        pretrained = "imagenet" if pretrained else "none"
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    model = _MODELS[name](pretrained=pretrained or "none", **kwargs)
    model.name = name
    return model


def model_from_config(model_cfg: Any, max_depth: float, pretrained: str | None = None) -> nn.Module:
    """Build ``model_cfg`` (a `ModelConfig`); the data's depth cap feeds bounded heads.

    ``pretrained`` overrides the config's (checkpoint loading passes ``none``: trained weights replace it).
    """
    kwargs = {"max_depth": max_depth, **model_cfg.kwargs}
    pretrained = pretrained or model_cfg.pretrained
    if str(pretrained).startswith("hf:"):  # a shared depthforge model's weights: loaded by the engine after building
        pretrained = "none"
    return create_model(model_cfg.name, pretrained=pretrained, **kwargs)
