"""Losses as pure functions ``(pred, target, mask) -> scalar`` and a weighted combination built from the config.

Every loss takes the valid mask (bool, same shape as the target); pixels outside it contribute nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from depthforge.metrics.alignment import align_scale_shift
from depthforge.metrics.ssim import ssim_map

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def l1_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over valid pixels."""
    return _masked_mean((pred - target).abs(), mask)


def mse_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _masked_mean((pred - target) ** 2, mask)


def rmse_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sqrt of the batch's masked MSE, as the report's loss computes it (one RMSE per batch, not per image)."""
    # The epsilon keeps the gradient finite when the prediction is exact.
    return torch.sqrt(mse_loss(pred, target, mask) + 1e-12)


def berhu_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Reverse Huber (Laina et al. 2016): L1 below ``c``, scaled L2 above; ``c`` is 1/5 of the batch's max error."""
    err = (pred - target).abs()
    c = (0.2 * err[mask].max()).detach().clamp_min(1e-6) if mask.any() else err.new_tensor(1.0)
    return _masked_mean(torch.where(err <= c, err, (err**2 + c**2) / (2 * c)), mask)


def silog_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, lam: float = 0.85) -> torch.Tensor:
    """Scale-invariant log loss (Eigen et al. 2014) with the variance weight ``lam`` of BTS/AdaBins."""
    valid = mask & (target > 0)
    d = torch.log(pred.clamp_min(1e-3)) - torch.log(target.clamp_min(1e-3))
    mean = _masked_mean(d, valid)
    mean_sq = _masked_mean(d**2, valid)
    return torch.sqrt((mean_sq - lam * mean**2).clamp_min(1e-12))


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM`` with the course's SSIM (metre values, zero padding), averaged over valid pixels."""
    return 1.0 - _masked_mean(ssim_map(pred, target), mask)


def ssi_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scale-and-shift-invariant MAE (Ranftl et al., MiDaS): the error left after the best per-image alignment."""
    return l1_loss(align_scale_shift(pred, target, mask), target, mask)


def gradient_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, scales: int = 4) -> torch.Tensor:
    """Multi-scale gradient matching (MiDaS): L1 of the x/y differences of the residual, at 1, 1/2, 1/4, 1/8."""
    total = pred.new_zeros(())
    res, m = pred - target, mask.to(pred.dtype)
    for k in range(scales):
        if k:
            res, m = res[..., ::2, ::2], m[..., ::2, ::2]
        mx, my = m[..., :, 1:] * m[..., :, :-1], m[..., 1:, :] * m[..., :-1, :]
        gx = (res[..., :, 1:] - res[..., :, :-1]).abs() * mx
        gy = (res[..., 1:, :] - res[..., :-1, :]).abs() * my
        total = total + (gx.sum() + gy.sum()) / (mx.sum() + my.sum()).clamp_min(1.0)
    return total / scales


def laplace_nll(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the target under a Laplace distribution centred on ``pred`` whose standard
    deviation is ``std`` (scale ``b = std / sqrt(2)``): ``|pred - target| / b + log(2 b)``, masked mean."""
    b = std / 2**0.5
    return _masked_mean((pred - target).abs() / b + torch.log(2 * b), mask)


def laplace_nll_scale(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, std: torch.Tensor
                      ) -> torch.Tensor:
    """`laplace_nll` with the predicted depth detached: its gradient reaches the depth output only through
    the other terms (the full NLL scales each pixel's depth gradient by 1 / b, which cost the Laplace-head model
    0.04-0.07 m at equal steps, BENCHMARKS.md); the uncertainty branch, and the features it shares with the depth,
    still learn from it."""
    return laplace_nll(pred.detach(), target, mask, std)


# Terms that also need the model's predicted uncertainty (a head such as ``laplace``).
UNCERTAINTY_LOSSES = {"laplace_nll": laplace_nll, "laplace_nll_scale": laplace_nll_scale}
# Terms a model computes itself during its training forward (the diffusion model's denoising MSE).
MODEL_LOSSES = {"diffusion": "a diffusion model's denoising loss (model.name=diffusion_*)"}

LOSSES: dict[str, LossFn] = {
    "l1": l1_loss, "mse": mse_loss, "rmse": rmse_loss, "berhu": berhu_loss, "silog": silog_loss, "ssim": ssim_loss,
    "ssi": ssi_loss, "grad": gradient_loss,
}


class WeightedLoss:
    """``sum(weight * loss)`` over named terms; returns the total and each term for logging."""

    def __init__(self, terms: dict[str, float]):
        known = set(LOSSES) | set(UNCERTAINTY_LOSSES) | set(MODEL_LOSSES)
        unknown = sorted(set(terms) - known)
        if unknown:
            raise KeyError(f"unknown loss term(s) {unknown}; available: {sorted(known)}")
        if not terms:
            raise ValueError("loss.terms is empty; give at least one term, e.g. {l1: 1.0}")
        self.terms = {k: float(v) for k, v in terms.items()}

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                 uncertainty: torch.Tensor | None = None, model_losses: dict[str, torch.Tensor] | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``model_losses``: the terms the model computed itself (`MODEL_LOSSES`)."""
        parts = {}
        for name in self.terms:
            if name in MODEL_LOSSES:
                if not model_losses or name not in model_losses:
                    raise ValueError(f"loss term {name} is {MODEL_LOSSES[name]}; this model computes none")
                parts[name] = model_losses[name]
            elif name in UNCERTAINTY_LOSSES:
                if uncertainty is None:
                    raise ValueError(f"loss term {name} needs a model that predicts its uncertainty "
                                     "(model.kwargs.head=laplace)")
                parts[name] = UNCERTAINTY_LOSSES[name](pred, target, mask, uncertainty)
            else:
                parts[name] = LOSSES[name](pred, target, mask)
        total = sum(w * parts[name] for name, w in self.terms.items())
        return total, parts
