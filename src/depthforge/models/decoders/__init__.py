"""Decoders, one file each; each is built from an encoder's ``out_channels`` and ``strides``."""

from depthforge.models.decoders.dpt import DPTDecoder
from depthforge.models.decoders.fusion import FusionDecoder
from depthforge.models.decoders.transposed import TransposedConvDecoder
from depthforge.models.decoders.unet import UNetDecoder

__all__ = ["DPTDecoder", "FusionDecoder", "TransposedConvDecoder", "UNetDecoder"]
