"""Evaluation: protocols, the evaluator that scores a source over a data set, eval cards, reports and comparisons.

Sits above `depthforge.predict` (which runs sources) and `depthforge.metrics` (pure scoring).
"""

from depthforge.evaluation.evaluator import METRICS, Evaluator
from depthforge.evaluation.protocols import PROTOCOLS, Protocol, get_protocol

__all__ = ["Evaluator", "METRICS", "Protocol", "PROTOCOLS", "get_protocol"]
