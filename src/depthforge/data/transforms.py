"""Joint geometric transforms: one random draw moves image (bilinear), depth and mask (nearest) together.

Built on torchvision transforms v2: depth and mask are wrapped as ``tv_tensors.Mask`` so that v2 resamples them
with nearest-neighbour interpolation and never blends depths across an object boundary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2

from depthforge.config import DataConfig
from depthforge.data.base import Sample


class JointTransform:
    """Apply a v2 transform to a sample dict's image, depth and mask with one shared random draw."""

    def __init__(self, transform: Callable):
        self.transform = transform

    def __call__(self, sample: Sample) -> Sample:
        image, depth, mask = self.transform(
            tv_tensors.Image(sample["image"]), tv_tensors.Mask(sample["depth"]), tv_tensors.Mask(sample["mask"]))
        return {**sample, "image": image.as_subclass(torch.Tensor), "depth": depth.as_subclass(torch.Tensor),
                "mask": mask.as_subclass(torch.Tensor)}


class RandomScale:
    """Zoom by a random factor ``s`` and crop or pad back to the input size: a random resized crop for depth.

    Zooming by ``s`` is what a focal length ``s`` times longer would see, so objects look ``s`` times nearer;
    ``adjust_depth`` divides depth by ``s`` to keep size and depth consistent for metric models. Padding (``s < 1``)
    is invalid in the mask.
    """

    def __init__(self, low: float, high: float, adjust_depth: bool = True):
        self.low, self.high, self.adjust_depth = float(low), float(high), adjust_depth

    def __call__(self, sample: Sample) -> Sample:
        image, depth, mask = sample["image"], sample["depth"], sample["mask"]
        h, w = image.shape[-2:]
        s = float(torch.empty(()).uniform_(self.low, self.high))
        size = [max(1, round(h * s)), max(1, round(w * s))]
        image = v2.functional.resize(image, size, antialias=True)
        depth = v2.functional.resize(depth, size, interpolation=v2.InterpolationMode.NEAREST)
        mask = v2.functional.resize(mask, size, interpolation=v2.InterpolationMode.NEAREST)
        if self.adjust_depth:
            depth = depth / s
        if s >= 1:
            top = int(torch.randint(0, size[0] - h + 1, ()))
            left = int(torch.randint(0, size[1] - w + 1, ()))
            crop = (..., slice(top, top + h), slice(left, left + w))
            image, depth, mask = image[crop], depth[crop], mask[crop]
        else:
            pad = (0, w - size[1], 0, h - size[0])
            image, depth = F.pad(image, pad), F.pad(depth, pad)
            mask = F.pad(mask, pad, value=False)
        return {**sample, "image": image, "depth": depth, "mask": mask}


class Compose:
    def __init__(self, *transforms: Callable):
        self.transforms = [t for t in transforms if t is not None]

    def __call__(self, sample: Sample) -> Sample:
        for t in self.transforms:
            sample = t(sample)
        return sample


def build_transform(cfg: DataConfig, train: bool) -> Callable[[Sample], Sample] | None:
    """Training geometry from the config: short-side resize, centre crop, random horizontal flip."""
    ops: list = []
    if cfg.resize_short:
        ops.append(v2.Resize(int(cfg.resize_short), antialias=True))
    if cfg.crop:
        ops.append(v2.CenterCrop(list(cfg.crop)))
    if train and cfg.random_crop:
        ops.append(v2.RandomCrop(list(cfg.random_crop), pad_if_needed=True))
    if train and cfg.rotate:
        # Nearest for depth and mask (Mask tv_tensors); uncovered corners get depth 0 and mask False.
        ops.append(v2.RandomRotation(float(cfg.rotate), interpolation=v2.InterpolationMode.BILINEAR))
    if train and cfg.hflip:
        ops.append(v2.RandomHorizontalFlip())
    if train and cfg.color_jitter:
        # v2 applies photometric transforms to Image tv_tensors only: depth and mask pass through untouched.
        j = float(cfg.color_jitter)
        ops.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j, hue=min(j / 4, 0.5)))
    joint = JointTransform(v2.Compose(ops)) if ops else None
    if train and cfg.scale_range:
        return Compose(RandomScale(*cfg.scale_range, adjust_depth=cfg.scale_depth), joint)
    return joint


def model_input(image: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """Resize a native-resolution batch (N, 3, H, W) to the geometry the model was trained at (no crop)."""
    if not cfg.resize_short:
        return image
    h, w = image.shape[-2:]
    scale = cfg.resize_short / min(h, w)
    size = (round(h * scale), round(w * scale))
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)


def to_size(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize predictions (N, 1, h, w) to the target size; scoring always happens at the data's native size."""
    if tuple(pred.shape[-2:]) == tuple(size):
        return pred
    return F.interpolate(pred, size=size, mode="bilinear", align_corners=False)
