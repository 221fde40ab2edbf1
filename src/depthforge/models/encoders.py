"""Encoders: modules returning a list of feature maps, with ``out_channels``, ``strides`` and preprocessing."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from depthforge.models.pretrained import PretrainedWeightsError, fetch, load_into, read_state_dict
from depthforge.models.timm_import import import_timm

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Input normalisation and size multiple that travel with an encoder's weights (timm's PretrainedCfg idea)."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    multiple: int = 32


def freeze_groups(groups: list[list[nn.Parameter]], num_stages: int) -> int:
    """Stop gradients to the first ``num_stages`` parameter groups (all for ``-1``); return how many are frozen."""
    num_stages = len(groups) if num_stages < 0 else num_stages
    for i, params in enumerate(groups):
        for p in params:
            p.requires_grad_(i >= num_stages)
    return num_stages


class Encoder(nn.Module):
    """Base: ``forward(x) -> list of features``, shallow to deep; ``stages()`` lists freezable stages in order."""

    out_channels: list[int]
    strides: list[int]
    preprocess: Preprocess = Preprocess()

    def stages(self) -> list[nn.Module]:
        """Modules of each stage, shallow to deep (parameters and BatchNorms of a stage live inside them)."""
        raise NotImplementedError

    def stage_parameters(self) -> list[list[nn.Parameter]]:
        return [list(stage.parameters()) for stage in self.stages()]

    def stage_batchnorms(self) -> list[list[nn.Module]]:
        return [[m for m in stage.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
                for stage in self.stages()]

    def freeze(self, num_stages: int) -> None:
        """Freeze the first ``num_stages`` stages (all of them for ``-1``); later stages train."""
        self.frozen_stages = freeze_groups(self.stage_parameters(), num_stages)

    def train(self, mode: bool = True) -> Encoder:
        # Frozen stages keep BatchNorm in eval mode when asked: their running statistics must match their weights.
        super().train(mode)
        if mode and getattr(self, "frozen_bn_eval", False):
            for bns in self.stage_batchnorms()[: getattr(self, "frozen_stages", 0)]:
                for m in bns:
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


def _within(param_name: str, module_name: str) -> bool:
    # timm's feature_info says 'stages.0' where FeatureListNet registers 'stages_0', and wrappers add prefixes.
    dotted = "." + param_name + "."
    return any(f".{v}." in dotted for v in {module_name, module_name.replace(".", "_")})


class TimmEncoder(Encoder):
    """Any timm backbone through its feature API (``features_only=True``).

    Args:
        name: timm model name, e.g. ``resnet34``, ``tf_efficientnet_lite0``, ``convnext_atto``,
            ``vit_tiny_patch16_224``.
        pretrained: ``none``; ``imagenet`` (offline package weights where depthforge knows them, else timm's hub,
            which fails clearly offline); or a local state-dict file of the timm classifier.
        out_indices: which feature levels to return (timm's meaning).
        **kwargs: passed to ``timm.create_model`` (e.g. ``dynamic_img_size=True`` for ViTs).
    """

    def __init__(self, name: str, pretrained: str = "none", out_indices: tuple[int, ...] | None = None,
                 multiple: int = 32, **kwargs):
        super().__init__()
        timm = import_timm()
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)
        self.model = timm.create_model(name, features_only=True, pretrained=False, **kwargs)
        info = self.model.feature_info
        self.out_channels, self.strides = list(info.channels()), list(info.reduction())
        self._boundaries = list(info.module_name())
        cfg = self.model.pretrained_cfg
        self.preprocess = Preprocess(tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)),
                                     multiple)
        self.timm_name = name
        if pretrained == "imagenet":
            from depthforge.models.offline_weights import OFFLINE_IMAGENET, load_offline

            if name in OFFLINE_IMAGENET:
                self._load_classifier_state(load_offline(name), f"{name} ImageNet ({OFFLINE_IMAGENET[name]})")
            else:
                def download() -> dict[str, torch.Tensor]:
                    return timm.create_model(name, pretrained=True).state_dict()

                state = fetch(download, f"timm '{name}' ImageNet weights",
                              "the Hugging Face cache (HF_HOME) or a local file")
                self._load_classifier_state(state, f"timm hub {name}")
        elif pretrained not in ("none", "", None):
            self._load_classifier_state(read_state_dict(pretrained), str(pretrained))

    def _load_classifier_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Load a classifier's state dict, dropping what the feature extractor does not have (head, last conv)."""
        own = self.model.state_dict()
        prefix = "model." if all(k.startswith("model.") for k in own) else ""
        mapped = {prefix + k: v for k, v in state.items()}
        keep = {k.replace(".", "_", 1) if k.replace(".", "_", 1) in own and k not in own else k: v
                for k, v in mapped.items()}
        keep = {k: v for k, v in keep.items() if k in own}
        missing = sorted(set(own) - set(keep))
        if missing or not keep:
            raise PretrainedWeightsError(f"{source}: weights do not fit timm '{self.timm_name}' (missing "
                                         f"{missing[:5]}); check that the file was saved from the same architecture")
        self.model.load_state_dict(keep)

    def _stage_index(self, names: list[str]) -> list[int]:
        """Stage of each name (registration order): the feature module that holds it, else the next one after it.

        So the stem belongs to stage 0 and a last conv after the final feature module to the last stage.
        """
        found = [next((j for j, b in enumerate(self._boundaries) if _within(n, b)), None) for n in names]
        out, nxt = [0] * len(names), len(self._boundaries) - 1
        for i in reversed(range(len(names))):
            nxt = found[i] if found[i] is not None else nxt
            out[i] = nxt
        return out

    def _module_stages(self) -> dict[str, int]:
        names = [n for n, _ in self.model.named_modules() if n]
        return dict(zip(names, self._stage_index(names)))

    def stage_parameters(self) -> list[list[nn.Parameter]]:
        stage_of = self._module_stages()
        groups: list[list[nn.Parameter]] = [[] for _ in self._boundaries]
        for name, p in self.model.named_parameters():
            owner = name.rsplit(".", 1)[0] if "." in name else ""
            groups[stage_of.get(owner, 0)].append(p)
        return groups

    def stage_batchnorms(self) -> list[list[nn.Module]]:
        stage_of = self._module_stages()
        groups: list[list[nn.Module]] = [[] for _ in self._boundaries]
        for name, m in self.model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                groups[stage_of[name]].append(m)
        return groups

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.model(x))
