"""Uncertainty: the Laplace head and its NLL loss, TTA spread, and the metrics that check an uncertainty is honest."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from depthforge.losses import WeightedLoss, laplace_nll, laplace_nll_scale
from depthforge.metrics.uncertainty import (ause, coverage, error_correlation, expected_coverage,
                                            sparsification_curve)


def test_laplace_nll_by_hand_with_a_mask():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = torch.tensor([[[[1.5, 2.0], [1.0, 9.0]]]])
    std = torch.tensor([[[[0.5, 1.0], [2.0, 3.0]]]])
    mask = torch.tensor([[[[True, True], [True, False]]]])
    expected = []
    for p, t, s in ((1.0, 1.5, 0.5), (2.0, 2.0, 1.0), (3.0, 1.0, 2.0)):
        b = s / math.sqrt(2)
        expected.append(abs(p - t) / b + math.log(2 * b))
    assert laplace_nll(pred, target, mask, std).item() == pytest.approx(np.mean(expected), rel=1e-6)
    with pytest.raises(ValueError, match="head=laplace"):
        WeightedLoss({"laplace_nll": 1.0})(pred, target, mask)
    # the scale-only variant: the same value and the same gradient into the std, none into the depth
    grads = []
    for fn in (laplace_nll, laplace_nll_scale):
        p, s = pred.clone().requires_grad_(), std.clone().requires_grad_()
        value = fn(p, target, mask, s)
        value.backward()
        grads.append((value.item(), p.grad, s.grad))
    assert grads[1][0] == pytest.approx(grads[0][0])
    assert torch.equal(grads[1][2], grads[0][2]) and grads[0][1].abs().sum() > 0
    assert grads[1][1] is None or not grads[1][1].any()
    assert WeightedLoss({"laplace_nll_scale": 1.0})(pred, target, mask, std)[0].item() == pytest.approx(grads[0][0])


def test_laplace_head_learns_where_the_targets_are_noisy():
    from depthforge.models.heads import LaplaceHead

    torch.manual_seed(0)
    # The image tells the regions apart (left dark, right bright); the targets are 5 m with noise of std 0.05 m on
    # the left and 1.0 m on the right. Trained by NLL alone, the predicted spread must rank the right half higher.
    image = torch.zeros(8, 3, 16, 32)
    image[..., 16:] = 1.0
    head = LaplaceHead(3, max_depth=10.0)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    mask = torch.ones(8, 1, 16, 32, dtype=torch.bool)
    for _ in range(300):
        noise = torch.randn(8, 1, 16, 32) * torch.where(torch.arange(32) < 16, 0.05, 1.0)
        out = head(image)
        loss = laplace_nll(out[:, :1], 5.0 + noise, mask, out[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    std = head(image)[:, 1].detach()
    left, right = std[..., 2:14].mean().item(), std[..., 18:30].mean().item()
    assert right > 5 * left
    assert right == pytest.approx(1.0, rel=0.3) and left == pytest.approx(0.05, rel=0.6)


def test_a_laplace_model_trains_and_predict_writes_its_uncertainty(tmp_path):
    from depthforge.cli import main
    from depthforge.data import SyntheticScenes
    from PIL import Image

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--max-steps", "3", "model.name=unet_resnet18",
                 "model.kwargs.head=laplace", "loss.terms={l1: 1.0, laplace_nll: 0.1}",
                 "data.synthetic.num_train=4", "data.synthetic.num_val=2", "data.synthetic.height=48",
                 "data.synthetic.width=64", "data.batch_size=2", "train.num_previews=0",
                 "train.progress_bar=false", "train.log_every=1"]) == 0
    photo = tmp_path / "p.png"
    Image.fromarray(SyntheticScenes(1, 48, 64, seed=3).get_color(0)).save(photo)
    out = tmp_path / "out"
    ckpt = str(run / "checkpoints" / "last.ckpt")
    assert main(["predict", "--checkpoint", ckpt, str(photo), "--out", str(out), "--uncertainty", "model"]) == 0
    unc = np.load(out / "p_uncertainty.npy")
    assert unc.shape == (48, 64) and (unc >= 1e-3).all()
    assert "Laplace" in json.loads((out / "p_uncertainty.npy.json").read_text())["uncertainty_kind"]
    tta = tmp_path / "tta"
    assert main(["predict", "--checkpoint", ckpt, str(photo), "--out", str(tta), "--uncertainty", "tta",
                 "--flip-tta"]) == 0
    # Scored: AUSE, coverage and correlation in the card, and the card re-runs to the same numbers.
    card = tmp_path / "card.json"
    report = tmp_path / "report"
    assert main(["evaluate", "--checkpoint", ckpt, "--protocol", "standard", "--uncertainty", "model",
                 "--json", str(card), "--report", str(report), "--worst", "2"]) == 0
    metrics = json.loads(card.read_text())["metrics"]
    curve = json.loads(card.read_text())["sparsification"]
    assert len(curve["rmse"]) == len(curve["oracle_rmse"]) == len(curve["fraction_removed"])
    assert all(o <= c + 1e-9 for o, c in zip(curve["oracle_rmse"], curve["rmse"]))  # nothing beats the oracle
    written = {p.name for p in next(report.iterdir()).iterdir()}
    assert {"sparsification.png", "worst_2.png"} <= written
    assert {"ause_rmse", "ause_abs_rel", "coverage_1sigma", "coverage_2sigma"} <= set(metrics)
    # the card's AUSE is the area between the two curves it records (trapezoids over the removed share)
    gap = np.array(curve["rmse"]) - np.array(curve["oracle_rmse"])
    area = float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(curve["fraction_removed"])))
    assert metrics["ause_rmse"] == pytest.approx(area, rel=1e-6, abs=1e-9)
    assert main(["evaluate", "--card", str(card)]) == 0
    assert main(["evaluate", "--checkpoint", ckpt, "--protocol", "standard", "--uncertainty", "tta", "--flip-tta",
                 "--json", str(tmp_path / "tta.json")]) == 0
    assert "coverage_2sigma" in json.loads((tmp_path / "tta.json").read_text())["metrics"]
    assert "TTA passes" in json.loads((tta / "p_uncertainty.npy.json").read_text())["uncertainty_kind"]
    assert main(["predict", "--checkpoint", ckpt, str(photo), "--out", str(tta), "--uncertainty", "tta"]) == 2


def test_tta_spread_is_the_std_of_the_passes():
    from depthforge.config import DataConfig
    from depthforge.predict.tta import tta_spread
    from depthforge.models import create_model

    model = create_model("unet_resnet18").eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        a, b = model(x), model(x.flip(-1)).flip(-1)
        spread = tta_spread(model, x, DataConfig(), flip=True)
    torch.testing.assert_close(spread, (a - b).abs() / 2, atol=1e-5, rtol=1e-4)  # std of two values: half the gap


def test_sparsification_and_ause_by_hand():
    pred, gt = np.zeros(4), np.array([1.0, 2.0, 3.0, 4.0])  # errors 1..4
    fractions = np.array([0.0, 0.25, 0.5, 0.75])
    oracle = sparsification_curve(pred, gt, gt, "rmse", fractions)
    np.testing.assert_allclose(oracle, [math.sqrt(30 / 4), math.sqrt(14 / 3), math.sqrt(5 / 2), 1.0])
    backwards = sparsification_curve(pred, gt, -gt, "rmse", fractions)  # the worst ranking: smallest errors first
    np.testing.assert_allclose(backwards, [math.sqrt(30 / 4), math.sqrt(29 / 3), math.sqrt(25 / 2), 4.0])
    gaps = backwards - oracle
    assert ause(pred, gt, -gt, "rmse", fractions) == pytest.approx(np.sum((gaps[1:] + gaps[:-1]) / 2 * 0.25))
    assert ause(pred, gt, gt, "rmse", fractions) == 0.0  # an oracle uncertainty
    rng = np.random.default_rng(0)
    big_gt = rng.uniform(1, 10, 5000)
    big_pred = big_gt + rng.normal(0, 1, 5000) * np.linspace(0.1, 2, 5000)
    assert ause(big_pred, big_gt, rng.uniform(size=5000)) > 0.1  # random ranking: clearly above 0
    assert ause(big_pred, big_gt, np.abs(big_pred - big_gt), "abs_rel") < ause(big_pred, big_gt,
                                                                               rng.uniform(size=5000), "abs_rel")


def test_coverage_and_correlation():
    rng = np.random.default_rng(1)
    std = rng.uniform(0.1, 2, 200_000)
    err = rng.laplace(0, std / math.sqrt(2))  # a calibrated Laplace uncertainty
    assert coverage(err, np.zeros_like(err), std, 1) == pytest.approx(expected_coverage(1), abs=0.01)
    assert coverage(err, np.zeros_like(err), std, 2) == pytest.approx(expected_coverage(2), abs=0.01)
    assert expected_coverage(1, "gaussian") == pytest.approx(0.6827, abs=1e-4)
    assert error_correlation([1, 2, 3], [2, 4, 6.5]) > 0.99
    assert math.isnan(error_correlation([1, 1, 1], [1, 2, 3]))


def test_the_worst_grid_shows_the_uncertainty_beside_the_error():
    from depthforge.viz.plots import comparison_figure

    image, depth = np.zeros((8, 12, 3), np.uint8), np.full((8, 12), 3.0)
    plain = comparison_figure([(image, depth, depth)], 10.0)
    with_unc = comparison_figure([(image, depth, depth, depth / 10)], 10.0)
    titles = [ax.get_title() for ax in with_unc.axes[:5]]
    assert len(plain.axes) == 4 + 2 and len(with_unc.axes) == 5 + 2  # panels + two colour bars
    assert titles[3:5] == ["|error| (m)", "uncertainty (m)"]


class _Oracle(torch.nn.Module):
    """A source that reads the truth from its image (red channel = depth / 20 m) and adds known noise: its own
    uncertainty is the given per-pixel map, so how it must score is known in closed form."""

    uncertainty_kind = "test oracle"

    def __init__(self, mode: str, b: float = 0.5):
        super().__init__()
        self.mode, self.b = mode, b
        self.last_uncertainty = None

    def forward(self, x):
        gt = x[:, :1] * 20.0
        g = torch.Generator().manual_seed(int(gt.sum().item() * 1000) % 2**31)
        u = torch.rand(gt.shape, generator=g, dtype=torch.float64).clamp(1e-9, 1 - 1e-9) - 0.5
        noise = (-self.b * torch.sign(u) * torch.log1p(-2 * u.abs())).to(gt.dtype)  # Laplace(0, b)
        pred = gt + noise
        # |error| itself (a perfect ranking) or the Laplace's standard deviation sqrt(2) b (calibrated)
        self.last_uncertainty = noise.abs() if self.mode == "oracle" else torch.full_like(gt, 2 ** 0.5 * self.b)
        return pred


def test_evaluate_scores_the_sources_own_uncertainty_pixel_for_pixel(tmp_path):
    from depthforge.config import DataConfig
    from depthforge.data import build_dataset
    from depthforge.evaluation import get_protocol
    from depthforge.evaluation.runner import model_predictor, run_evaluation
    from PIL import Image

    root = tmp_path / "DepthEstimationUnreal"
    rng = np.random.default_rng(0)
    for i in range(6):
        (root / "rgb" / "val").mkdir(parents=True, exist_ok=True)
        (root / "depth" / "val").mkdir(parents=True, exist_ok=True)
        red = rng.integers(30, 240, (40, 60), dtype=np.uint8)  # 2.4..18.8 m
        rgb = np.stack([red, np.zeros_like(red), np.zeros_like(red)], -1)
        Image.fromarray(rgb).save(root / "rgb" / "val" / f"{i}.png")
        np.save(root / "depth" / "val" / f"{i}.npy", (red.astype(np.float32) / 255 * 20.0))
    cfg = DataConfig(name="challenge", root=str(root), max_depth=float("inf"))
    dataset = build_dataset(cfg, "val", train=False)
    protocol = get_protocol("standard")
    scores = {}
    for mode in ("oracle", "laplace"):
        predict = model_predictor(_Oracle(mode), DataConfig(), protocol, uncertainty="model")
        scores[mode] = run_evaluation(dataset, predict, protocol).compute()
    assert scores["oracle"]["ause_rmse"] < 1e-3  # ranking pixels by their own error removes them in error order
    assert scores["laplace"]["ause_rmse"] > 0.05  # a constant sigma ranks nothing
    assert scores["laplace"]["coverage_1sigma"] == pytest.approx(1 - np.exp(-np.sqrt(2)), abs=0.02)  # 75.7 %
    assert scores["laplace"]["coverage_2sigma"] == pytest.approx(1 - np.exp(-2 * np.sqrt(2)), abs=0.015)  # 94.1 %


def test_sparsification_abs_rel_ties_and_the_last_fraction_by_hand():
    from depthforge.metrics.uncertainty import ause, coverage, error_correlation, sparsification_curve

    gt = np.array([1.0, 2.0, 4.0, 5.0])
    pred = np.array([1.5, 2.0, 3.0, 5.0])                  # abs_rel errors: 0.5, 0, 0.25, 0
    order = np.array([0.1, 0.9, 0.5, 0.2])                 # removes pixel 1, then 2, then 3
    curve = sparsification_curve(pred, gt, order, "abs_rel", np.array([0.0, 0.25, 0.5, 1.0]))
    # kept after removing 0, 1, 2 pixels: the means 0.1875, 0.25, 0.25; all removed: the last pixel alone, 0.5
    assert curve.tolist() == pytest.approx([0.1875, 0.25, 0.25, 0.5])
    sq = sparsification_curve(pred, gt, order, fractions=np.array([0.0, 0.5]))  # the default metric: RMSE
    assert sq.tolist() == pytest.approx([np.sqrt((0.25 + 1) / 4), np.sqrt(0.25 / 2)])
    with pytest.raises(ValueError, match="sparsification metric 'mae': use rmse or abs_rel"):
        sparsification_curve(pred, gt, order, "mae")
    # ties in the uncertainty keep the pixels' order (a stable sort), on a size where an unstable one reorders
    n = 200
    err_pred = np.arange(n, dtype=np.float64)
    two_levels = np.random.default_rng(0).integers(0, 2, n).astype(np.float64)
    first_out = [i for i in range(n) if two_levels[i] == 1] + [i for i in range(n) if two_levels[i] == 0]
    tied = sparsification_curve(err_pred, np.zeros(n), two_levels, fractions=np.array([0.25]))
    assert tied[0] == pytest.approx(np.sqrt(np.mean(err_pred[first_out[50:]] ** 2)))
    # computed in float64 whatever the inputs' precision
    p32, g32, u32 = (np.linspace(1, 3, 50, dtype=np.float32) ** k for k in (1.1, 1.0, 0.5))
    as64 = [a.astype(np.float64) for a in (p32, g32, u32)]
    assert sparsification_curve(p32, g32, u32).tolist() == pytest.approx(
        sparsification_curve(*as64).tolist(), rel=1e-12)
    assert ause(p32, g32, u32) == pytest.approx(ause(*as64), rel=1e-12, abs=1e-15)
    # an error of exactly k standard deviations is covered
    assert coverage(np.array([2.0, 3.0]), np.array([1.0, 1.0]), np.array([0.5, 0.5]), 2.0) == 0.5
    assert error_correlation([1.0, 2.0], [3.0, 5.0]) == pytest.approx(1.0)        # two images are enough
    assert error_correlation([0.0, 2.0], [1.0, 5.0]) == pytest.approx(1.0)  # a spread of exactly 1 is fine
    assert error_correlation([1.0, 5.0], [0.0, 2.0]) == pytest.approx(1.0)
    assert error_correlation([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # undefined is said, not computed from a division by zero
        assert np.isnan(error_correlation([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]))   # errors all equal
        assert np.isnan(error_correlation([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]))   # uncertainty all equal
    assert np.isnan(error_correlation([1.0], [2.0]))
    from depthforge.metrics.uncertainty import expected_coverage

    with pytest.raises(ValueError, match="distribution 'normal': use laplace or gaussian"):
        expected_coverage(1.0, "normal")
