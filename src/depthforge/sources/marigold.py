"""Marigold (diffusion depth, through ``diffusers``) as a depth source: ensembling, steps, resolution, seed, and the
ensemble's uncertainty map.

Output is affine-invariant (``relative`` for ``prediction_type="depth"``, ``disparity`` for ``"disparity"``): scored
with alignment, and calibrated to metres with reference points (``depthforge predict --calibrate``).

A folder saved without a tokenizer (the tokenizer only ever produces the empty prompt's embedding) can carry that
embedding as ``empty_text_embedding.safetensors`` instead; `load_marigold` then needs no tokenizer at all.
Needs the ``marigold`` extra (diffusers + scipy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

EMBEDDING_FILE = "empty_text_embedding.safetensors"


def load_marigold(where: str, device: str | torch.device = "cpu") -> Any:
    """A ``MarigoldDepthPipeline`` from a local folder or the Hub cache; a clear error offline without it."""
    try:
        from diffusers import MarigoldDepthPipeline
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError("Marigold needs the marigold extra: pip install 'depthforge[marigold]'") from err
    folder = Path(where).expanduser()
    extra: dict[str, Any] = {}
    embedding = None
    if folder.is_dir() and (folder / EMBEDDING_FILE).is_file():
        from safetensors.torch import load_file

        embedding = load_file(folder / EMBEDDING_FILE)["embedding"]
        if not (folder / "tokenizer").is_dir():
            extra = {"tokenizer": None, "text_encoder": None}
    try:
        pipe = MarigoldDepthPipeline.from_pretrained(str(folder) if folder.is_dir() else where, **extra)
    except (OSError, ValueError) as err:
        if folder.is_dir():
            raise FileNotFoundError(f"{where}: not a Marigold pipeline folder ({err}); save one with save_pretrained "
                               f"(without a tokenizer, add {EMBEDDING_FILE})") from err
        raise FileNotFoundError(f"{where}: Marigold pipeline not found locally and the Hub cannot be reached. Run once "
                           f"with network (HF_HOME cache) or download it (huggingface-cli download {where} "
                           "--local-dir FOLDER) and pass marigold:FOLDER") from err
    if embedding is not None:
        pipe.empty_text_embedding = embedding
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def save_empty_text_embedding(pipe: Any, folder: str | Path) -> Path:
    """Store the pipeline's empty-prompt embedding beside it, so the folder loads without a tokenizer."""
    from safetensors.torch import save_file

    path = Path(folder) / EMBEDDING_FILE
    save_file({"embedding": pipe.empty_text_embedding.detach().cpu().contiguous()}, str(path))
    return path


class MarigoldSource:
    """(N, 3, H, W) in [0, 1] -> (N, 1, H, W) affine-invariant depth or disparity; ``last_uncertainty`` holds the
    ensemble's per-pixel spread (ensemble of 3 or more) of the last call, else None.

    Each call seeds its own generator with ``seed``, so the same image always gives the same prediction.
    """

    uncertainty_kind = "ensemble spread (median absolute deviation, same unit as the prediction)"

    def __init__(self, pipe: Any, ensemble_size: int = 1, steps: int | None = None,
                 processing_resolution: int | None = None, seed: int = 0, reduction: str = "median"):
        if ensemble_size < 1:
            raise ValueError(f"ensemble_size must be >= 1, got {ensemble_size}")
        self.pipe = pipe
        self.ensemble_size, self.steps, self.seed = int(ensemble_size), steps, int(seed)
        self.processing_resolution, self.reduction = processing_resolution, reduction
        self.kind = "disparity" if pipe.config.get("prediction_type", "depth") == "disparity" else "relative"
        self.last_uncertainty: torch.Tensor | None = None

    @property
    def preprocessing(self) -> dict:
        return {"pipeline": type(self.pipe).__name__, "ensemble_size": self.ensemble_size,
                "denoising_steps": self.steps or self.pipe.default_denoising_steps,
                "processing_resolution": self.processing_resolution
                if self.processing_resolution is not None else self.pipe.default_processing_resolution,
                "seed": self.seed, "reduction": self.reduction}

    def eval(self) -> MarigoldSource:
        return self

    def to(self, device: str | torch.device | None = None, *_args, **_kwargs) -> MarigoldSource:
        if isinstance(device, (str, torch.device)):
            self.pipe = self.pipe.to(device)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        out = self.pipe(x.float(), num_inference_steps=self.steps, ensemble_size=self.ensemble_size,
                        processing_resolution=self.processing_resolution, generator=generator, output_type="pt",
                        output_uncertainty=self.ensemble_size >= 3, batch_size=max(1, self.ensemble_size),
                        ensembling_kwargs=None if self.reduction == "median" else {"reduction": self.reduction})
        self.last_uncertainty = out.uncertainty if self.ensemble_size >= 3 else None
        return out.prediction.to(x.device)
