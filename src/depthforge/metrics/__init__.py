"""Metrics, SSIM, protocols and the evaluator."""

from depthforge.metrics.evaluator import Evaluator
from depthforge.metrics.protocols import PROTOCOLS, Protocol, get_protocol

__all__ = ["Evaluator", "Protocol", "PROTOCOLS", "get_protocol"]
