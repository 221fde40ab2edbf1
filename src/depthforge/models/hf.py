"""Hugging Face ``transformers`` depth models (DPT / MiDaS v3, Depth Anything V1/V2, ZoeDepth, GLPN, Depth Pro) as
depthforge models: RGB in [0, 1] of any size -> depth map at the same size, trainable with depthforge's loop.

Preprocessing is the model's own image processor (resize policy, multiple of 14 or 32, mean/std) and post-processing
its ``post_process_depth_estimation`` (resize back), exactly as ``transformers.pipeline("depth-estimation")`` runs
them, so a prediction here equals the pipeline's. Both are plain tensor operations, so the same path trains.

Needs the ``hf`` extra (``pip install 'depthforge[hf]'``); imported only when such a model is built.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depthforge.models.encoders import freeze_groups
from depthforge.models.registry import register_model

# What each architecture's raw output means (Depth Anything: read from its config's depth_estimation_type).
KIND_BY_TYPE = {"dpt": "disparity", "zoedepth": "metric", "glpn": "metric", "depth_pro": "metric",
                "prompt_depth_anything": "metric"}
KINDS = ("metric", "relative", "disparity")


class HubUnavailableError(FileNotFoundError):
    """A Hugging Face model that is neither a local folder nor in the local Hub cache, with no network."""


def _transformers():
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError("Hugging Face models need the hf extra: pip install 'depthforge[hf]'") from err
    return transformers


def output_kind(config: Any) -> str:
    """``metric``, ``relative`` or ``disparity`` for a transformers depth model config."""
    if config.model_type == "depth_anything":
        return "metric" if getattr(config, "depth_estimation_type", "relative") == "metric" else "disparity"
    return KIND_BY_TYPE.get(config.model_type, "metric")


def load_hf_parts(repo: str, trust_remote_code: bool = False) -> tuple[nn.Module, Any]:
    """Model and image processor from a local folder or the Hub cache; offline without them, a clear error.

    ``trust_remote_code``: let transformers import and run the Python files the repo ships (a model class of its
    own), with this user's rights; off unless asked for (``--trust-remote-code``). Weights are read by
    transformers: safetensors, or a ``.bin`` through ``torch.load(weights_only=True)``, never a pickle's code."""
    tf = _transformers()
    local = Path(repo).expanduser()
    where = str(local) if local.is_dir() else repo
    try:
        model = tf.AutoModelForDepthEstimation.from_pretrained(where, trust_remote_code=trust_remote_code)
        processor = tf.AutoImageProcessor.from_pretrained(where, trust_remote_code=trust_remote_code)
    except OSError as err:
        if local.is_dir():
            raise HubUnavailableError(f"{repo}: not a transformers depth model folder ({err}); it needs config.json, "
                                      "the weights and preprocessor_config.json (save_pretrained writes them)") from err
        raise HubUnavailableError(
            f"{repo}: model not found locally and the Hub cannot be reached ({type(err).__name__}). Either run once "
            "with network so it lands in the Hugging Face cache (HF_HOME, now "
            f"{os.environ.get('HF_HOME', '~/.cache/huggingface')}), "
            f"or download it elsewhere (huggingface-cli download {repo} --local-dir FOLDER) and pass hf:FOLDER") from err
    return model, processor


def _plain(obj: Any) -> Any:
    """A JSON round trip: only str/int/float/bool/None/list/dict remain (safe for ``torch.load(weights_only)``)."""
    return json.loads(json.dumps(obj, default=str))


class HFDepthModel(nn.Module):
    """A transformers depth model with its image processor: (N, 3, H, W) in [0, 1] -> (N, 1, H, W).

    ``kind`` says what the output means: ``metric`` (metres), ``disparity`` (affine-invariant inverse depth, larger
    = nearer: DPT and relative Depth Anything) or ``relative`` (affine-invariant depth).
    """

    def __init__(self, model: nn.Module, processor: Any, kind: str | None = None, repo: str | None = None):
        super().__init__()
        self.model = model.train()  # from_pretrained returns eval mode; depthforge switches modes itself
        self.processor = processor
        self.kind = kind or output_kind(model.config)
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.repo = repo
        self.last_extra: list[dict[str, torch.Tensor]] = []

    @property
    def encoder(self) -> nn.Module | None:
        """The pretrained backbone (its learning rate follows ``optim.encoder_lr_mult``); not a second submodule."""
        return getattr(self.model, "backbone", None) or getattr(self.model, "dpt", None)

    def stages(self) -> list[list[nn.Parameter]]:
        """Backbone parameters by stage: embeddings, then each transformer layer (for ``frozen_stages``)."""
        enc = self.encoder
        if enc is None:
            return []
        layers = getattr(getattr(enc, "encoder", None), "layer", None)
        if layers is None:
            return [list(enc.parameters())]
        groups = [list(enc.embeddings.parameters())] if hasattr(enc, "embeddings") else []
        return groups + [list(layer.parameters()) for layer in layers]

    def freeze(self, num_stages: int) -> None:
        """Freeze the first ``num_stages`` backbone stages (-1: the whole backbone)."""
        self.frozen_stages = freeze_groups(self.stages(), num_stages)

    @property
    def preprocessing(self) -> dict:
        """The image processor's settings (resize policy, size, multiple, mean/std), for cards and sidecars."""
        keep = ("size", "keep_aspect_ratio", "ensure_multiple_of", "resample", "image_mean", "image_std", "do_pad")
        settings = _plain(self.processor.to_dict())
        return {"processor": type(self.processor).__name__, **{k: settings[k] for k in keep if k in settings}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        scaled = x * 255
        if (scaled - scaled.round()).abs().max() < 1e-3:  # 8-bit pixels: exactly what the pipeline feeds
            images, kwargs = list(scaled.round().clamp(0, 255).to(torch.uint8)), {}
        else:  # resized or augmented inputs: keep their precision
            images, kwargs = list(x.float()), {"do_rescale": False}
        inputs = self.processor(images=images, return_tensors="pt", device=x.device, **kwargs)
        pixels = inputs["pixel_values"].to(device=x.device, dtype=next(self.model.parameters()).dtype)
        outputs = self.model(pixel_values=pixels)
        # transformers' own post-processing: the pipeline passes the input size positionally (ZoeDepth reads it as
        # the size before padding, the others as the size to resize to).
        post = self.processor.post_process_depth_estimation(outputs, [(h, w)] * n)
        # Depth Pro also returns its field of view and focal length (pixels), per image.
        self.last_extra = [{k: v for k, v in p.items() if k != "predicted_depth"} for p in post]
        depth = torch.stack([p["predicted_depth"].reshape(h, w) for p in post])[:, None]
        return depth.to(x.dtype)

    def checkpoint_kwargs(self) -> dict:
        """What a checkpoint needs to rebuild this model offline: the model and processor configs."""
        return {"hf_config": _plain(self.model.config.to_dict()), "processor_config": _plain(self.processor.to_dict()),
                "kind": self.kind}


def hf_from_configs(hf_config: dict, processor_config: dict, kind: str | None = None) -> HFDepthModel:
    """Rebuild (random weights, to be replaced by a checkpoint's) from stored configs: no Hub, no files."""
    tf = _transformers()
    config = tf.AutoConfig.for_model(**hf_config)
    model = tf.AutoModelForDepthEstimation.from_config(config)
    proc_cls = getattr(tf, processor_config.get("image_processor_type", "DPTImageProcessor"))
    processor = proc_cls(**{k: v for k, v in processor_config.items() if k != "image_processor_type"})
    return HFDepthModel(model, processor, kind)


@register_model
def hf(pretrained: str = "none", repo: str | None = None, hf_config: dict | None = None,
       processor_config: dict | None = None, kind: str | None = None, frozen_stages: int = 0,
       max_depth: float | None = None, **unused: Any) -> HFDepthModel:
    """A transformers depth model: ``repo`` (Hub id or local folder) with its weights, or, inside a checkpoint,
    ``hf_config`` + ``processor_config`` (stored by training) so it rebuilds offline.

    ``max_depth`` (the data's cap, passed to every model) is not forced on it: a metric Depth Anything keeps the
    ``max_depth`` of its own config.json (sigmoid x max_depth), which should match the data's.
    """
    if unused:
        raise TypeError(f"model hf: unknown option(s) {sorted(unused)}; it takes repo, kind, frozen_stages")
    if hf_config is not None:
        model = hf_from_configs(hf_config, processor_config or {}, kind)
    elif repo:
        model = HFDepthModel(*load_hf_parts(repo), kind=kind, repo=repo)
    else:
        raise ValueError("model hf needs model.kwargs.repo=<Hub id or folder> (e.g. "
                         "depth-anything/Depth-Anything-V2-Small-hf)")
    if frozen_stages:
        model.freeze(frozen_stages)
    return model
