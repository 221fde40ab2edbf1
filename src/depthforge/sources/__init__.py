"""Depth sources: what turns an image into depth, and how one is loaded from a spec.

A depthforge checkpoint or an ensemble of them (`checkpoint`), an exported ONNX file (run by
`depthforge.export`), a shared depthforge folder or Hub repo (`hub`), a transformers
model (``hf:``) or a Marigold pipeline (`marigold`), all behind one interface
(`loading`).
"""

from depthforge.sources.checkpoint import CheckpointError, Ensemble, load_checkpoint, load_ensemble
from depthforge.sources.loading import (KINDS, DepthSource, LoadedSource, load_source, protocol_for, source_kind,
                                        spec_from)

__all__ = ["KINDS", "CheckpointError", "DepthSource", "Ensemble", "LoadedSource", "load_checkpoint", "load_ensemble",
           "load_source", "protocol_for", "source_kind", "spec_from"]
