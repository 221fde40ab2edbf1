"""The package version, in one place below every layer (cards, checkpoints and model cards record it)."""

__version__ = "0.1.0"
