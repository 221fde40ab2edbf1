import json
import math

import numpy as np
import pytest
import torch

from depthforge.evaluation import Evaluator, Protocol, get_protocol
from depthforge.metrics import functional as M
from depthforge.metrics.alignment import align, crop_mask


def _t(values):
    return torch.tensor(values, dtype=torch.float64)[None, None]


def test_log_and_relative_metrics_by_hand():
    gt = _t([[1.0, 2.0], [4.0, 8.0]])
    pred = _t([[2.0, 2.0], [2.0, 100.0]])
    mask = torch.tensor([[[[True, True], [True, False]]]])
    d = np.log([2.0, 1.0, 0.5])  # log(pred) - log(gt) on the valid pixels
    assert M.rmse_log(pred, gt, mask).item() == pytest.approx(math.sqrt(np.mean(d**2)))
    assert M.log10(pred, gt, mask).item() == pytest.approx(np.mean(np.abs(d)) / math.log(10))
    assert M.silog(pred, gt, mask).item() == pytest.approx(100 * math.sqrt(np.mean(d**2) - np.mean(d) ** 2))
    assert M.sq_rel(pred, gt, mask).item() == pytest.approx((1 / 1 + 0 / 2 + 4 / 4) / 3)
    assert M.mae(pred, gt, mask).item() == pytest.approx((1 + 0 + 2) / 3)
    # ratios 2, 1, 2 -> delta1 1/3; 1.25^2 = 1.5625 -> 1/3; 1.25^3 = 1.953 -> 1/3; at 2.0 exactly: strict '<'
    assert M.delta(pred, gt, mask, 1.25).item() == pytest.approx(1 / 3)
    assert M.delta(pred, gt, mask, 1.25**3).item() == pytest.approx(1 / 3)
    assert M.delta(pred, gt, mask, 2.01).item() == pytest.approx(1.0)


def test_edge_scores_by_hand():
    gt = _t([[1.0, 1.0, 5.0], [1.0, 1.0, 5.0]])  # one vertical step between columns 1 and 2
    pred = _t([[1.0, 5.0, 5.0], [1.0, 1.0, 5.0]])  # row 0 puts the step one pixel early
    mask = torch.ones_like(gt, dtype=torch.bool)
    s = M.edge_scores(pred, gt, mask, ratio=1.15)
    # gt edges: (0,1)-(0,2), (1,1)-(1,2). pred edges: (0,0)-(0,1), (1,1)-(1,2), and vertical (0,1)-(1,1).
    assert s["edge_precision"].item() == pytest.approx(1 / 3)
    assert s["edge_recall"].item() == pytest.approx(1 / 2)
    assert s["edge_f1"].item() == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))


def test_standard_ssim_matches_scikit_image():
    structural_similarity = pytest.importorskip("skimage.metrics").structural_similarity
    from torchmetrics.functional.image import structural_similarity_index_measure

    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 20, (40, 50))
    pred = np.clip(gt + rng.normal(0, 2, gt.shape), 0, 20)
    ours = M.ssim(_t(pred), _t(gt), torch.ones(1, 1, 40, 50, dtype=torch.bool), 20.0, "valid").item()
    # Settings that make the definitions equal: Gaussian weights, sigma 1.5, population covariance, data range 20.
    ref = structural_similarity(pred, gt, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=20.0)
    assert ours == pytest.approx(ref, abs=1e-6)
    # torchmetrics (1.9) with the same nominal settings lands within 1e-3 but not exactly: its border handling
    # differs, so it is not the reference here.
    tm = structural_similarity_index_measure(_t(pred), _t(gt), gaussian_kernel=True, sigma=1.5, kernel_size=11,
                                             data_range=20.0).item()
    assert ours == pytest.approx(tm, abs=1e-3)


@pytest.mark.parametrize("method, make", [
    ("scale_shift", lambda g: 0.3 * g + 2.0),
    ("median", lambda g: 4.0 * g),
    ("scale", lambda g: 0.5 * g),
    ("scale_shift_disparity", lambda g: 1 / (2.0 / g + 0.1)),
    ("disparity", lambda g: 2.0 / g + 0.1),  # the prediction is itself a disparity (DPT / MiDaS)
])
def test_alignment_recovers_affine_predictions(method, make):
    gt = torch.rand(2, 1, 12, 16, dtype=torch.float64) * 9 + 1
    mask = torch.ones_like(gt, dtype=torch.bool)
    pred = make(gt)
    pred[0, 0, 0, 0] = 1e3  # outside the mask: must not influence the fit
    mask[0, 0, 0, 0] = False
    aligned = align(pred, gt, mask, method)
    assert torch.allclose(aligned[mask], gt[mask], atol=1e-6)
    ev = Evaluator(get_protocol("relative", alignment=method))
    ev.process(pred, gt, mask)
    assert ev.compute()["rmse"] == pytest.approx(0.0, abs=1e-6) and ev.compute()["delta1"] == 1.0


def test_crops_select_documented_boxes():
    eigen = crop_mask(480, 640, "eigen")
    rows, cols = eigen.any(1).nonzero().flatten(), eigen.any(0).nonzero().flatten()
    assert (rows.min().item(), rows.max().item() + 1, cols.min().item(), cols.max().item() + 1) == (45, 471, 41, 601)
    garg = crop_mask(375, 1242, "garg")
    rows, cols = garg.any(1).nonzero().flatten(), garg.any(0).nonzero().flatten()
    assert (rows.min().item(), rows.max().item() + 1) == (int(0.40810811 * 375), int(0.99189189 * 375))
    assert (cols.min().item(), cols.max().item() + 1) == (int(0.03594771 * 1242), int(0.96405229 * 1242))
    assert crop_mask(10, 10, [2, 5, 1, 4]).sum() == 9 and crop_mask(10, 10, "none").all()
    with pytest.raises(ValueError, match="unknown crop"):
        crop_mask(10, 10, "diagonal")


def test_protocol_crop_changes_the_score():
    gt = torch.ones(1, 1, 480, 640) * 5
    pred = gt.clone()
    pred[..., :40, :] = 15  # wrong only outside the Eigen crop
    assert Evaluator_rmse(pred, gt, "nyu-eigen") == pytest.approx(0.0)
    assert Evaluator_rmse(pred, gt, "standard") > 1.0


def Evaluator_rmse(pred, gt, name):
    ev = Evaluator(get_protocol(name))
    ev.process(pred, gt)
    return ev.compute()["rmse"]


def test_protocol_round_trips_through_dict():
    for name in ("challenge", "standard", "nyu-eigen", "kitti-garg", "relative"):
        p = get_protocol(name)
        assert Protocol.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(ValueError, match="unknown field"):
        Protocol.from_dict({"nmae": "x"})


def test_multi_scale_tta_averages_passes_at_each_input_scale():
    from depthforge.config import DataConfig
    from depthforge.predict import predict_native

    class WidthMeter(torch.nn.Module):  # "depth" = the width the network was run at, everywhere
        def forward(self, x):
            return torch.full((x.shape[0], 1, *x.shape[-2:]), float(x.shape[-1]))

    x = torch.rand(2, 3, 16, 40)
    out = predict_native(WidthMeter(), x, DataConfig(), scales=(0.5, 1.0, 1.5))
    assert out.shape == (2, 1, 16, 40) and torch.allclose(out, torch.full_like(out, (20 + 40 + 60) / 3))
    assert torch.allclose(predict_native(WidthMeter(), x, DataConfig(), flip=True, scales=(0.5,)), out * 0 + 20)
    with pytest.raises(ValueError, match="positive"):
        predict_native(WidthMeter(), x, DataConfig(), scales=(1.0, 0.0))
    p = get_protocol("challenge", tta_scales=(0.83, 1.0, 1.17))
    assert Protocol.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(ValueError, match="tta_scales"):
        get_protocol("challenge", tta_scales=())


def test_flip_tta_averages_with_mirrored_prediction():
    from depthforge.config import DataConfig
    from depthforge.predict import predict_native

    class Lopsided(torch.nn.Module):
        def forward(self, x):
            w = torch.linspace(0, 1, x.shape[-1])
            return (x.mean(1, keepdim=True) * w)

    x = torch.rand(1, 3, 8, 10)
    m = Lopsided()
    expected = 0.5 * (m(x) + m(x.flip(-1)).flip(-1))
    assert torch.allclose(predict_native(m, x, DataConfig(), flip=True), expected)
    assert not torch.allclose(predict_native(m, x, DataConfig(), flip=False), expected)


def test_course_protocol_batches_of_16_through_evaluation_and_training(tmp_path):
    """20 validation images: batches of 16 and 4, per-batch RMSE averaged over the two, as the course computes it."""
    import csv

    from depthforge.config import load_config
    from depthforge.data import build_dataset
    from depthforge.engine import train
    from depthforge.evaluation.runner import model_predictor, run_evaluation
    from depthforge.predict import predict_native
    from depthforge.sources import load_checkpoint

    overrides = ["model.name=unet_resnet18", "data.synthetic.num_train=4", "data.synthetic.num_val=20",
                 "data.synthetic.height=32", "data.synthetic.width=48", "data.batch_size=2", "train.epochs=1",
                 "train.progress_bar=false", "train.num_previews=0", f"out={tmp_path / 'run'}"]
    run = train(load_config(overrides=overrides))
    model, cfg = load_checkpoint(run / "checkpoints" / "last.ckpt")
    dataset = build_dataset(cfg.data, cfg.data.val_split, train=False)
    assert len(dataset) == 20
    # By hand: each image predicted alone, the target clipped to [0, 20], RMSE over each batch's pixels.
    preds, gts = [], []
    with torch.no_grad():
        for i in range(20):
            sample = dataset[i]
            preds.append(predict_native(model.eval(), sample["image"][None], cfg.data)[0, 0].double())
            gts.append(sample["depth"][0].double().clamp(0, 20))
    sq = [(p - g) ** 2 for p, g in zip(preds, gts)]
    per_batch = [math.sqrt(torch.stack(sq[a:b]).mean().item()) for a, b in ((0, 16), (16, 20))]
    expected = sum(per_batch) / 2
    pooled = math.sqrt(torch.stack(sq).mean().item())
    per_image = sum(math.sqrt(s.mean().item()) for s in sq) / 20
    assert abs(expected - pooled) > 1e-6 and abs(expected - per_image) > 1e-6  # the batching is what is tested

    protocol = get_protocol("challenge")
    evaluated = run_evaluation(dataset, model_predictor(model, cfg.data, protocol), protocol).compute()
    assert evaluated["rmse"] == pytest.approx(expected, rel=1e-5)
    with open(run / "metrics.csv") as f:
        validated = [float(r["val/rmse"]) for r in csv.DictReader(f) if r.get("val/rmse")][-1]
    assert validated == pytest.approx(expected, rel=1e-5)


def test_per_batch_rmse_at_batch_1_16_and_the_whole_split_by_hand():
    from depthforge.evaluation.runner import run_evaluation
    from tests.conftest import ArrayDataset

    rng = np.random.default_rng(0)
    gts = [rng.uniform(0.5, 30.0, (4, 6)).astype(np.float32) for _ in range(20)]  # some beyond the 20 m cap
    preds = [g + rng.normal(0.0, 1.0 + i / 4, g.shape).astype(np.float32) for i, g in enumerate(gts)]

    def predict(batch):
        return torch.stack([torch.from_numpy(preds[int(s)])[None] for s in batch["meta"]["stem"]])

    sq = [(p.astype(np.float64) - np.clip(g, 0, 20)) ** 2 for p, g in zip(preds, gts)]  # course: targets clipped

    def by_hand(batch: int) -> float:
        groups = [np.concatenate([s.ravel() for s in sq[i:i + batch]]) for i in range(0, 20, batch)]
        return float(np.mean([math.sqrt(g.mean()) for g in groups]))

    pooled = math.sqrt(np.concatenate([s.ravel() for s in sq]).mean())
    assert by_hand(20) == pytest.approx(pooled)
    for batch in (1, 16, 20):
        protocol = get_protocol("challenge", batch_size=batch)
        result = run_evaluation(ArrayDataset(gts, max_depth=100.0), predict, protocol).compute()
        assert result["rmse"] == pytest.approx(by_hand(batch), rel=1e-9), batch
        assert result["rmse_pooled"] == pytest.approx(pooled, rel=1e-9), batch
    assert abs(by_hand(1) - by_hand(16)) > 1e-3 and abs(by_hand(16) - pooled) > 1e-3  # batching matters
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        get_protocol("challenge", batch_size=0)


def test_batch_only_evaluator_gives_the_same_numbers_without_image_rows():
    rng = np.random.default_rng(1)
    gt = torch.from_numpy(rng.uniform(0.5, 30, (4, 1, 6, 8)))
    pred = gt + torch.from_numpy(rng.normal(0, 1, gt.shape))
    full, lean = Evaluator(get_protocol("challenge")), Evaluator(get_protocol("challenge"), per_image=False)
    for ev in (full, lean):
        ev.process(pred, gt)
    assert lean.compute() == pytest.approx(full.compute(), nan_ok=True)
    assert len(full.image_rows) == 4 and lean.image_rows == []
    with pytest.raises(ValueError, match="averages per image"):
        Evaluator(get_protocol("standard"), per_image=False)


def test_several_protocols_from_one_prediction_pass_equal_separate_passes():
    from depthforge.evaluation.report import evaluate_sources
    from depthforge.evaluation.runner import run_evaluation, run_evaluations
    from tests.conftest import ArrayDataset

    rng = np.random.default_rng(2)
    gts = [rng.uniform(0.5, 30.0, (4, 6)).astype(np.float32) for _ in range(20)]
    preds = [g + rng.normal(0.0, 1.0, g.shape).astype(np.float32) for g in gts]
    calls = []

    def predict(batch):
        calls.append(len(batch["meta"]["stem"]))
        return torch.stack([torch.from_numpy(preds[int(s)])[None] for s in batch["meta"]["stem"]])

    protocols = [get_protocol("challenge"), get_protocol("standard")]
    together = [e.compute() for e in run_evaluations(ArrayDataset(gts, max_depth=100.0), predict, protocols)]
    assert calls == [16, 4]  # one pass, in the per-batch protocol's batches
    for protocol, result in zip(protocols, together):
        alone = run_evaluation(ArrayDataset(gts, max_depth=100.0), predict, protocol).compute()
        assert result == pytest.approx(alone, nan_ok=True), protocol.name
    assert together[0]["rmse"] != pytest.approx(together[1]["rmse"], abs=1e-3)  # the protocols do differ
    with pytest.raises(ValueError, match="different batch sizes"):
        run_evaluations(ArrayDataset(gts), predict, [get_protocol("challenge", batch_size=b) for b in (16, 32)])
    with pytest.raises(ValueError, match="different test-time augmentation"):
        evaluate_sources([{"predictions": "unused"}], [get_protocol("standard"),
                                                       get_protocol("standard", flip_tta=True)])


def test_a_relative_source_is_scored_after_a_per_image_fit_and_the_card_says_so(tmp_path):
    """A source whose output is ``a_i * gt + b_i`` (a different scale and shift per image) is perfect up to the
    affine ambiguity a relative model has: aligned per image it scores ~0; scored as metres it does not."""
    from depthforge.evaluation.report import evaluate_sources
    from tests.conftest import write_pair

    root, preds = tmp_path / "data", tmp_path / "preds"
    preds.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        gt = (2 + 13 * rng.random((32, 48))).astype(np.float32)  # 2..15 m, every pixel different
        write_pair(root, "val", str(i), depth=gt, seed=i)
        np.save(preds / f"{i}.npy", ((0.3 + 0.1 * i) * gt + (1.0 + i)).astype(np.float32))
    protocol = get_protocol("standard")
    relative, = evaluate_sources([{"predictions": str(preds), "kind": "relative"}], protocol, str(root), "val")
    metres, = evaluate_sources([{"predictions": str(preds)}], protocol, str(root), "val")
    assert relative["metrics"]["rmse"] < 1e-4 and relative["metrics"]["abs_rel"] < 1e-5
    assert metres["metrics"]["rmse"] > 1.0  # the same numbers taken as metres are far off
    assert relative["source_kind"] == "relative" and "scale_shift" in relative["alignment_note"]
    assert relative["protocol"]["alignment"] == "scale_shift" and metres["protocol"]["alignment"] == "none"
    # One scale and shift for the whole split cannot undo per-image ones: the fit really is per image.
    from depthforge.metrics.alignment import align

    pred = torch.from_numpy(np.stack([np.load(preds / f"{i}.npy") for i in range(4)]))[:, None]
    gt = pred.clone()
    for i in range(4):
        gt[i] = (pred[i] - (1.0 + i)) / (0.3 + 0.1 * i)
    pooled = align(pred.reshape(1, 1, -1), gt.reshape(1, 1, -1), torch.ones(1, 1, pred.numel(), dtype=torch.bool),
                   "scale_shift")
    assert float((pooled - gt.reshape(1, 1, -1)).pow(2).mean().sqrt()) > 0.1
