import math

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


def test_weighted_loss_is_the_report_combination():
    pred, target, mask = _data()
    total, parts = WeightedLoss({"rmse": 0.6, "ssim": 0.4})(pred, target, mask)
    assert total.item() == pytest.approx(0.6 * parts["rmse"].item() + 0.4 * parts["ssim"].item())
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
