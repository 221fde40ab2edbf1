"""Run configuration: typed dataclasses, YAML recipes and dotted command-line overrides.

A recipe is a YAML file whose keys mirror `Config`. Unknown keys are an error (a typo would otherwise
silently train the wrong thing). The resolved config is written beside every run and stored in every checkpoint.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

RECIPE_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A recipe or override that cannot be applied; the message names the key and the fix."""


@dataclass
class SyntheticConfig:
    """The embedded procedural data set (no download)."""

    num_train: int = 256
    num_val: int = 64
    height: int = 144
    width: int = 256
    seed: int = 0
    scene: str = "street"  # street (outdoor, sky at 100 m, like the challenge data) | room (indoor, within 12 m)


@dataclass
class DataConfig:
    """Where samples come from and how they are batched."""

    name: str = "synthetic"  # synthetic | challenge | folder | manifest | nyu | nyu-mat | kitti | cache
    # Data root; for manifest: the CSV; for nyu-mat: the .mat file; for cache: the cache folder.
    root: str | None = None
    # Split names; for kitti: file lists (relative to root); for nyu-mat: files of indices (one per line).
    train_split: str = "train"
    val_split: str = "val"
    # Generic folders: sub-folder names, and the 16-bit PNG depth scale (metres = value / scale; 1000 = mm).
    image_dir: str = "images"
    depth_dir: str = "depth"
    depth_scale: float = 1000.0
    # The course clips depth to [0, 20] m before training and scoring.
    max_depth: float = 20.0
    batch_size: int = 16
    # The challenge protocol averages per-batch metrics over batches of 16: keep validation at 16.
    val_batch_size: int = 16
    num_workers: int = 0
    skip_invalid: bool = False
    # Geometry used for training (and for feeding the model at evaluation; predictions go back to native size).
    resize_short: int | None = None
    crop: list[int] | None = None
    hflip: bool = False
    # Metric-safe geometry: random crop [h, w] (no rescaling, so depths stay true) and rotation up to +-deg.
    random_crop: list[int] | None = None
    rotate: float = 0.0
    # Random zoom [low, high] cropped/padded back to size; depth divided by the zoom unless scale_depth=false.
    scale_range: list[float] | None = None
    scale_depth: bool = True
    # Brightness/contrast/saturation jitter strength (0 = off); hue moves by a quarter of it. Image only.
    color_jitter: float = 0.0
    # Keep decoded samples in RAM (the challenge train split takes about 0.9 GB).
    cache: bool = False
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class ModelConfig:
    """Which registered model to build."""

    name: str = "baseline"
    pretrained: str = "none"  # none | imagenet | path to a local weights file
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Fine-tuning: a depthforge checkpoint of the same architecture whose model weights start this run (after
    # ``pretrained``); optimiser, schedule and EMA start fresh. Not applied on resume (the run's own weights win).
    init_from: str | None = None
    # any | commercial: refuse, before any weights are read or downloaded, a model whose licences (the pretrained
    # weights', the fine-tuned model's, init_from's) are not known to allow commercial use (default:
    # $DEPTHFORGE_LICENSE_POLICY, else any)
    license_policy: str | None = None


@dataclass
class LossConfig:
    """Weighted sum of named loss terms (see `depthforge.losses`)."""

    terms: dict[str, float] = field(default_factory=lambda: {"rmse": 0.6, "ssim": 0.4})


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule."""

    name: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "cyclic"  # cyclic | cosine | poly | onecycle | none
    base_lr: float = 1e-3
    max_lr: float = 1e-2
    step_size_up: int = 2000
    step_size_down: int = 2000
    cyclic_mode: str = "triangular2"
    warmup_steps: int = 0
    # Warm-up as a share of the scheduled steps (followed when a time budget re-fits the schedule); warmup_steps
    # then caps it (0: no cap). 0 = the fixed warmup_steps.
    warmup_fraction: float = 0.0
    poly_power: float = 0.9
    # Learning rate of the encoder relative to decoder and head (transfer learning: pretrained layers move slower).
    encoder_lr_mult: float = 1.0


@dataclass
class TrainConfig:
    """Loop length, cadence and hardware."""

    # Short by default so `depthforge train` on the embedded scenes ends in minutes; recipes set their own.
    epochs: int = 3
    max_steps: int = -1
    max_minutes: float | None = None
    val_every: int = 1
    ckpt_every: int = 1
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "32-true"
    # NHWC activations: about 15% faster convolutions on this project's CPU (measured), usually faster on GPUs.
    channels_last: bool = False
    seed: int = 0
    num_previews: int = 4
    # Unfreeze every encoder stage at the start of this epoch (None: keep model.kwargs.frozen_stages throughout).
    unfreeze_epoch: int | None = None
    log_every: int = 10
    progress_bar: bool = True
    # Scale-out: Lightning strategies (ddp on CPU uses gloo; launch with torchrun or let Lightning spawn).
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    accumulate_grad_batches: int = 1
    grad_clip: float | None = None
    ema_decay: float | None = None
    # EMA horizon 1 / (1 - decay) as a share of the scheduled steps, so short runs average over a matching window;
    # ema_decay then caps the decay. 0 = the fixed ema_decay.
    ema_fraction: float = 0.0
    early_stop_patience: int | None = None
    deterministic: bool = False
    # Also write last.ckpt every N optimiser steps, so a crash or kill -9 loses at most N steps.
    ckpt_every_steps: int | None = None
    # A NaN/inf loss: stop with a message naming the step and the batch's stems, or skip the batch.
    nan_policy: str = "stop"
    # Quantisation-aware fine-tuning (extra qat, NNCF): batch norms folded, fake INT8 quantisers inserted with ranges
    # calibrated on qat_calibration training images, then trained with the weights; start it from a trained model
    # (model.init_from=RUN/checkpoints/last.ckpt); `depthforge export` then writes an INT8 ONNX / OpenVINO file.
    qat: bool = False
    qat_calibration: int = 64
    # Experiment trackers: csv (RUN/metrics.csv), tensorboard (RUN/tb), mlflow (extra mlflow; default store
    # sqlite:///RUN/mlflow.db), wandb (extra wandb; WANDB_MODE=offline keeps it local).
    loggers: list[str] = field(default_factory=lambda: ["csv", "tensorboard"])
    tracking_uri: str | None = None  # mlflow: another store or server (e.g. http://host:5000)
    experiment: str = "depthforge"  # mlflow experiment / wandb project


@dataclass
class Config:
    """Everything a run needs; the resolved copy is saved as ``RUN/config.yaml``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML and ``torch.load(weights_only=True)`` safe)."""
        return asdict(self)


def _type_name(hint: Any) -> str:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if hint is type(None):
        return "null"
    if args:
        return f"a list of {_type_name(args[0])}" if typing.get_origin(hint) in (list, tuple) else "a mapping"
    return {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text"}.get(
        getattr(hint, "__name__", str(hint)), str(hint))


def _typed(value: Any, hint: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits the annotation ``hint``, and the value as the field holds it (1.0 -> 1 for an int)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for member in args:
            ok, cast = _typed(value, member)
            if ok:
                return True, cast
        return False, value
    if hint is type(None):
        return value is None, value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, value
        items = [_typed(v, args[0] if args else Any) for v in value]
        return all(ok for ok, _ in items), [cast for _, cast in items]
    if origin is dict or hint is dict:
        return isinstance(value, dict), value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool), value
    if hint is str:
        return isinstance(value, str), value
    return True, value


def _build(cls: type, values: dict[str, Any], where: str, path: str = "", root: str | None = None) -> Any:
    """``cls`` from ``values``, every key known and every value of its field's type (``where``: the recipe file and
    section, for messages; ``path``: the dotted prefix of the keys, as an override would write them)."""
    root = root or where
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(values) - names))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {_short(unknown)}; valid keys are {sorted(names)}")
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{key}' must be a mapping, got {_short(value)}")
            value = _build(hint, value, f"{where}.{key}", f"{path}{key}.", root)
        else:
            ok, value = _typed(value, hint)
            if not ok:
                raise ConfigError(f"{path}{key}={_short(value)} ({root}): expected {_type_name(hint)}, "
                                  f"got {type(value).__name__}; e.g. {path}{key}={_example(hint)}")
        kwargs[key] = value
    return cls(**kwargs)


def _short(value: Any, limit: int = 80) -> str:
    """A value as a message shows it: its repr, on one line, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _yaml_error(err: Exception) -> str:
    """A YAML error on one line: its problem and where (PyYAML's own message spans several lines)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{problem}{f' at line {mark.line + 1}, column {mark.column + 1}' if mark else ''}"


# A recipe is a few dozen values; a YAML file with aliases can expand to billions ("billion laughs"): refused.
MAX_CONFIG_NODES = 100_000


def _example(hint: Any) -> str:
    for member in typing.get_args(hint) or (hint,):
        if member is not type(None):
            origin = typing.get_origin(member)
            if origin in (list, tuple):
                return "[1, 2]"
            return {int: "8", float: "0.5", bool: "true", str: "name"}.get(member, "{a: 1}")
    return "null"


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("kwargs", "terms"):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_path(values: dict[str, Any], keys: list[str], value: Any) -> dict[str, Any]:
    """Copy of ``values`` with exactly ``keys`` set: ``model.kwargs.widths=[...]`` keeps the other kwargs, while
    ``model.kwargs={...}`` (the whole mapping named) replaces them."""
    out = dict(values)
    if len(keys) == 1:
        out[keys[0]] = value
    else:
        inner = out.get(keys[0])
        out[keys[0]] = _set_path(inner if isinstance(inner, dict) else {}, keys[1:], value)
    return out


def resolve_recipe(name_or_path: str | Path) -> Path:
    """Find a recipe by file path or by the name of a bundled recipe (``baseline`` -> ``configs/baseline.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = RECIPE_DIR / f"{name_or_path}.yaml"
    if bundled.is_file():
        return bundled
    available = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))
    raise ConfigError(f"config '{name_or_path}' is neither a file nor a bundled recipe; bundled: {available}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``optim.lr=1e-4`` into (["optim", "lr"], 1e-4); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {_short(text)} must look like section.key=value, e.g. optim.lr=1e-4")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {_short(text)}: its value is not valid YAML ({_yaml_error(err)}); "
                          "quote a string, e.g. key='a b'") from None
    if isinstance(value, str) and _looks_numeric(value):
        value = float(value)
    return key.strip().split("."), value


def _looks_numeric(text: str) -> bool:
    # PyYAML reads "1e-4" (no dot) as a string; a user writing it means a number.
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_config(recipe: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None, where: str = "config") -> Config:
    """Build a `Config` from defaults, an optional recipe or base dict, then dotted overrides. ``where``: what the
    base came from (a checkpoint, a shared folder's config.json), named by errors."""
    if base is not None and not isinstance(base, dict):
        raise ConfigError(f"{where}: the config must be a mapping of sections, got {type(base).__name__}")
    values: dict[str, Any] = dict(base or {})
    if recipe is not None:
        path = resolve_recipe(recipe)
        where = str(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({_yaml_error(err)}); fix the file's syntax") from None
        except (UnicodeDecodeError, RecursionError) as err:
            raise ConfigError(f"{path}: not a UTF-8 YAML recipe ({type(err).__name__})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        values = _merge(values, loaded)
    for text in overrides or []:
        values = _set_path(values, *parse_override(text))
    _check_size(values, where, [MAX_CONFIG_NODES])
    values = _coerce_numbers(values)
    return _build(Config, values, where)


def _check_size(values: Any, where: str, budget: list[int], depth: int = 0) -> None:
    budget[0] -= 1
    if budget[0] < 0 or depth > 50:
        raise ConfigError(f"{where}: far larger or deeper than any recipe (YAML aliases expanding without end?); "
                          "write the values out")
    children = values.values() if isinstance(values, dict) else values if isinstance(values, list) else ()
    for child in children:
        _check_size(child, where, budget, depth + 1)


def _coerce_numbers(values: Any) -> Any:
    if isinstance(values, dict):
        return {k: _coerce_numbers(v) for k, v in values.items()}
    if isinstance(values, str) and _looks_numeric(values) and not values.strip().isalpha():
        number = float(values)  # "-inf", "1e400" and "1_000" are numbers too
        if any(c in values for c in ".eE") or not number.is_integer():
            return number
        return int(number) if abs(number) < 2 ** 63 else number
    return values


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
