import math

import numpy as np
import pytest
import torch

from depthforge.losses import LOSSES, WeightedLoss, l1_loss, rmse_loss, silog_loss, ssim_loss


def _data():
    target = torch.tensor([[[[1.0, 2.0], [4.0, 8.0]]]])
    pred = torch.tensor([[[[2.0, 2.0], [1.0, 100.0]]]])
    mask = torch.tensor([[[[True, True], [True, False]]]])
    return pred, target, mask


def test_l1_and_rmse_ignore_masked_pixels():
    pred, target, mask = _data()
    assert l1_loss(pred, target, mask).item() == pytest.approx((1 + 0 + 3) / 3)
    assert rmse_loss(pred, target, mask).item() == pytest.approx(math.sqrt((1 + 0 + 9) / 3), rel=1e-6)


def test_silog_by_hand():
    pred, target, mask = _data()
    d = [math.log(2 / 1), math.log(2 / 2), math.log(1 / 4)]
    mean, mean_sq = sum(d) / 3, sum(x * x for x in d) / 3
    assert silog_loss(pred, target, mask).item() == pytest.approx(math.sqrt(mean_sq - 0.85 * mean**2), rel=1e-5)


def test_ssim_loss_is_zero_for_exact_prediction_and_masked():
    t = torch.rand(2, 1, 16, 16) * 10 + 1
    assert ssim_loss(t, t, torch.ones_like(t, dtype=torch.bool)).item() == pytest.approx(0.0, abs=1e-5)
    noisy = t.clone()
    noisy[..., :8] += 5
    mask = torch.zeros_like(t, dtype=torch.bool)
    mask[..., 13:] = True  # beyond the 5-px window radius of the corrupted columns 0..7
    assert ssim_loss(noisy, t, mask).item() == pytest.approx(0.0, abs=1e-5)
    assert ssim_loss(noisy, t, torch.ones_like(mask)).item() > 0.1


def _course_ssim_by_hand(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The course's SSIM map, pixel by pixel: 11x11 Gaussian (sigma 1.5) weights over a zero-padded window,
    C1 = 0.01**2, C2 = 0.03**2 (no data range)."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    xp, yp = np.pad(x, 5), np.pad(y, 5)
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            a, b = xp[i:i + 11, j:j + 11], yp[i:i + 11, j:j + 11]
            mx, my = (w * a).sum(), (w * b).sum()
            vx, vy, cov = (w * a * a).sum() - mx**2, (w * b * b).sum() - my**2, (w * a * b).sum() - mx * my
            out[i, j] = ((2 * mx * my + 1e-4) * (2 * cov + 9e-4)) / ((mx**2 + my**2 + 1e-4) * (vx + vy + 9e-4))
    return out


def test_weighted_loss_is_the_report_combination():
    pred, target, mask = _data()
    total, parts = WeightedLoss({"rmse": 0.6, "ssim": 0.4})(pred, target, mask)
    rmse = math.sqrt((1 + 0 + 9) / 3)  # valid errors 1, 0, 3; the masked pixel (error 92) left out
    ssim = _course_ssim_by_hand(pred[0, 0].double().numpy(), target[0, 0].double().numpy())[mask[0, 0].numpy()]
    assert 0.0 < ssim.mean() < 1.0  # a real structural term, not a constant
    assert total.item() == pytest.approx(0.6 * rmse + 0.4 * (1.0 - ssim.mean()), rel=1e-5)
    assert parts["rmse"].item() == pytest.approx(rmse, rel=1e-6)
    assert parts["ssim"].item() == pytest.approx(1.0 - ssim.mean(), rel=1e-5)
    with pytest.raises(KeyError, match="available"):
        WeightedLoss({"nope": 1.0})


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_has_finite_gradient(name):
    pred, target, mask = _data()
    pred = pred.clone().requires_grad_(True)
    LOSSES[name](pred, target, mask).backward()
    assert torch.isfinite(pred.grad).all()
    if name != "ssim":  # SSIM is a window statistic: neighbours' valid terms depend on the masked pixel
        assert pred.grad[0, 0, 1, 1] == 0


def test_berhu_by_hand():
    from depthforge.losses import berhu_loss
    pred, target, mask = _data()
    # valid errors 1, 0, 3 -> c = 0.2 * 3 = 0.6; 1 > c -> (1 + 0.36) / 1.2; 0 -> 0; 3 -> (9 + 0.36) / 1.2
    expected = ((1 + 0.36) / 1.2 + 0 + (9 + 0.36) / 1.2) / 3
    assert berhu_loss(pred, target, mask).item() == pytest.approx(expected, rel=1e-6)


def test_ssi_is_zero_for_affine_prediction_and_uses_mask():
    from depthforge.losses import ssi_loss
    target = torch.rand(2, 1, 8, 8) * 10 + 1
    pred = 0.25 * target - 3.0
    mask = torch.ones_like(target, dtype=torch.bool)
    assert ssi_loss(pred, target, mask).item() == pytest.approx(0.0, abs=1e-4)
    pred[0, 0, 0, 0] = 1e4  # a wild pixel outside the mask does not matter
    mask[0, 0, 0, 0] = False
    assert ssi_loss(pred, target, mask).item() == pytest.approx(0.0, abs=1e-4)


def test_gradient_loss_by_hand():
    from depthforge.losses import gradient_loss
    target = torch.zeros(1, 1, 2, 3)
    pred = torch.tensor([[[[0.0, 1.0, 3.0], [0.0, 0.0, 0.0]]]])
    mask = torch.ones_like(target, dtype=torch.bool)
    # scale 1: x-diffs |1|,|2|,0,0 ; y-diffs 0,1,3 -> 7 / 7 pairs = 1. Scale 1/2 keeps (0, 3): x-diff 3 / 1 pair.
    assert gradient_loss(pred, target, mask, scales=2).item() == pytest.approx((1.0 + 3.0) / 2)
    assert gradient_loss(pred + 5.0, target, mask, scales=2).item() == pytest.approx(2.0)  # shift-invariant


def _gradient_loss_reference(res: np.ndarray, m: np.ndarray, scales: int) -> float:
    """MiDaS's gradient matching by loops: per scale, |difference of the residual| over neighbour pairs whose
    pixels are both valid, divided by the number of such pairs; the mean over scales."""
    total = 0.0
    for k in range(scales):
        r, v = res[::2 ** k, ::2 ** k], m[::2 ** k, ::2 ** k]
        s, n = 0.0, 0
        for i in range(r.shape[0]):
            for j in range(r.shape[1]):
                for di, dj in ((0, 1), (1, 0)):
                    if i + di < r.shape[0] and j + dj < r.shape[1] and v[i, j] and v[i + di, j + dj]:
                        s += abs(r[i + di, j + dj] - r[i, j])
                        n += 1
        total += s / max(n, 1)
    return total / scales


def test_gradient_loss_against_a_loop_reference_with_a_mask():
    from depthforge.losses import gradient_loss

    rng = np.random.default_rng(0)
    target = rng.uniform(1, 10, (19, 23))
    pred = target * 0.5 + rng.normal(0, 0.3, target.shape)
    mask = rng.uniform(size=target.shape) > 0.2
    t = lambda a: torch.tensor(a)[None, None]
    got = gradient_loss(t(pred), t(target), t(mask)).item()  # the default: 4 scales
    assert got == pytest.approx(_gradient_loss_reference(pred - target, mask, 4), rel=1e-9)


def test_losses_on_edge_cases_one_pixel_exact_and_unmeasured():
    from depthforge.losses import berhu_loss

    pred, target = torch.tensor([[3.0, 5.0]]), torch.tensor([[1.0, 9.0]])
    one = torch.tensor([[True, False]])
    assert l1_loss(pred, target, one).item() == pytest.approx(2.0)          # one valid pixel: its error
    assert rmse_loss(target, target, torch.ones_like(one)).item() == pytest.approx(0.0, abs=1e-5)  # exact: 0
    none = torch.zeros_like(one)
    assert berhu_loss(pred, target, none).item() == 0.0                      # nothing valid: no loss, no error
    # a target of 0 (no measurement) inside the mask is left out of the log loss
    z = torch.tensor([[2.0, 0.0, 4.0]])
    p = torch.tensor([[1.0, 3.0, 5.0]])
    all3, two = torch.ones_like(z, dtype=torch.bool), torch.tensor([[True, False, True]])
    assert silog_loss(p, z, all3).item() == pytest.approx(silog_loss(p, z, two).item(), rel=1e-6)


def test_weighted_loss_terms_the_model_or_the_head_must_provide():
    pred, target, mask = _data()
    with pytest.raises(ValueError, match=r"^loss.terms is empty; give at least one term, e.g. \{l1: 1.0\}$"):
        WeightedLoss({})
    diffusion = WeightedLoss({"l1": 1.0, "diffusion": 0.5})
    total, parts = diffusion(pred, target, mask, model_losses={"diffusion": torch.tensor(4.0)})
    assert parts["diffusion"].item() == 4.0 and total.item() == pytest.approx(l1_loss(pred, target, mask) + 2.0)
    for given in (None, {}, {"other": torch.tensor(1.0)}):
        with pytest.raises(ValueError, match="loss term diffusion is a diffusion model's denoising loss"):
            diffusion(pred, target, mask, model_losses=given)
    with pytest.raises(ValueError, match=r"needs a model that predicts its uncertainty \(model.kwargs.head=laplace\)"):
        WeightedLoss({"laplace_nll": 1.0})(pred, target, mask)
