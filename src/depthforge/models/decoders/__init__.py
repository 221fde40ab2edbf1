"""Decoders, one file each; each is built from an encoder's ``out_channels`` (and strides)."""

from depthforge.models.decoders.transposed import TransposedConvDecoder

__all__ = ["TransposedConvDecoder"]
