"""Evaluation protocols as data: caps, crops, alignment, averaging and SSIM, so numbers can be compared honestly.

Every result depthforge writes carries its protocol; an eval card (``depthforge.evaluation.card``) re-runs it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from depthforge.predict.tta import check_scales
from depthforge.metrics.alignment import ALIGNMENTS
from depthforge.metrics.functional import MIN_DEPTH


@dataclass(frozen=True)
class Protocol:
    """How predictions are scored.

    Attributes:
        name: preset name (or ``custom``).
        min_depth, max_depth: valid ground truth is ``min_depth < gt <= max_depth`` (unless ``clip_target``).
        clip_target: clip ground truth to ``[0, max_depth]`` and keep every pixel (the course) instead of masking.
        clamp_pred: clamp predictions to ``[min_depth, max_depth]`` after alignment (standard practice).
        crop: ``none``, ``eigen``, ``garg`` or ``[top, bottom, left, right]`` (fractions or pixels).
        alignment: one of ``none``, ``median``, ``scale``, ``scale_shift``, ``scale_shift_disparity``, ``disparity`` (see `align`).
        per_batch: average metrics per batch of ``batch_size`` (the course) instead of per image.
        ssim_range: ``None`` for the course's unscaled SSIM, else the data range ``L`` (``C = (K * L)**2``).
        ssim_padding: ``zeros`` (the course, map at input size) or ``valid`` (scikit-image / torchmetrics).
        flip_tta: average the prediction with the flipped image's (flipped back).
        tta_scales: multi-scale test-time augmentation, input resize factors relative to the model's training
            geometry whose predictions are averaged; ``(1.0,)`` = none.
        resolution: ``native``: predictions are resized to the ground truth, never the reverse; ``cropN`` (e.g.
            ``crop224``): then both are resized (bilinear) to a short side of N and centre-cropped to NxN, the
            baseline report's scoring geometry (not a fair comparison: it drops the image sides and smooths edges);
            ``squashN`` (e.g. ``squash224``): both resized to NxN, the aspect ratio not kept (participant A's).
        edge_ratio: depth ratio between neighbours that counts as an occlusion edge (edge metrics).
        source: where the protocol comes from.
    """

    name: str = "custom"
    min_depth: float = MIN_DEPTH
    max_depth: float = 20.0
    clip_target: bool = False
    clamp_pred: bool = True
    crop: Any = "none"
    alignment: str = "none"
    per_batch: bool = False
    batch_size: int = 16
    ssim_range: float | None = 20.0
    ssim_padding: str = "valid"
    flip_tta: bool = False
    tta_scales: tuple[float, ...] = (1.0,)
    resolution: str = "native"
    edge_ratio: float = 1.15
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"protocol batch_size must be a positive whole number, got {self.batch_size!r}")
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"protocol alignment '{self.alignment}' unknown; use one of {ALIGNMENTS}")
        try:  # normalised to a tuple of floats (a JSON list from an eval card included)
            object.__setattr__(self, "tta_scales", check_scales(self.tta_scales))
        except ValueError as err:
            raise ValueError(f"protocol tta_scales: {err}") from None
        if self.resolution != "native" and not re.fullmatch(r"(crop|squash)[1-9]\d*", self.resolution):
            raise ValueError(f"protocol resolution '{self.resolution}' unknown; use 'native', 'squashN' or 'cropN' (e.g. "
                             "crop224: short side resized to N, centre NxN crop)")

    @property
    def square_size(self) -> int | None:
        """N of a ``cropN`` or ``squashN`` resolution (scored at NxN), else None."""
        return None if self.resolution == "native" else int(re.sub(r"\D", "", self.resolution))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["crop"] = list(self.crop) if isinstance(self.crop, (list, tuple)) else self.crop
        d["tta_scales"] = list(self.tta_scales)
        return d

    @classmethod
    def from_dict(cls, values: dict) -> Protocol:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"protocol: unknown field(s) {unknown}; known: {sorted(known)}")
        values = dict(values)
        if isinstance(values.get("crop"), list):
            values["crop"] = tuple(values["crop"])
        return cls(**values)


PROTOCOLS: dict[str, Protocol] = {
    # The course's definition, verbatim from the data set README: clip targets to [0, 20], score predictions as
    # they are, RMSE and SSIM per batch of 16 (numeric stem order, last partial batch kept), averaged over batches;
    # SSIM without data range on metre values, zero padding.
    "challenge": Protocol("challenge", 0.0, 20.0, clip_target=True, clamp_pred=False, per_batch=True,
                          batch_size=16, ssim_range=None, ssim_padding="zeros",
                          source="DLRP course challenge (data set README)"),
    # The same, scored the way the baseline report did: prediction and target resized to 224 (short side) and
    # centre-cropped to 224x224. Only to compare with numbers reported that way; `challenge` is the fair one.
    "challenge-224": Protocol("challenge-224", 0.0, 20.0, clip_target=True, clamp_pred=False, per_batch=True,
                              batch_size=16, ssim_range=None, ssim_padding="zeros", resolution="crop224",
                              source="DLRP course baseline report's 224x224 centre-crop scoring (data set README)"),
    # Participant A's scoring geometry: prediction and clipped target squashed to 224x224 (aspect ratio lost).
    "challenge-squash224": Protocol("challenge-squash224", 0.0, 20.0, clip_target=True, clamp_pred=False,
                                    per_batch=True, batch_size=16, ssim_range=None, ssim_padding="zeros",
                                    resolution="squash224",
                                    source="participant A's 224x224 squashed scoring (data README)"),
    # Per image over valid pixels (1e-3 < gt <= 20 m), predictions clamped to the cap, SSIM with data range = cap
    # and 'valid' windows (equal to scikit-image / torchmetrics with the same settings).
    "standard": Protocol("standard", MIN_DEPTH, 20.0,
                         source="Eigen et al. 2014 metric set; per-image averaging as monodepth2 / ZoeDepth"),
    "nyu-eigen": Protocol("nyu-eigen", MIN_DEPTH, 10.0, crop="eigen", ssim_range=10.0,
                          source="NYU Depth v2, Eigen crop, 10 m cap (BTS, AdaBins, ZoeDepth)"),
    "kitti-garg": Protocol("kitti-garg", MIN_DEPTH, 80.0, crop="garg", ssim_range=80.0,
                           source="KITTI Eigen split, Garg crop, 80 m cap (monodepth2, ZoeDepth)"),
    # Affine-invariant: least-squares scale and shift per image before scoring (Marigold, Depth Anything relative).
    "relative": Protocol("relative", MIN_DEPTH, 20.0, alignment="scale_shift",
                         source="affine-invariant depth (Marigold; MiDaS aligns in disparity)"),
}


def get_protocol(name: str, max_depth: float | None = None, **changes: Any) -> Protocol:
    """A preset by name, optionally with another depth cap (the SSIM range follows it) or other field changes."""
    if name not in PROTOCOLS:
        raise KeyError(f"unknown protocol '{name}'; available: {sorted(PROTOCOLS)}")
    values = PROTOCOLS[name].to_dict()
    if max_depth is not None and max_depth != values["max_depth"]:
        values["max_depth"] = float(max_depth)
        if values["ssim_range"] is not None:
            values["ssim_range"] = float(max_depth)
    values.update({k: v for k, v in changes.items() if v is not None})
    return Protocol.from_dict(values)
