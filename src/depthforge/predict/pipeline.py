"""The one way from a depth source to results: ``depthforge.load(spec).predict(inputs, **options)``.

``predict`` takes a path, a folder, a glob, a PIL image, an ``HxWx3`` uint8 array, a video (file, folder of frames
with ``sequence=True``, ``camera:<index>``) or a list of these. One image gives one `DepthResult`; anything
else gives an iterator of them (frames stream through, so a long video or a camera never fills the memory). The
command line's ``predict``, the demo and the benchmarks all go through here; `save_predictions` writes
results as ``depthforge predict`` does.
"""

from __future__ import annotations

import glob as globbing
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depthforge.geometry.camera import DEFAULT_HFOV_DEG, pick_intrinsics
from depthforge.io import IMAGE_SUFFIXES, DataError, image_size, read_rgb
from depthforge.predict.outputs import clamp_depth, model_range
from depthforge.predict.predictor import Predictor
from depthforge.predict.result import DepthResult
from depthforge.predict.tta import check_scales
from depthforge.sources.loading import LoadedSource, load_source, spec_from
from depthforge.video.frames import is_video, video_stem
from depthforge.video.stream import stabilized_depths

log = logging.getLogger(__name__)
GLOB_CHARS = "*?["
UNCERTAINTY_HELP = ("a model with model.kwargs.head=laplace, a checkpoint ensemble, a diffusion checkpoint with "
                    "samples 2+, Marigold with ensemble_size 3+, or uncertainty='tta' with flip / scales")


@dataclass
class Options:
    """How `Pipeline.predict` runs (the command line's ``predict`` flags, same names)."""

    flip_tta: bool = False
    tta_scales: tuple[float, ...] = (1.0,)
    tile: tuple[int, int] | None = None
    overlap: float = 0.25
    uncertainty: str | None = None
    batch_size: int = 8
    points: list[tuple[int, int, float]] = field(default_factory=list)
    shift: bool | None = None
    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    hfov: float = DEFAULT_HFOV_DEG
    sequence: bool = False
    stabilize: str = "none"
    flow: str = "farneback"
    max_frames: int | None = None
    errors: str = "raise"  # or "skip": an unreadable image is yielded as Unreadable and the rest go on
    # (rank, world size): this process's share of the work, whole batches (as one process would form them), videos
    # and unreadable files dealt round-robin in input order, so the files equal a one-process run's byte for byte
    shard: tuple[int, int] | None = None
    # name -> whether its outputs are complete already: a batch whose images all are is not run again
    done: Callable[[str], bool] | None = None

    def __post_init__(self):
        self.tta_scales = check_scales(self.tta_scales or (1.0,))
        if isinstance(self.tile, str):
            try:
                self.tile = tuple(int(v) for v in self.tile.lower().split("x"))
            except ValueError:
                raise ValueError(f"tile '{self.tile}': give the window as HxW pixels, e.g. 720x1280") from None
        if self.uncertainty not in (None, "model", "tta"):
            raise ValueError(f"uncertainty '{self.uncertainty}': use model or tta")
        if self.errors not in ("raise", "skip"):
            raise ValueError(f"errors '{self.errors}': use raise or skip")
        if self.shard is not None and not 0 <= self.shard[0] < self.shard[1]:
            raise ValueError(f"shard {self.shard}: give (rank, world size) with 0 <= rank < world size")


@dataclass
class Unreadable:
    """An input image that could not be read (``errors="skip"``): its path and why."""

    path: Path
    reason: str


def _unreadable(path: Path, err: Exception, opts: Options) -> Unreadable:
    """The skip record of an image Pillow cannot read, or (``errors="raise"``) a DataError naming it."""
    if isinstance(err, DataError) and err.__cause__ is None:  # the reader refused it (a size limit): its own words
        if opts.errors == "raise":
            raise err
        return Unreadable(path, str(err).removeprefix(f"{path}: "))
    empty = path.is_file() and path.stat().st_size == 0
    reason = "the file is empty (0 bytes)" if empty else f"not an image Pillow can read ({err})"
    if opts.errors == "raise":
        raise DataError(f"{path}: {reason}; re-export it as JPEG or PNG, or leave it out")
    return Unreadable(path, reason)


def _single(x: Any) -> bool:
    """One still image (a result, not an iterator): an array, a PIL image, or one image file."""
    if isinstance(x, np.ndarray) or hasattr(x, "convert"):
        return True
    if isinstance(x, (str, Path)):
        p = Path(x)
        return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not is_video(x)
    return False


def _as_rgb(x: Any) -> np.ndarray:
    if hasattr(x, "convert"):  # a PIL image
        x = np.asarray(x.convert("RGB"))
    if not (isinstance(x, np.ndarray) and x.ndim == 3 and x.shape[2] == 3 and x.dtype == np.uint8):
        got = f"an array {getattr(x, 'shape', '?')} {getattr(x, 'dtype', type(x).__name__)}"
        raise ValueError(f"an image array must be HxWx3 uint8 RGB, got {got}; convert it with "
                         "np.asarray(PIL.Image.open(path).convert('RGB'))")
    return x


def expand(x: Any, sequence: bool = False) -> Iterator[tuple[str, Any]]:
    """``("image", (name, path or array))`` and ``("video", source)`` items in input order: folders and globs
    expanded to their images (sorted), lists flattened; a missing path is an error naming it."""
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    for i, item in enumerate(items):
        if not isinstance(item, (str, Path)):
            yield "image", (f"depth_{i}" if len(items) > 1 else "depth", _as_rgb(item))
            continue
        text = str(item)
        if is_video(text, sequence):
            yield "video", text
        elif Path(text).is_dir():
            found = sorted(p for p in Path(text).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{text}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
            yield from (("image", (p.stem, p)) for p in found)
        elif Path(text).is_file():
            yield "image", (Path(text).stem, Path(text))
        elif any(c in text for c in GLOB_CHARS):
            found = sorted(Path(p) for p in globbing.glob(text) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{text}: no images match this pattern")
            yield from (("image", (p.stem, p)) for p in found)
        else:
            raise FileNotFoundError(f"{text}: no such file or folder")


class Pipeline:
    """A loaded depth source and everything around it: pre-processing, test-time augmentation, tiling, clamping to
    the model's range, calibration, intrinsics, uncertainty and video stabilisation. Made by `load`."""

    def __init__(self, source: LoadedSource, device: str | torch.device = "cpu"):
        self.source = source
        self.device = torch.device(device)

    @property
    def kind(self) -> str:
        """``metric``, ``relative`` or ``disparity``: what the depth of a result means before calibration."""
        return self.source.kind

    @property
    def model(self) -> Any:
        """The raw source: ``(N, 3, H, W)`` in [0, 1] -> ``(N, 1, h, w)``."""
        return self.source.model

    @property
    def config(self):
        """The resolved config the source runs with (model name, input geometry, depth range)."""
        return self.source.cfg

    @property
    def licenses(self) -> list[dict]:
        """What the source derives from, each with its licence, terms and where it was read
        (`depthforge.sources.licenses`); every sidecar records them too."""
        return self.source.licenses

    def __repr__(self) -> str:
        return f"Pipeline({self.config.model.name!r}, kind={self.kind!r}, spec={self.source.spec!r})"

    def predict(self, x: Any, **options: Any) -> DepthResult | Iterator[DepthResult]:
        """Depth for ``x`` (see the module docstring): one `DepthResult` for one image, else an iterator.

        Options (`Options`): ``flip_tta``, ``tta_scales``, ``tile`` ("HxW" or (h, w)) and ``overlap``,
        ``uncertainty`` ("model" or "tta"), ``batch_size``, ``points`` (known distances (x, y, metres): the result
        is calibrated) and ``shift``, ``fx`` / ``fy`` / ``cx`` / ``cy`` or ``hfov`` (the camera), and for videos
        ``sequence``, ``stabilize``, ``flow``, ``max_frames``.
        """
        results = self.stream(x, **options)
        return next(results) if _single(x) else results

    def check(self, opts: Options) -> None:
        """Refuse option combinations the source cannot honour, saying what to do instead."""
        name = next(iter(self.source.spec.values()), "this source")
        if str(self.source.spec.get("model", "")).startswith("marigold:") and (
                opts.flip_tta or len(opts.tta_scales) > 1 or opts.tile):
            raise ValueError("Marigold ensembles its own passes: use --ensemble-size instead of --flip-tta, "
                             "--tta-scales or --tile")
        if opts.uncertainty == "model" and not getattr(self.model, "uncertainty_kind", None):
            raise ValueError(f"{name} predicts no uncertainty of its own: use {UNCERTAINTY_HELP}")
        if opts.stabilize == "pose" and self.kind != "metric":
            raise ValueError(f"--stabilize pose makes 3D points from the depth, and this source predicts {self.kind} "
                             "depth: use --stabilize flow")

    def runner(self, opts: Options | None = None, **options: Any) -> Predictor:
        """The raw step under `predict`: uint8 (H, W, 3) -> depth (H, W) as the source outputs it (TTA and
        the training geometry applied; no clamping, calibration or stabilisation). For measuring filters on raw
        output; everything else wants `predict`."""
        o = opts or Options(**options)
        return Predictor(self.model, self.config.data, self.device, flip=o.flip_tta, scales=o.tta_scales,
                         uncertainty=o.uncertainty if o.uncertainty == "tta" else None)

    def stream(self, x: Any, **options: Any) -> Iterator[DepthResult | Unreadable]:
        """Like `predict`, always an iterator (a single image gives one result); with ``errors="skip"`` an
        unreadable image is an `Unreadable` in the stream instead of an error. Options and inputs are
        checked here, before the first result (a typo fails at the call, not at the first ``next``)."""
        opts = Options(**options)
        self.check(opts)
        return self._run(list(expand(x, opts.sequence)), opts)

    def _run(self, items: list[tuple[str, Any]], opts: Options) -> Iterator[DepthResult | Unreadable]:
        predictor = self.runner(opts)
        batch: list[tuple[str, Any]] = []
        units = iter(range(2**62))  # batches, videos and unreadable files in input order: the units ranks share

        def mine() -> bool:
            return opts.shard is None or next(units) % opts.shard[1] == opts.shard[0]

        def run(batch: list) -> Iterator[DepthResult]:
            if batch and mine() and not (opts.done and all(opts.done(name) for name, _, _ in batch)):
                yield from self._images(predictor, batch, opts)

        for what, item in items:
            if what == "image":
                rgb = item[1] if isinstance(item[1], np.ndarray) else None
                try:
                    size = rgb.shape[:2] if rgb is not None else image_size(item[1])
                except (OSError, SyntaxError, DataError) as err:  # PIL.UnidentifiedImageError is an OSError
                    if mine():
                        yield _unreadable(item[1], err, opts)
                    continue
                if batch and (len(batch) >= opts.batch_size or batch[-1][2] != size):
                    yield from run(batch)
                    batch = []
                batch.append((item[0], item[1], size))
                continue
            yield from run(batch)
            batch = []
            if mine():
                yield from self._video(predictor, item, opts)
        yield from run(batch)

    def _images(self, predictor: Predictor, batch: list, opts: Options) -> Iterator[DepthResult]:
        if not batch:
            return
        rgbs, kept = [], []
        for entry in batch:
            try:
                rgbs.append(entry[1] if isinstance(entry[1], np.ndarray) else read_rgb(entry[1]))
                kept.append(entry)
            except DataError as err:  # a header that opens but does not decode (a truncated file)
                yield _unreadable(entry[1], err.__cause__ or err, opts)
        batch = kept
        if not batch:
            return
        if opts.tile:
            depths = [predictor.tiled(rgb, opts.tile, opts.overlap) for rgb in rgbs]
            extras = [{} for _ in rgbs]
        else:
            depths = predictor.batch(rgbs)
            extras = predictor.extras if len(predictor.extras) == len(rgbs) else [{} for _ in rgbs]
        for (name, item, _), rgb, depth, extra in zip(batch, rgbs, depths, extras):
            path = None if isinstance(item, np.ndarray) else Path(item)
            yield self.result(rgb, depth, opts, name, extra, path)

    def _video(self, predictor: Predictor, video: str, opts: Options) -> Iterator[DepthResult]:
        def camera(w: int, h: int) -> np.ndarray:
            k = pick_intrinsics(w, h, opts.fx, opts.fy, opts.cx, opts.cy, opts.hfov)
            if not opts.fx:  # the pose filter's motion is only as right as this camera
                log.warning("%s: --stabilize pose without --fx: the camera is a guess from --hfov %g deg (fx = %.1f "
                            "px for %dx%d frames); give --fx (pixels) for the real motion", video, opts.hfov, k.fx,
                            w, h)
            return k.matrix()

        stem = video_stem(video)
        clamped = 0
        frames = stabilized_depths(video, predictor, opts.stabilize, opts.flow, opts.max_frames, intrinsics=camera)
        for n, (rgb, depth) in enumerate(frames):
            extra = predictor.extras[0] if len(predictor.extras) == 1 else {}
            result = self.result(rgb, depth, opts, f"{stem}_{n:06d}", extra, warn=False,
                                 video={"video": video, "frame": n, "stabilize": opts.stabilize})
            clamped += bool(result.valid is not None and not result.valid.all())
            yield result
        if clamped:  # one line for the clip, not one per frame
            log.warning("%s: %d frame(s) had pixels outside the model's range, clamped (each frame's sidecar says "
                        "how many); the video may be unlike the model's training data", video, clamped)

    def result(self, rgb: np.ndarray, depth: np.ndarray, opts: Options, name: str = "depth",
               extra: dict | None = None, path: Path | None = None, warn: bool = True,
               video: dict | None = None) -> DepthResult:
        """A raw prediction made into a `DepthResult`: clamped into a metric model's range, calibrated from
        ``opts.points``, with the camera from the options, the model (Depth Pro's focal length), EXIF or a guess."""
        extra = extra or {}
        h, w = depth.shape
        cfg = self.config
        info = {"model": cfg.model.name, **self.source.spec, "kind": self.kind, "input_size": [h, w],
                "licenses": self.source.licenses,  # what the depth derives from (depthforge.sources.licenses)
                "flip_tta": opts.flip_tta, "tta_scales": list(opts.tta_scales),
                "tiles": {"window": "x".join(map(str, opts.tile)), "overlap": opts.overlap} if opts.tile else None,
                **(video or {})}
        valid = None
        if self.kind == "metric":
            depth, info["clamped"], valid = clamp_depth(depth, model_range(cfg.data.max_depth), str(path or name),
                                                        warn=warn)
            info["max_depth"] = cfg.data.max_depth
        if "focal_px" in extra and not opts.fx:
            info["focal_px_predicted"] = extra["focal_px"]
        k = pick_intrinsics(w, h, opts.fx, opts.fy, opts.cx, opts.cy, opts.hfov, extra.get("focal_px"), path)
        result = DepthResult(depth.astype(np.float32), self.kind, rgb, k, extra.get("uncertainty"),
                             extra.get("uncertainty_kind"), name, valid, info, path=path)
        return result.calibrate(opts.points, opts.shift) if opts.points else result


def load(where: Any, device: str | torch.device = "cpu", **options: Any) -> Pipeline:
    """A ready `Pipeline` from a ``.ckpt`` (a list of them: an ensemble), an ``.onnx`` file, a shared
    depthforge folder or Hub repo id, ``hf:<repo id or folder>``, ``marigold:<repo id or folder>``, or a source spec
    dict. ``options`` configure the source: a diffusion checkpoint's ``samples`` / ``steps`` / ``seed``, Marigold's
    ``ensemble_size`` / ``steps`` / ``processing_resolution`` / ``seed``, an ONNX file's ``backend`` / ``threads``;
    ``license_policy="commercial"`` refuses (`LicensePolicyError`), before anything is loaded, a source whose
    licence is non-commercial, research-only or unknown. ``.licenses`` lists what the source derives from.

    Example:
        ```python
        m = depthforge.load("runs/quickstart/checkpoints/best.ckpt")
        r = m.predict("photo.jpg")            # a DepthResult: r.depth (metres), r.kind, r.intrinsics, r.meta
        r.save("out", formats=["npy", "png16"], ply=True)
        ```
    """
    return Pipeline(load_source(spec_from(where, **options), device), device)
