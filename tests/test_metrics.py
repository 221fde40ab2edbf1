import math

import numpy as np
import pytest
import torch

from depthforge.evaluation import Evaluator, get_protocol


def ssim_by_hand(x: np.ndarray, y: np.ndarray, c1: float, c2: float) -> np.ndarray:
    """Loop-based SSIM map: 11x11 Gaussian (sigma 1.5), zero padding 5, as the course defines it."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    win = np.outer(g, g)
    h, w = x.shape
    xp, yp = np.pad(x, 5), np.pad(y, 5)
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            px, py = xp[i:i + 11, j:j + 11], yp[i:i + 11, j:j + 11]
            mx, my = (win * px).sum(), (win * py).sum()
            sx = (win * px * px).sum() - mx * mx
            sy = (win * py * py).sum() - my * my
            sxy = (win * px * py).sum() - mx * my
            out[i, j] = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sx + sy + c2))
    return out


def test_challenge_protocol_matches_hand_computation():
    rng = np.random.default_rng(0)
    n, h, w = 20, 12, 14  # 20 samples -> batches of 16 and 4 (the partial batch is kept)
    gt = rng.uniform(0.5, 40, (n, h, w))
    pred = gt + rng.normal(0, 3, (n, h, w))
    ev = Evaluator(get_protocol("challenge"))
    for lo, hi in ((0, 16), (16, 20)):
        ev.process(torch.tensor(pred[lo:hi, None]), torch.tensor(gt[lo:hi, None]))
    got = ev.compute()

    clipped = np.clip(gt, 0, 20)  # targets clipped, predictions as they are
    batches = [(0, 16), (16, 20)]
    rmse = np.mean([math.sqrt(np.mean((pred[a:b] - clipped[a:b]) ** 2)) for a, b in batches])
    ssim = np.mean([np.mean([ssim_by_hand(pred[i], clipped[i], 0.01**2, 0.03**2) for i in range(a, b)])
                    for a, b in batches])
    assert got["rmse"] == pytest.approx(rmse, rel=1e-6)
    assert got["ssim"] == pytest.approx(ssim, rel=1e-5)
    # Per-batch averaging is not per-image averaging: the two must differ here.
    per_image = np.mean([math.sqrt(np.mean((pred[i] - clipped[i]) ** 2)) for i in range(n)])
    assert abs(got["rmse"] - per_image) > 1e-4


def test_ssim_of_constant_maps_in_the_interior():
    # Away from the zero padding, constant maps a and b give (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 3.0, 5.0
    ev = Evaluator(get_protocol("challenge"))
    from depthforge.metrics.ssim import ssim_map
    m = ssim_map(torch.full((1, 1, 30, 30), a, dtype=torch.float64), torch.full((1, 1, 30, 30), b, dtype=torch.float64))
    assert m[0, 0, 15, 15].item() == pytest.approx((2 * a * b + 1e-4) / (a * a + b * b + 1e-4), rel=1e-9)
    ev.process(torch.full((1, 1, 8, 8), 2.0), torch.full((1, 1, 8, 8), 2.0))
    assert ev.compute()["ssim"] == pytest.approx(1.0)


def test_standard_protocol_is_per_image_masked_and_clamped():
    gt = torch.tensor([[[[1.0, 2.0], [30.0, 0.0]]], [[[4.0, 4.0], [4.0, 4.0]]]])
    pred = torch.tensor([[[[2.0, 2.0], [9.0, 5.0]]], [[[4.0, 4.0], [4.0, -3.0]]]])
    ev = Evaluator(get_protocol("standard"))
    ev.process(pred, gt)
    got = ev.compute()
    # image 0: valid pixels gt=1, 2 (30 > cap, 0 = no data); image 1: pred -3 is clamped to 1e-3.
    rmse0 = math.sqrt((1.0 + 0.0) / 2)
    rmse1 = math.sqrt((4.0 - 1e-3) ** 2 / 4)
    assert got["rmse"] == pytest.approx((rmse0 + rmse1) / 2, rel=1e-6)
    absrel0 = (1.0 / 1 + 0.0) / 2
    absrel1 = ((4.0 - 1e-3) / 4) / 4
    assert got["abs_rel"] == pytest.approx((absrel0 + absrel1) / 2, rel=1e-6)
    # delta1: image 0 -> pred/gt 2.0 fails, 1.0 passes (0.5); image 1 -> 3 of 4 pass (0.75).
    assert got["delta1"] == pytest.approx((0.5 + 0.75) / 2)


def test_shape_mismatch_says_to_resize():
    ev = Evaluator(get_protocol("challenge"))
    with pytest.raises(ValueError, match="resize predictions"):
        ev.process(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 8, 8))


def test_separable_gaussian_blur_equals_the_2d_window():
    from depthforge.metrics.ssim import gaussian_blur, gaussian_window

    torch.manual_seed(0)
    x = torch.rand(2, 3, 20, 31)
    g = gaussian_window()
    assert g.shape == (11,) and g.sum().item() == pytest.approx(1.0)
    w2d = (g[:, None] * g[None, :]).expand(3, 1, 11, 11)
    for pad in (0, 5):
        expected = torch.nn.functional.conv2d(x, w2d, padding=pad, groups=3)
        assert torch.allclose(gaussian_blur(x, pad=pad), expected, atol=1e-6)


def test_challenge_224_scores_the_resized_centre_crop_only():
    h, w = 18, 32  # short side 18 -> resized to 24 x 42 (short side 24 via crop24), centre 24x24 kept
    gt = torch.linspace(1, 30, h * w, dtype=torch.float64).reshape(1, 1, h, w)
    pred = gt.clamp(0, 20).clone()
    pred[..., :, :3] += 7.0  # wrong only in the leftmost columns: outside the centre crop after resizing
    crop = get_protocol("challenge", resolution="crop24")
    ev = Evaluator(crop)
    ev.process(pred, gt)
    assert ev.compute()["rmse"] == pytest.approx(0.0, abs=1e-9)
    native = Evaluator(get_protocol("challenge"))
    native.process(pred, gt)
    assert native.compute()["rmse"] > 1.0

    # By hand: clip, bilinear resize to 24 x 42, centre crop (columns 9-32), then the course's RMSE.
    pred2 = pred + torch.randn_like(pred)
    ev = Evaluator(crop)
    ev.process(pred2, gt)
    resize = lambda t: torch.nn.functional.interpolate(t, size=(24, 42), mode="bilinear")[..., 9:33]  # noqa: E731
    expected = (resize(pred2) - resize(gt.clamp(0, 20))).pow(2).mean().sqrt().item()
    assert ev.compute()["rmse"] == pytest.approx(expected, rel=1e-9)
    assert get_protocol("challenge-224").square_size == 224
    # Squashed (participant A): both resized to 24 x 24, nothing cropped, so the wrong columns count.
    squash = Evaluator(get_protocol("challenge-squash224", resolution="squash24"))
    squash.process(pred2, gt)
    resize = lambda t: torch.nn.functional.interpolate(t, size=(24, 24), mode="bilinear", antialias=True)  # noqa: E731
    expected = (resize(pred2) - resize(gt.clamp(0, 20))).pow(2).mean().sqrt().item()
    assert squash.compute()["rmse"] == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="crop224"):
        get_protocol("challenge", resolution="224")
