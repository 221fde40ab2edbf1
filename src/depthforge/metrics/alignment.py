"""Aligning predictions to ground truth before scoring (for relative-depth models) and crop boxes."""

from __future__ import annotations

import torch

ALIGNMENTS = ("none", "median", "scale", "scale_shift", "scale_shift_disparity", "disparity")

# Eigen et al. (2014) NYU crop on 480x640, as BTS/AdaBins/ZoeDepth apply it: rows 45..471, cols 41..601.
EIGEN_CROP = (45 / 480, 471 / 480, 41 / 640, 601 / 640)
# Garg et al. (2016) KITTI crop, as fractions of height and width (monodepth2's constants).
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)


def crop_mask(height: int, width: int, crop: str | list | tuple | None) -> torch.Tensor:
    """Bool (H, W) of the evaluated box: ``none``, ``eigen``, ``garg`` or ``[top, bottom, left, right]``.

    A custom box in fractions (all values <= 1) scales with the image; otherwise it is in pixels.
    """
    mask = torch.zeros(height, width, dtype=torch.bool)
    if crop in (None, "none"):
        return mask.fill_(True)
    box = {"eigen": EIGEN_CROP, "garg": GARG_CROP}.get(crop, crop) if isinstance(crop, str) else crop
    if isinstance(box, str) or len(box) != 4:
        raise ValueError(f"unknown crop {crop!r}; use none, eigen, garg or [top, bottom, left, right]")
    top, bottom, left, right = box
    if all(0 <= float(v) <= 1 for v in box):
        top, bottom, left, right = (int(top * height), int(bottom * height), int(left * width), int(right * width))
    mask[int(top):int(bottom), int(left):int(right)] = True
    return mask


def align_scale_shift(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image (leading dim), the least-squares ``s * pred + t`` closest to ``target`` over valid pixels."""
    m = mask.to(pred.dtype)
    dims = tuple(range(1, pred.ndim))
    n = m.sum(dim=dims, keepdim=True).clamp_min(1.0)
    mp = (m * pred).sum(dim=dims, keepdim=True) / n
    mt = (m * target).sum(dim=dims, keepdim=True) / n
    cov = (m * (pred - mp) * (target - mt)).sum(dim=dims, keepdim=True)
    var = (m * (pred - mp) ** 2).sum(dim=dims, keepdim=True).clamp_min(1e-12)
    s = cov / var
    return s * pred + (mt - s * mp)


def align(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, method: str) -> torch.Tensor:
    """Align each image of ``pred`` to ``gt`` over ``mask``.

    ``median``: scale by median(gt) / median(pred) (monodepth2); ``scale``: least-squares scale; ``scale_shift``:
    least-squares scale and shift in depth (Marigold, Depth Anything's relative protocol); ``scale_shift_disparity``:
    the same in inverse depth (MiDaS), converted back to depth; ``disparity``: for a prediction that *is* an
    affine-invariant disparity (DPT / MiDaS, relative Depth Anything), scale and shift fitted to 1 / gt, then inverted.
    """
    if method == "none":
        return pred
    if method not in ALIGNMENTS:
        raise ValueError(f"unknown alignment '{method}'; use one of {ALIGNMENTS}")
    out = []
    for p, g, m in zip(pred, gt, mask):
        if not m.any():
            out.append(p)
            continue
        if method == "median":
            out.append(p * (g[m].median() / p[m].median().clamp_min(1e-12)))
        elif method == "scale":
            out.append(p * ((p[m] * g[m]).sum() / (p[m] ** 2).sum().clamp_min(1e-12)))
        elif method == "scale_shift":
            out.append(align_scale_shift(p[None], g[None], m[None])[0])
        else:
            source = p if method == "disparity" else 1 / p.clamp_min(1e-6)  # already disparity, or depth to invert
            disp = align_scale_shift(source[None], 1 / g.clamp_min(1e-6)[None], m[None])[0]
            out.append(1 / disp.clamp_min(1e-6))
    return torch.stack(out)
