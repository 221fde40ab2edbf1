"""timm, imported once, without the optional logging package it would pull in."""

from __future__ import annotations

import sys


def import_timm():
    """timm, imported without the wandb it does not need: ``timm.utils.summary`` imports wandb whenever it is
    installed (it is, with the ``wandb`` extra), for a logging option depthforge never uses, and that import alone
    took 2.9 of the 12 s a two-step ``depthforge train`` ran here. wandb stays importable afterwards (the wandb
    tracker imports it when asked)."""
    if "timm" in sys.modules or "wandb" in sys.modules:
        import timm

        return timm
    sys.modules["wandb"] = None  # `import wandb` raises ImportError, which timm catches
    try:
        import timm
    finally:
        if sys.modules.get("wandb", 0) is None:
            del sys.modules["wandb"]
    return timm
