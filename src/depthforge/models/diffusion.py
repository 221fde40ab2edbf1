"""A conditional diffusion depth model trained from scratch here (the Marigold idea without Stable Diffusion, in
the spirit of DDP / DiffusionDepth): image features from an ImageNet encoder condition a small denoiser that turns
noise into a depth map at 1/4 resolution; an edge-aware convex upsampling (RAFT's) brings it to full size.

Noise schedule, noising and sampling are ``diffusers``' (``DDPMScheduler`` for training, ``DDIMScheduler`` with
trailing timesteps for few-step sampling); the denoiser is ``diffusers``' ``UNet2DModel``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from depthforge.models.depth_model import DepthModel
from depthforge.models.encoders import Encoder

PREDICTION_TYPES = ("sample", "epsilon", "v_prediction")
ENSEMBLES = ("median", "mean")


def _diffusers():
    try:
        import diffusers
    except ImportError as err:
        raise ImportError("the diffusion depth model needs diffusers: pip install 'depthforge[diffusion]'") from err
    return diffusers


def ensemble_median(samples: torch.Tensor) -> torch.Tensor:
    """Median over dim 0 as numpy defines it (the mean of the two middle values for an even count; torch.median
    returns the lower one)."""
    s = samples.sort(dim=0).values
    n = s.shape[0]
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def convex_upsample(x: torch.Tensor, mask: torch.Tensor, factor: int) -> torch.Tensor:
    """Each output pixel a convex combination of the 3x3 low-resolution neighbours of its cell (RAFT's upsampling):
    ``mask`` (N, 9 * factor**2, h, w) logits, softmax over the 9 neighbours; ``x`` (N, 1, h, w) -> (N, 1, fh, fw)."""
    n, _, h, w = x.shape
    weights = mask.view(n, 9, factor * factor, h, w).softmax(dim=1)
    neighbours = F.unfold(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3).view(n, 9, 1, h, w)
    out = (weights * neighbours).sum(dim=1)  # (n, factor**2, h, w)
    return F.pixel_shuffle(out, factor)


class DiffusionDepthModel(DepthModel):
    """RGB in [0, 1] -> depth in metres, by denoising (see the module docstring).

    Depth is modelled normalised to [-1, 1] (``2 * depth / max_depth - 1``) at the decoder's stride (4 by
    default). In eval mode a forward pass draws ``samples`` depth maps from noise with ``steps`` DDIM steps (noise from
    a generator seeded with ``seed``: the same seed gives the same prediction), returns their ``ensemble`` (median or
    mean) and, for two samples or more, keeps their standard deviation in metres as ``last_uncertainty``.
    `denoising_loss` is the training step: noise the target at a random timestep, denoise once.
    """

    def __init__(self, encoder: Encoder, decoder: nn.Module, max_depth: float = 20.0,
                 denoiser_channels: tuple[int, ...] = (64, 128, 128), samples: int = 1, steps: int = 4,
                 seed: int = 0, eta: float = 0.0, ensemble: str = "median", prediction_type: str = "sample",
                 train_timesteps: int = 1000, beta_schedule: str = "squaredcos_cap_v2"):
        super().__init__(encoder, decoder, nn.Identity())
        diffusers = _diffusers()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type {prediction_type!r}: use one of {PREDICTION_TYPES}")
        factor = decoder.final_stride
        if factor & (factor - 1) or factor > 8:
            raise ValueError(f"the conditioning decoder must end at stride 1, 2, 4 or 8, not {factor}")
        self.factor, self.max_depth = factor, float(max_depth)
        cond = decoder.out_channels
        groups = math.gcd(*denoiser_channels, 32)
        self.denoiser = diffusers.UNet2DModel(
            in_channels=1 + cond, out_channels=1, block_out_channels=tuple(denoiser_channels), layers_per_block=1,
            down_block_types=("DownBlock2D",) * len(denoiser_channels),
            up_block_types=("UpBlock2D",) * len(denoiser_channels), norm_num_groups=groups,
            attention_head_dim=min(32, denoiser_channels[-1]))
        self.upsample_mask = nn.Sequential(nn.Conv2d(cond, 64, 3, padding=1), nn.ReLU(inplace=True),
                                           nn.Conv2d(64, 9 * factor * factor, 1)) if factor > 1 else None
        self.noise_scheduler = diffusers.DDPMScheduler(num_train_timesteps=train_timesteps,
                                                       beta_schedule=beta_schedule, prediction_type=prediction_type,
                                                       clip_sample=False)
        self.sampler = diffusers.DDIMScheduler.from_config(self.noise_scheduler.config, timestep_spacing="trailing",
                                                           clip_sample=True, set_alpha_to_one=True)
        self.set_sampling(samples=samples, steps=steps, seed=seed, eta=eta, ensemble=ensemble)
        self.last_uncertainty: torch.Tensor | None = None

    def set_sampling(self, samples: int | None = None, steps: int | None = None, seed: int | None = None,
                     eta: float | None = None, ensemble: str | None = None) -> None:
        """Change how predictions are sampled (``predict`` / ``evaluate --samples --steps --seed``)."""
        for name, value in (("samples", samples), ("steps", steps)):
            if value is not None and int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if ensemble is not None and ensemble not in ENSEMBLES:
            raise ValueError(f"ensemble {ensemble!r}: use one of {ENSEMBLES}")
        self.samples = int(samples if samples is not None else self.samples)
        self.steps = int(steps if steps is not None else self.steps)
        self.seed = int(seed if seed is not None else self.seed)
        self.eta = float(eta if eta is not None else self.eta)
        self.ensemble = ensemble or self.ensemble

    @property
    def uncertainty_kind(self) -> str | None:
        return (f"spread of {self.samples} diffusion samples (standard deviation, metres)" if self.samples > 1
                else None)

    # -- pieces ------------------------------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Conditioning features at the decoder's stride for an input already padded to ``self.multiple``."""
        return self.decoder(self.encoder((x - self.mean) / self.std))

    def _denoise(self, noisy: torch.Tensor, cond: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.denoiser(torch.cat([noisy, cond], dim=1), t).sample

    def _to_metres(self, normalised: torch.Tensor, cond: torch.Tensor, repeats: int = 1) -> torch.Tensor:
        """Normalised depth at the features' stride -> metres at the input's size; ``normalised`` may hold
        ``repeats`` stacked copies of the batch (samples), whose upsampling weights are computed once."""
        if self.upsample_mask is not None:
            mask = self.upsample_mask(cond)
            normalised = convex_upsample(normalised, mask.repeat(repeats, 1, 1, 1) if repeats > 1 else mask,
                                         self.factor)
        return (normalised.clamp(-1, 1) + 1) * (self.max_depth / 2)

    def _x0(self, out: torch.Tensor, noisy: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The clean-sample estimate from the denoiser's output, whatever it predicts."""
        kind = self.noise_scheduler.config.prediction_type
        if kind == "sample":
            return out
        ab = self.noise_scheduler.alphas_cumprod.to(out.device)[t].view(-1, 1, 1, 1)
        if kind == "epsilon":
            return (noisy - (1 - ab).sqrt() * out) / ab.sqrt()
        return ab.sqrt() * noisy - (1 - ab).sqrt() * out

    def target_at_stride(self, depth: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised depth and validity at the model's stride: masked mean over each cell; a cell is valid when at
        least half its pixels are (empty cells are set to the far end, 1)."""
        f = self.factor
        m = mask.float()
        d = (depth.clamp(0, self.max_depth) / self.max_depth * 2 - 1) * m
        count = F.avg_pool2d(m, f) if f > 1 else m
        mean = (F.avg_pool2d(d, f) if f > 1 else d) / count.clamp_min(1e-6)
        return torch.where(count > 0, mean, torch.ones_like(mean)), count >= 0.5

    # -- training ----------------------------------------------------------------------------------------------
    def denoising_loss(self, image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One training step's forward: the target noised at a uniformly drawn timestep, denoised once.

        Returns the clean-depth estimate in metres at the input's size (for the usual loss terms) and
        ``{"diffusion": masked MSE of the denoiser's output against what it predicts}`` (the standard DDPM loss).
        """
        h, w = image.shape[-2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        x = F.pad(image, (0, pw, 0, ph), mode="replicate") if ph or pw else image
        depth_p = F.pad(depth, (0, pw, 0, ph)) if ph or pw else depth
        mask_p = F.pad(mask.float(), (0, pw, 0, ph)) if ph or pw else mask.float()
        cond = self.features(x)
        y0, valid = self.target_at_stride(depth_p, mask_p)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (y0.shape[0],), device=y0.device)
        noise = torch.randn_like(y0)
        noisy = self.noise_scheduler.add_noise(y0, noise, t)
        out = self._denoise(noisy, cond, t)
        kind = self.noise_scheduler.config.prediction_type
        target = {"sample": y0, "epsilon": noise}.get(kind)
        if target is None:
            target = self.noise_scheduler.get_velocity(y0, noise, t)
        valid = valid.float()
        mse = ((out - target) ** 2 * valid).sum() / valid.sum().clamp_min(1.0)
        estimate = self._to_metres(self._x0(out, noisy, t), cond)
        return estimate[..., :h, :w], {"diffusion": mse}

    # -- sampling ----------------------------------------------------------------------------------------------
    def sample(self, cond: torch.Tensor) -> torch.Tensor:
        """``samples`` normalised depth maps per conditioning map: (samples, N, 1, h, w), seeded by ``seed``."""
        n = cond.shape[0]
        generator = torch.Generator(device=cond.device).manual_seed(self.seed)
        noisy = torch.randn((self.samples * n, 1, *cond.shape[-2:]), generator=generator, device=cond.device,
                            dtype=cond.dtype)
        cond = cond.repeat(self.samples, 1, 1, 1)
        self.sampler.set_timesteps(self.steps, device=cond.device)
        for t in self.sampler.timesteps:
            out = self._denoise(noisy, cond, t.expand(noisy.shape[0]))
            noisy = self.sampler.step(out, t, noisy, eta=self.eta, generator=generator).prev_sample
        return noisy.view(self.samples, n, *noisy.shape[1:])

    def sample_depth(self, x: torch.Tensor) -> torch.Tensor:
        """Every sample in metres at the padded input's size: (samples, N, 1, H, W)."""
        cond = self.features(x)
        metres = self._to_metres(self.sample(cond).flatten(0, 1), cond, self.samples)
        return metres.view(self.samples, -1, *metres.shape[1:])

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        samples = self.sample_depth(x)
        self.last_samples = samples
        self.last_uncertainty = None
        depth = ensemble_median(samples) if self.ensemble == "median" else samples.mean(dim=0)
        if self.samples > 1:  # DepthModel.forward splits the second channel off as last_uncertainty
            return torch.cat([depth, samples.std(dim=0)], dim=1)
        return depth
