"""The diffusion depth model trained here: sampling, ensembling, its training loss, and the command-line path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from depthforge.models import create_model
from depthforge.models.diffusion import convex_upsample, ensemble_median

SMALL = {"denoiser_channels": (16, 32), "widths": (64, 32, 16)}


def small_model(**kw):
    torch.manual_seed(0)
    return create_model("diffusion_efficientnet_lite2", **SMALL, **kw).eval()


def test_sampler_is_deterministic_for_a_seed_and_the_median_is_numpys():
    model = small_model(samples=4, steps=3, eta=1.0)  # eta 1: every DDIM step draws noise from the generator too
    x = torch.rand(1, 3, 64, 96)  # multiples of 32: no padding, the samples cover the output exactly
    with torch.no_grad():
        a = model(x)
        samples = model.last_samples.clone()
        spread = model.last_uncertainty.clone()
        b = model(x)
        model.set_sampling(seed=1)
        c = model(x)
    assert torch.equal(a, b)  # same seed, same prediction
    assert not torch.allclose(a, c)  # another seed, another one
    assert samples.shape == (4, 1, 1, 64, 96)
    assert not torch.allclose(samples[0], samples[1])  # the samples differ from each other
    np.testing.assert_allclose(a.numpy(), np.median(samples.numpy(), axis=0), rtol=0, atol=1e-6)  # even count
    np.testing.assert_allclose(spread.numpy(), np.std(samples.numpy(), axis=0, ddof=1), rtol=1e-4, atol=1e-6)
    assert "4 diffusion samples" in model.uncertainty_kind
    model.set_sampling(ensemble="mean")
    with torch.no_grad():
        mean = model(x)
    np.testing.assert_allclose(mean.numpy(), model.last_samples.mean(0).numpy(), rtol=1e-5, atol=1e-5)
    model.set_sampling(samples=1)
    with torch.no_grad():
        model(x)
    assert model.last_uncertainty is None and model.uncertainty_kind is None
    with pytest.raises(ValueError, match="samples must be >= 1"):
        model.set_sampling(samples=0)


def test_the_denoiser_is_conditioned_on_the_image_and_the_seed_selects_the_noise():
    model = small_model(samples=1, steps=2)
    torch.manual_seed(1)
    x1, x2 = torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        c1, c2 = model.features(x1), model.features(x2)
        s1, s1_again, s2 = model.sample(c1), model.sample(c1), model.sample(c2)  # the sampler alone: before upsampling
        model.set_sampling(seed=6)
        s1_seed6 = model.sample(c1)
    assert torch.equal(s1, s1_again)
    assert (s1 - s2).abs().mean() > 1e-3 * s1.abs().mean()  # same noise, other image: another sample
    assert (s1 - s1_seed6).abs().mean() > 1e-3 * s1.abs().mean()  # same image, other seed: another sample


def test_ensemble_median_odd_and_even():
    s = torch.tensor([[3.0], [1.0], [2.0], [10.0]])
    assert ensemble_median(s).item() == 2.5 == np.median(s.numpy())
    assert ensemble_median(s[:3]).item() == 2.0


def test_convex_upsampling_by_hand():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    centre = torch.full((1, 9, 4, 2, 3), -1e4)
    centre[:, 4] = 0.0  # all weight on the cell itself: nearest-neighbour upsampling
    up = convex_upsample(x, centre.view(1, 36, 2, 3), 2)
    assert torch.equal(up, x.repeat_interleave(2, -1).repeat_interleave(2, -2))
    left = torch.full((1, 9, 4, 2, 3), -1e4)
    left[:, 3] = 0.0  # all weight on the left neighbour (replicated at the border)
    up = convex_upsample(x, left.view(1, 36, 2, 3), 2)
    assert up[0, 0, 0].tolist() == [0, 0, 0, 0, 1, 1]
    uniform = convex_upsample(torch.full((1, 1, 2, 3), 7.0), torch.randn(1, 36, 2, 3), 2)
    torch.testing.assert_close(uniform, torch.full((1, 1, 4, 6), 7.0))  # a convex combination of equal values


def test_target_at_stride_is_the_masked_mean():
    model = small_model()
    assert model.factor == 4
    depth = torch.zeros(1, 1, 4, 8)
    depth[..., :4] = 10.0  # left cell: 10 m where valid
    depth[..., 0, 0] = 99.0
    mask = torch.ones(1, 1, 4, 8, dtype=torch.bool)
    mask[..., 0, 0] = False  # an invalid pixel is left out of the mean
    mask[..., 4:] = False
    mask[..., 0, 4:6] = True  # the right cell: 2 of 16 pixels valid -> not a valid cell
    y0, valid = model.target_at_stride(depth, mask)
    assert y0[0, 0, 0, 0].item() == pytest.approx(10.0 / 20.0 * 2 - 1) and valid[0, 0, 0].tolist() == [True, False]


def test_denoising_loss_is_the_ddpm_loss():
    model = small_model().train()
    image, depth = torch.rand(2, 3, 64, 96), torch.rand(2, 1, 64, 96) * 20
    mask = torch.ones_like(depth, dtype=torch.bool)
    torch.manual_seed(3)
    estimate, parts = model.denoising_loss(image, depth, mask)
    # The same draws by hand: timestep, noise, noising through the scheduler, the denoiser's output against y0.
    torch.manual_seed(3)
    cond = model.features(image)
    y0, _ = model.target_at_stride(depth, mask)
    t = torch.randint(0, 1000, (2,))
    noisy = model.noise_scheduler.add_noise(y0, torch.randn_like(y0), t)
    ab = model.noise_scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    out = model.denoiser(torch.cat([noisy, cond], 1), t).sample
    assert parts["diffusion"].item() == pytest.approx(((out - y0) ** 2).mean().item(), rel=1e-5)
    assert ((noisy - ab.sqrt() * y0) / (1 - ab).sqrt()).std() == pytest.approx(1.0, abs=0.1)  # unit-variance noise
    assert estimate.shape == depth.shape and 0 <= estimate.min() and estimate.max() <= 20
    (parts["diffusion"] + estimate.mean()).backward()
    assert model.upsample_mask[0].weight.grad.abs().sum() > 0 and model.denoiser.conv_in.weight.grad is not None


def test_diffusion_trains_evaluates_and_predicts_from_the_command_line(tmp_path):
    from PIL import Image

    from depthforge.cli import main
    from depthforge.data import SyntheticScenes
    from tests.conftest import train_tiny

    run = tmp_path / "run"
    common = ["data.synthetic.num_train=4", "data.synthetic.num_val=2", "data.synthetic.height=64",
              "data.synthetic.width=96", "data.batch_size=2", "train.num_previews=0", "train.progress_bar=false",
              "train.log_every=1"]
    assert main(["train", "--out", str(run), "--max-steps", "3", "model.name=diffusion_efficientnet_lite2",
                 "model.kwargs.denoiser_channels=[16, 32]", "model.kwargs.widths=[64, 32, 16]",
                 "loss.terms={l1: 1.0, diffusion: 1.0}", *common]) == 0
    logged = (run / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss_diffusion" in logged and "val/rmse" in logged
    ckpt = str(run / "checkpoints" / "last.ckpt")
    card = tmp_path / "card.json"
    assert main(["evaluate", "--checkpoint", ckpt, "--samples", "3", "--steps", "2", "--seed", "5",
                 "--uncertainty", "model", "--json", str(card)]) == 0
    recorded = json.loads(card.read_text())
    assert {"samples": 3, "steps": 2, "seed": 5}.items() <= recorded["source"].items()
    assert {"ause_rmse", "coverage_1sigma"} <= set(recorded["metrics"])
    assert main(["evaluate", "--card", str(card)]) == 0  # the sampling options are re-applied: same numbers
    photo = tmp_path / "p.png"
    Image.fromarray(SyntheticScenes(1, 64, 96, seed=3).get_color(0)).save(photo)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", ckpt, str(photo), "--out", str(out), "--samples", "3",
                 "--uncertainty", "model"]) == 0
    assert np.load(out / "p_uncertainty.npy").shape == (64, 96)
    # --seed picks the noise: seed 5 from the command line is set_sampling(seed=5) on the loaded model.
    from depthforge.predict import Predictor
    from depthforge.sources import load_checkpoint

    by_seed = {}
    for seed in (5, 6):
        assert main(["predict", "--checkpoint", ckpt, str(photo), "--out", str(tmp_path / f"s{seed}"), "--seed",
                     str(seed), "--steps", "2"]) == 0
        by_seed[seed] = np.load(tmp_path / f"s{seed}" / "p.npy")
    model, cfg = load_checkpoint(ckpt)
    model.set_sampling(seed=5, steps=2)
    own = np.clip(Predictor(model, cfg.data)(np.asarray(Image.open(photo).convert("RGB"))), 1e-3, cfg.data.max_depth)
    np.testing.assert_allclose(by_seed[5], own, rtol=0, atol=1e-6)
    assert np.abs(by_seed[5] - by_seed[6]).max() > 1e-4
    assert "3 diffusion samples" in json.loads((out / "p_uncertainty.npy.json").read_text())["uncertainty_kind"]
    # A regression checkpoint has no sampling: the option is an error that says so, not silently ignored.
    plain = train_tiny(tmp_path / "plain")
    assert main(["predict", "--checkpoint", str(plain), str(photo), "--out", str(tmp_path / "o2"),
                 "--samples", "3"]) == 2


def test_checkpoint_ensemble_spread_is_the_std_of_its_members(tmp_path):
    from depthforge.sources.checkpoint import Ensemble

    torch.manual_seed(0)
    members = [create_model("unet_resnet18", widths=(32, 16)).eval() for _ in range(3)]
    ensemble = Ensemble(members).eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        mean = ensemble(x)
        preds = torch.stack([m(x) for m in members])
    torch.testing.assert_close(mean, preds.mean(0))
    torch.testing.assert_close(ensemble.last_uncertainty, preds.std(0))
    assert "3 checkpoints" in ensemble.uncertainty_kind


def test_the_diffusion_term_needs_a_diffusion_model():
    from depthforge.losses import WeightedLoss

    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match="diffusion model's denoising loss"):
        WeightedLoss({"l1": 1.0, "diffusion": 1.0})(x, x, torch.ones_like(x, dtype=torch.bool))
