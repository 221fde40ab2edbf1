"""Evaluation protocols as data: what is clipped, masked and averaged, so numbers can be compared honestly."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Pixels with ground truth at or below this are "no measurement" in the standard protocol (monodepth2's MIN_DEPTH).
MIN_DEPTH = 1e-3


@dataclass(frozen=True)
class Protocol:
    """How predictions are scored.

    Attributes:
        name: preset name.
        max_depth: depth cap in metres.
        per_batch: average metrics per batch of ``batch_size`` (the course) instead of per image.
        clip_target: clip ground truth to ``[0, max_depth]`` (the course) instead of masking pixels beyond it.
        clamp_pred: clamp predictions to ``[MIN_DEPTH, max_depth]`` before scoring (standard practice).
        ssim_range: ``None`` for the course's unscaled SSIM, else the data range ``L`` of the standard SSIM.
    """

    name: str
    max_depth: float = 20.0
    per_batch: bool = False
    batch_size: int = 16
    clip_target: bool = False
    clamp_pred: bool = True
    ssim_range: float | None = 20.0
    source: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


PROTOCOLS: dict[str, Protocol] = {
    # The course's definition, verbatim from the data set README: clip targets to [0, 20], score predictions as
    # they are, RMSE and SSIM per batch of 16 (numeric stem order, last partial batch kept), averaged over batches.
    "challenge": Protocol("challenge", 20.0, per_batch=True, batch_size=16, clip_target=True, clamp_pred=False,
                          ssim_range=None, source="DLRP course challenge (data README)"),
    # Per image over valid pixels (0 < gt <= cap), predictions clamped to the cap, SSIM with data range = cap.
    "standard": Protocol("standard", 20.0, per_batch=False, clip_target=False, clamp_pred=True, ssim_range=20.0,
                         source="Eigen et al. 2014 metric set, per-image averaging as in monodepth2/ZoeDepth"),
}


def get_protocol(name: str, max_depth: float | None = None) -> Protocol:
    """A preset by name, optionally with another depth cap."""
    if name not in PROTOCOLS:
        raise KeyError(f"unknown protocol '{name}'; available: {sorted(PROTOCOLS)}")
    proto = PROTOCOLS[name]
    if max_depth is not None and max_depth != proto.max_depth:
        values = proto.to_dict() | {"max_depth": float(max_depth)}
        if proto.ssim_range is not None:
            values["ssim_range"] = float(max_depth)
        proto = Protocol(**values)
    return proto
