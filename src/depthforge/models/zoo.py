"""Registered models: a few lines each, composing an encoder, a decoder and a head.

Every builder takes ``pretrained``, ``head`` (see `build_head`), ``max_depth``,
``frozen_stages`` (freeze the first N encoder stages; -1 = all) and ``frozen_bn_eval`` (keep BatchNorm of frozen
stages in eval mode); encoder-decoder models also take ``input_scale`` and ``scale_jitter`` (see
`DepthModel`).
"""

from __future__ import annotations

from depthforge.models.decoders import DPTDecoder, FusionDecoder, TransposedConvDecoder, UNetDecoder
from depthforge.models.depth_model import DepthModel
from depthforge.models.encoders import Encoder, TimmEncoder, TorchvisionResNet
from depthforge.models.heads import build_head
from depthforge.models.registry import register_model

_DECODERS = {"unet": UNetDecoder, "fusion": FusionDecoder, "dpt": DPTDecoder}


def _compose(encoder: Encoder, decoder: str, head: str, max_depth: float, frozen_stages: int,
             frozen_bn_eval: bool, input_scale: float = 1.0, scale_jitter: float = 0.0, **decoder_kwargs
             ) -> DepthModel:
    encoder.frozen_bn_eval = frozen_bn_eval
    encoder.freeze(frozen_stages)
    dec = _DECODERS[decoder](encoder.out_channels, encoder.strides, **decoder_kwargs)
    return DepthModel(encoder, dec, build_head(head, dec.out_channels, max_depth), input_scale, scale_jitter)


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
    return DepthModel(encoder, decoder, build_head(head, 1, max_depth))


def _timm(name: str, decoder: str, pretrained: str, head: str, max_depth: float, frozen_stages: int,
          frozen_bn_eval: bool, encoder_kwargs: dict | None = None, **decoder_kwargs) -> DepthModel:
    encoder = TimmEncoder(name, pretrained, **(encoder_kwargs or {}))
    return _compose(encoder, decoder, head, max_depth, frozen_stages, frozen_bn_eval, **decoder_kwargs)


@register_model
def unet_resnet18(pretrained="none", head="sigmoid", max_depth=20.0, frozen_stages=0, frozen_bn_eval=True, **kw):
    return _timm("resnet18", "unet", pretrained, head, max_depth, frozen_stages, frozen_bn_eval, **kw)


@register_model
def unet_resnet34(pretrained="none", head="sigmoid", max_depth=20.0, frozen_stages=0, frozen_bn_eval=True, **kw):
    return _timm("resnet34", "unet", pretrained, head, max_depth, frozen_stages, frozen_bn_eval, **kw)


@register_model
def unet_resnet50(pretrained="none", head="sigmoid", max_depth=20.0, frozen_stages=0, frozen_bn_eval=True, **kw):
    return _timm("resnet50", "unet", pretrained, head, max_depth, frozen_stages, frozen_bn_eval, **kw)


@register_model
def unet_efficientnet_lite0(pretrained="none", head="sigmoid", max_depth=20.0, frozen_stages=0,
                            frozen_bn_eval=True, **kw):
    """EfficientNet-Lite0 (ImageNet weights offline) U-Net: the recommended CPU model."""
    return _timm("tf_efficientnet_lite0", "unet", pretrained, head, max_depth, frozen_stages, frozen_bn_eval, **kw)


@register_model
def realtime_efficientnet_lite0(pretrained="none", head="sigmoid", max_depth=20.0, frozen_stages=0,
                                frozen_bn_eval=True, widths=(128, 64, 48, 32), **kw):
    """The real-time CPU model: EfficientNet-Lite0 (ImageNet weights offline) with a narrow U-Net decoder that stops
    at stride 2 (the head's output is upsampled bilinearly): 1.8 GFLOPs at 144x256, half the full U-Net's, whose
    stride-1 blocks cost most. ``--config realtime`` trains it with the ``cpu`` recipe's settings."""
    return _timm("tf_efficientnet_lite0", "unet", pretrained, head, max_depth, frozen_stages, frozen_bn_eval,
                 widths=tuple(widths), **kw)


@register_model
def unet_efficientnet_lite2(pretrained="none", head="sigmoid", max_depth=20.0, frozen_stages=0,
                            frozen_bn_eval=True, **kw):
    return _timm("tf_efficientnet_lite2", "unet", pretrained, head, max_depth, frozen_stages, frozen_bn_eval, **kw)


@register_model
def unet_convnext_atto(pretrained="none", head="sigmoid", max_depth=20.0, frozen_stages=0, frozen_bn_eval=True,
                       **kw):
    return _timm("convnext_atto", "unet", pretrained, head, max_depth, frozen_stages, frozen_bn_eval, **kw)


@register_model
def unet_mobilenetv3(pretrained="none", head="sigmoid", max_depth=20.0, frozen_stages=0, frozen_bn_eval=True,
                     **kw):
    return _timm("mobilenetv3_large_100", "unet", pretrained, head, max_depth, frozen_stages, frozen_bn_eval, **kw)


@register_model
def fusion_efficientnet_lite0(pretrained="none", head="sigmoid", max_depth=20.0, frozen_stages=0,
                              frozen_bn_eval=True, **kw):
    """MiDaS-style feature fusion decoder on EfficientNet-Lite0 (MiDaS v2.1 small pairs fusion with EfficientNet)."""
    return _timm("tf_efficientnet_lite0", "fusion", pretrained, head, max_depth, frozen_stages, frozen_bn_eval, **kw)


@register_model
def bins_efficientnet_lite0(pretrained="none", head="bins", max_depth=20.0, frozen_stages=0, frozen_bn_eval=True,
                            **kw):
    """U-Net with the adaptive-bins head (ZoeDepth/AdaBins idea)."""
    return _timm("tf_efficientnet_lite0", "unet", pretrained, head, max_depth, frozen_stages, frozen_bn_eval, **kw)


@register_model
def dpt_vit_tiny(pretrained="none", head="sigmoid", max_depth=20.0, frozen_stages=0, frozen_bn_eval=True, **kw):
    """DPT: ViT-Tiny/16 tokens from blocks 3, 6, 9, 12 reassembled and fused (attention encoder)."""
    enc = {"out_indices": (2, 5, 8, 11), "dynamic_img_size": True}
    return _timm("vit_tiny_patch16_224", "dpt", pretrained, head, max_depth, frozen_stages, frozen_bn_eval,
                 encoder_kwargs=enc, **kw)


@register_model
def diffusion_efficientnet_lite2(pretrained="none", max_depth=20.0, frozen_stages=0, frozen_bn_eval=True,
                                 widths=(256, 128, 64), **kw):
    """Conditional diffusion depth model (`DiffusionDepthModel`): an
    EfficientNet-Lite2 U-Net decoder down to stride 4 conditions a ``diffusers`` UNet2DModel denoiser; sampling
    options ``samples``, ``steps``, ``seed``, ``eta``, ``ensemble``."""
    from depthforge.models.diffusion import DiffusionDepthModel

    encoder = TimmEncoder("tf_efficientnet_lite2", pretrained)
    encoder.frozen_bn_eval = frozen_bn_eval
    encoder.freeze(frozen_stages)
    decoder = UNetDecoder(encoder.out_channels, encoder.strides, widths=tuple(widths))
    return DiffusionDepthModel(encoder, decoder, max_depth=max_depth, **kw)
