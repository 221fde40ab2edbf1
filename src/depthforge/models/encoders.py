"""Encoders: modules returning a list of feature maps, with ``out_channels``, ``strides`` and preprocessing."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from depthforge.models.pretrained import fetch, load_into, read_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Input normalisation and size multiple that travel with an encoder's weights (timm's PretrainedCfg idea)."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    multiple: int = 32


class Encoder(nn.Module):
    """Base: ``forward(x) -> list of features``, shallow to deep; ``stages()`` lists freezable stages in order."""

    out_channels: list[int]
    strides: list[int]
    preprocess: Preprocess = Preprocess()

    def stages(self) -> list[nn.Module]:
        raise NotImplementedError

    def freeze(self, num_stages: int) -> None:
        """Freeze the first ``num_stages`` stages (parameters and BatchNorm statistics)."""
        for i, stage in enumerate(self.stages()):
            stage.requires_grad_(i >= num_stages)
        self.frozen_stages = num_stages

    def train(self, mode: bool = True) -> Encoder:
        # Frozen stages keep BatchNorm in eval mode when asked: their running statistics must match their weights.
        super().train(mode)
        if mode and getattr(self, "frozen_bn_eval", False):
            for stage in self.stages()[: getattr(self, "frozen_stages", 0)]:
                for m in stage.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
        return self


_TV_RESNETS = {
    "resnet18": (torchvision.models.resnet18, "ResNet18_Weights", [64, 64, 128, 256, 512]),
    "resnet34": (torchvision.models.resnet34, "ResNet34_Weights", [64, 64, 128, 256, 512]),
    "resnet50": (torchvision.models.resnet50, "ResNet50_Weights", [64, 256, 512, 1024, 2048]),
}


class TorchvisionResNet(Encoder):
    """A torchvision ResNet without avgpool/fc; features after the stem and each of layer1..layer4.

    Args:
        arch: resnet18 | resnet34 | resnet50.
        pretrained: ``none``, ``imagenet`` (torchvision's IMAGENET1K_V1, the weights ``pretrained=True`` gave the
            report) or a local state-dict file.
    """

    strides = [2, 4, 8, 16, 32]

    def __init__(self, arch: str = "resnet50", pretrained: str = "none"):
        super().__init__()
        builder, weights_enum, channels = _TV_RESNETS[arch]
        net = builder(weights=None)
        self.out_channels = channels
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)
        self.pool = net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        if pretrained == "imagenet":
            weights = getattr(torchvision.models, weights_enum).IMAGENET1K_V1
            cache = f"{torch.hub.get_dir()}/checkpoints/{weights.url.rsplit('/', 1)[-1]}"
            state = fetch(lambda: weights.get_state_dict(progress=True), f"{arch} ImageNet weights", cache)
            self._load_torchvision(state, weights.url)
        elif pretrained not in ("none", "", None):
            self._load_torchvision(read_state_dict(pretrained), str(pretrained))

    def _load_torchvision(self, state: dict[str, torch.Tensor], source: str) -> None:
        renamed = {}
        for key, value in state.items():
            if key.startswith(("conv1.", "bn1.")):
                key = {"conv1": "stem.0", "bn1": "stem.1"}[key.split(".")[0]] + key[key.index("."):]
            renamed[key] = value
        load_into(self, renamed, source, ignore_prefixes=("fc.",))

    def stages(self) -> list[nn.Module]:
        return [self.stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x0 = self.stem(x)
        x1 = self.layer1(self.pool(x0))
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        return [x0, x1, x2, x3, self.layer4(x3)]
