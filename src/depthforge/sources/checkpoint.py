"""Load a trained model from a checkpoint alone: the model name and resolved config travel inside it."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from depthforge.config import Config, load_config
from depthforge.io.errors import one_line
from depthforge.models import model_from_config

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A file that is not a depthforge checkpoint; the message names it."""


def _read(path: Path) -> dict:
    """The checkpoint dict of a ``.ckpt`` written by ``depthforge train``; clear errors for anything else."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; runs keep them in RUN/checkpoints/{{best,last}}.ckpt")
    try:
        # mmap: tensors are views of the file, so a size its pickle claims cannot become an allocation
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # truncated or foreign files raise several types
        # PyTorch's own message suggests weights_only=False (arbitrary code execution): never repeat that advice.
        raise CheckpointError(f"{path}: not a depthforge checkpoint ({_what_it_is(path)}); pass a .ckpt written "
                              "by depthforge train (RUN/checkpoints/best.ckpt or last.ckpt)") from None
    meta = ckpt.get("depthforge") if isinstance(ckpt, dict) else None
    if not meta or not isinstance(meta, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path}: no 'depthforge' metadata; was it written by depthforge train?")
    return ckpt


def _what_it_is(path: Path) -> str:
    """A short description of a file that failed to load as a checkpoint, from its first bytes."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        return "the file is empty"
    if head.startswith(b"PK"):
        return "a zip archive that safe loading rejects: a pickled Python object or another program's model"
    if head[:1] == b"\x80":
        return "a legacy pickle file, which safe loading does not open"
    for magic, kind in ((b"\x89PNG", "a PNG image"), (b"\xff\xd8", "a JPEG image"), (b"\x93NUMPY", "a NumPy array"),
                        (b"\x08", "possibly an ONNX model: use --onnx")):
        if head.startswith(magic):
            return kind
    return "unrecognised content"


def _model_state(ckpt: dict) -> dict[str, torch.Tensor]:
    return {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}


def build_model(cfg: Config, where: str | Path, stored_values: int | None = None) -> nn.Module:
    """The model a stored config names, without pretrained weights (the stored ones replace them, so never a
    download here); a config no model can be built from is a `CheckpointError` naming ``where``.

    ``stored_values``: how many numbers the file's weights hold. The model is first built on the meta device (no
    memory) and refused when it needs far more than that (twice, plus a million): an edited config (a width of
    65535) must not allocate a 150 GB model before its weights fail to fit."""
    try:
        if stored_values is not None:
            with torch.device("meta"):
                need = sum(v.numel() for v in model_from_config(cfg.model, cfg.data.max_depth,
                                                                pretrained="none").state_dict().values())
            if need > 2 * stored_values + 1_000_000:  # slack: a QAT checkpoint has folded its BatchNorm away
                raise CheckpointError(f"{where}: its config builds a model of {need} values but its weights hold "
                                      f"{stored_values}; the config was edited or the file is damaged")
        return model_from_config(cfg.model, cfg.data.max_depth, pretrained="none")
    except (ImportError, CheckpointError):
        raise
    except Exception as err:  # unknown name, kwargs of another version or edited by hand
        raise CheckpointError(f"{where}: no model can be built from its config (model.name={cfg.model.name}: "
                              f"{type(err).__name__}: {one_line(err)})") from None


def stored_values(state: dict) -> int:
    """How many numbers a state dict's tensors hold (anything else in it counts as none)."""
    return sum(v.numel() for v in state.values() if isinstance(v, torch.Tensor))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Config]:
    """Return ``(model in eval mode, resolved config)`` from a ``.ckpt`` written by ``depthforge train``."""
    path = Path(path)
    ckpt = _read(path)
    cfg = load_config(base=ckpt["depthforge"].get("config"), where=str(path))
    model = build_model(cfg, path, stored_values(ckpt["state_dict"]))
    if ckpt["depthforge"].get("qat"):  # a quantisation-aware run: its fake quantisers first, then their weights
        from depthforge.export.qat import qat_example, restore_qat

        model = restore_qat(model, ckpt["depthforge"]["qat"], qat_example(cfg.data))
    try:
        model.load_state_dict(_model_state(ckpt))
    except (RuntimeError, AttributeError, TypeError) as err:  # weights of another model, or not a state dict
        raise CheckpointError(f"{path}: its weights do not fit the model its config names ({cfg.model.name}: "
                              f"{one_line(err)}); the file is damaged or was edited") from None
    return model.to(device).eval(), cfg


def qat_state_of(path: str | Path) -> dict:
    """The QAT state (`depthforge.export.qat.qat_state`) a checkpoint of a ``train.qat=true`` run holds."""
    state = _read(Path(path))["depthforge"].get("qat")
    if not state:
        raise CheckpointError(f"{path}: no QAT state; it was not written by a train.qat=true run")
    return state


class Ensemble(nn.Module):
    """The mean of several depth models' predictions (checkpoint or seed ensembling, as Marigold averages samples);
    their standard deviation in metres is kept as ``last_uncertainty`` (``--uncertainty model``)."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.last_uncertainty: torch.Tensor | None = None

    @property
    def uncertainty_kind(self) -> str:
        return f"spread of {len(self.members)} checkpoints (standard deviation, metres)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preds = torch.stack([member(x) for member in self.members])
        self.last_uncertainty = preds.std(dim=0)
        return preds.mean(dim=0)


def load_ensemble(paths: list[str | Path], device: str | torch.device = "cpu") -> tuple[nn.Module, Config]:
    """One checkpoint: `load_checkpoint`. Several: an `Ensemble` and the first one's config.

    Members are fed the same input, so they must share the input geometry and depth cap they were trained with.
    """
    loaded = [load_checkpoint(p, device) for p in paths]
    if len(loaded) == 1:
        return loaded[0]
    first = loaded[0][1].data
    for path, (_, cfg) in zip(paths[1:], loaded[1:]):
        if (cfg.data.resize_short, cfg.data.max_depth) != (first.resize_short, first.max_depth):
            raise CheckpointError(
                f"{path}: trained with data.resize_short={cfg.data.resize_short}, max_depth={cfg.data.max_depth}, "
                f"but {paths[0]} with {first.resize_short}, {first.max_depth}; ensemble only checkpoints that "
                "share the input geometry and depth cap")
    states = [model.state_dict() for model, _ in loaded]
    for path, state in zip(paths[1:], states[1:]):
        if state.keys() == states[0].keys() and all(torch.equal(state[k], states[0][k]) for k in state):
            log.warning("%s has the same weights as %s: the ensemble's mean is one model's and its spread "
                        "(--uncertainty model) is zero; ensemble runs trained with different seeds or data",
                        path, paths[0])
    return Ensemble([model for model, _ in loaded]).to(device).eval(), loaded[0][1]


def init_weights_from(model: nn.Module, path: str | Path) -> None:
    """Copy a checkpoint's model weights into ``model`` (fine-tuning); every tensor must match by name and shape."""
    path = Path(path)
    ckpt = _read(path)
    state, own = _model_state(ckpt), model.state_dict()
    source = ckpt["depthforge"].get("model_name", "?")
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    reshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or reshaped:
        detail = "; ".join(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                           for label, keys in (("missing", missing), ("unexpected", unexpected),
                                               ("other shape", reshaped)) if keys)
        raise CheckpointError(f"{path}: its model ({source}) does not match this run's ({detail}); model.init_from "
                              "needs a checkpoint of the same model name and model.kwargs")
    model.load_state_dict(state)
