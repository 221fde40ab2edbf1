"""Metrics, SSIM, alignment, protocols and the evaluator."""

from depthforge.metrics.evaluator import METRICS, Evaluator
from depthforge.metrics.protocols import PROTOCOLS, Protocol, get_protocol

__all__ = ["Evaluator", "METRICS", "Protocol", "PROTOCOLS", "get_protocol"]
