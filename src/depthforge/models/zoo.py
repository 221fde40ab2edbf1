"""Registered models: a few lines each, composing an encoder, a decoder and a head."""

from __future__ import annotations

from depthforge.models.decoders import TransposedConvDecoder
from depthforge.models.depth_model import DepthModel
from depthforge.models.encoders import TorchvisionResNet
from depthforge.models.heads import build_head
from depthforge.models.registry import register_model


@register_model
def baseline(pretrained: str = "none", frozen_stages: int = 4, frozen_bn_eval: bool = False,
             head: str = "identity", max_depth: float = 20.0) -> DepthModel:
    """The course report's model, exactly: torchvision ResNet50 (no avgpool/fc), all but ``layer4`` frozen, and
    five ``ConvTranspose2d(4, 2, 1)`` 2048->512->256->128->64->1 with BatchNorm + ReLU after the first four.

    The report only set ``requires_grad=False``, so frozen BatchNorm layers still updated their running statistics
    in training mode; ``frozen_bn_eval=False`` keeps that behaviour.
    """
    encoder = TorchvisionResNet("resnet50", pretrained)
    encoder.frozen_bn_eval = frozen_bn_eval
    encoder.freeze(frozen_stages)
    decoder = TransposedConvDecoder(encoder.out_channels[-1], (512, 256, 128, 64, 1))
    return DepthModel(encoder, decoder, build_head(head, max_depth))
