"""One interface for every depth source: a depthforge checkpoint, an ensemble of them, an ONNX file, a shared
depthforge folder, a Hugging Face transformers model and a Marigold pipeline.

A source is a callable ``(N, 3, H, W)`` RGB in [0, 1] -> ``(N, 1, h, w)`` (resized to the input by the callers) with
``eval()`` / ``to(device)`` and a ``kind``: what its output means.

- ``metric``: metres; scored as is, written clamped to the model's range.
- ``relative``: depth up to an unknown scale and shift; scored after a least-squares scale-and-shift fit.
- ``disparity``: inverse depth up to scale and shift (DPT / MiDaS, relative Depth Anything); scored after the fit
  in disparity space, then inverted.

`load_source` turns a spec (``{"checkpoint": ...}``, ``{"onnx": ...}`` or ``{"model": "hf:..."}``) into a
`LoadedSource`: the callable, the data geometry it is fed at, its kind and the spec to record in cards and
sidecars. ``evaluate``, ``predict``, tiling, TTA and ensembles all take it, so nothing is written twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from depthforge.config import Config

KINDS = ("metric", "relative", "disparity")
# The alignment a protocol without one uses for a non-metric source (the eval card records it).
AUTO_ALIGNMENT = {"relative": "scale_shift", "disparity": "disparity"}
MODEL_PREFIXES = ("hf:", "marigold:", "depthforge:")
# Marigold options a spec may carry (command line: --ensemble-size, --denoise-steps, --processing-res, --seed).
MARIGOLD_OPTIONS = ("ensemble_size", "steps", "processing_resolution", "seed")
# Sampling options of a depthforge diffusion checkpoint (command line: --samples, --steps, --seed).
SAMPLING_OPTIONS = ("samples", "steps", "seed")


def _apply_sampling(model: Any, spec: dict) -> None:
    options = {k: spec[k] for k in SAMPLING_OPTIONS if spec.get(k) is not None}
    if not options:
        return
    members = getattr(model, "members", None) or [model]
    if not all(hasattr(m, "set_sampling") for m in members):
        raise ValueError(f"{sorted(options)}: sampling options apply to a diffusion model (model.name=diffusion_*) "
                         "or Marigold; this checkpoint is a regression model")
    for m in members:
        m.set_sampling(**options)


@runtime_checkable
class DepthSource(Protocol):
    """What ``evaluate``, ``predict`` and tiling need of a model."""

    kind: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def eval(self) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...


def source_kind(model: Any) -> str:
    """The kind of a loaded model (depthforge models are metric)."""
    kind = getattr(model, "kind", "metric")
    if kind not in KINDS:
        raise ValueError(f"a depth source's kind must be one of {KINDS}, got {kind!r}")
    return kind


@dataclass
class LoadedSource:
    model: Any
    cfg: Config
    kind: str
    spec: dict
    licenses: list[dict] = dataclasses.field(default_factory=list)  # what it derives from (`sources.licenses`)

    @property
    def preprocessing(self) -> dict:
        own = getattr(self.model, "preprocessing", None)
        if own is not None:
            return own
        d = self.cfg.data
        return {"resize_short": d.resize_short, "normalisation": "inside the model (encoder mean/std)"}


def _model_cfg(name: str, max_depth: float | None) -> Config:
    """The config a foreign model is run with: native resolution, its name, its depth range for written files."""
    cfg = Config()
    cfg.model.name = name
    if max_depth:
        cfg.data.max_depth = float(max_depth)
    return cfg


def load_source(spec: dict, device: str | torch.device = "cpu") -> LoadedSource:
    """Load any supported source from its spec (see the module docstring).

    Its licences are read first, from the spec's files and cards alone; ``spec["license_policy"]`` (or
    $DEPTHFORGE_LICENSE_POLICY) ``commercial`` refuses the source before any weights are read or downloaded.
    """
    from depthforge.sources.license_sources import of_spec
    from depthforge.sources.licenses import check, spec_name

    licenses = of_spec(spec)
    check(licenses, spec.get("license_policy"), spec_name(spec))
    loaded = _load(spec, device)
    loaded.licenses = licenses
    return loaded


def _load(spec: dict, device: str | torch.device) -> LoadedSource:
    if "checkpoint" in spec:
        from depthforge.sources.checkpoint import load_ensemble

        ck = spec["checkpoint"]
        model, cfg = load_ensemble(list(ck) if isinstance(ck, (list, tuple)) else [ck], device)
        _apply_sampling(model, spec)
        return LoadedSource(model, cfg, source_kind(model), spec)
    if "onnx" in spec:
        from depthforge.export.onnx import onnx_runner

        model = onnx_runner(spec["onnx"], spec.get("backend"), spec.get("threads"),
                            spec.get("opt_level", "all"))
        if model.config is None:
            raise ValueError(f"{spec['onnx']}: no depthforge config inside; export it with depthforge export")
        return LoadedSource(model, model.config, "metric", spec)
    if "model" not in spec:
        raise ValueError(f"a source needs checkpoint, onnx or model, got {sorted(spec)}")
    text = str(spec["model"])
    prefix, _, where = text.partition(":")
    if prefix == "hf":
        from depthforge.models.hf import HFDepthModel, load_hf_parts

        hf_model, processor = load_hf_parts(where, bool(spec.get("trust_remote_code")))
        model = HFDepthModel(hf_model, processor, kind=spec.get("kind"), repo=where).to(device).eval()
        return LoadedSource(model, _model_cfg(f"hf:{where}", getattr(hf_model.config, "max_depth", None)
                                              if model.kind == "metric" else None), model.kind, spec)
    if prefix == "marigold":
        from depthforge.sources.marigold import MarigoldSource, load_marigold

        options = {k: spec[k] for k in MARIGOLD_OPTIONS if spec.get(k) is not None}
        model = MarigoldSource(load_marigold(where, device), **options)
        return LoadedSource(model, _model_cfg(f"marigold:{where}", None), model.kind, spec)
    if prefix == "depthforge":
        from depthforge.sources.hub import load_pretrained

        model, cfg = load_pretrained(where, device)
        _apply_sampling(model, spec)
        return LoadedSource(model, cfg, source_kind(model), spec)
    raise ValueError(f"--model '{text}': give hf:<repo id or folder>, marigold:<repo id or folder> or "
                     "depthforge:<shared folder or repo id>")


def protocol_for(protocol: Any, kind: str) -> tuple[Any, str | None]:
    """The protocol a source of ``kind`` is scored under, and why it changed (None when it did not).

    A relative or disparity source is never scored as metres: a protocol without alignment gets the matching one.
    """
    if kind == "metric" or protocol.alignment != "none":
        return protocol, None
    alignment = AUTO_ALIGNMENT[kind]
    return (dataclasses.replace(protocol, alignment=alignment),
            f"the source predicts {kind}, so it is aligned per image ({alignment}) before scoring")


def spec_from(where: str | Path | dict, **options: Any) -> dict:
    """The source spec of a path or id: a ``.ckpt`` (or a list of them: an ensemble), an ``.onnx`` or OpenVINO
    ``.xml``, a shared depthforge folder or Hub repo id, or a prefixed ``hf:`` / ``marigold:`` / ``depthforge:``
    spec; a dict is taken as a spec already. ``options`` (e.g. Marigold's ``ensemble_size``, an ONNX ``backend``) join the spec."""
    if isinstance(where, dict):
        return {**where, **options}
    if isinstance(where, (list, tuple)):
        return {"checkpoint": [str(w) for w in where], **options}
    text = str(where)
    if text.startswith(MODEL_PREFIXES):
        return {"model": text, **options}
    path = Path(text)
    if path.suffix == ".onnx":
        return {"onnx": text, **options}
    if path.suffix == ".xml":  # an OpenVINO IR (export --format openvino): the file format of that runtime only
        return {"onnx": text, "backend": "openvino", **options}
    if path.suffix == ".tflite":  # a LiteRT file (export --format litert), run by the LiteRT interpreter
        return {"onnx": text, "backend": "litert", **options}
    if path.suffix == ".mlpackage":  # Core ML: refused by the runner, saying where it runs
        return {"onnx": text, **options}
    if path.suffix == ".ckpt" or path.is_file():
        return {"checkpoint": text, **options}
    return {"model": f"depthforge:{text}", **options}  # a shared folder, or the Hub repo id of one
