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
