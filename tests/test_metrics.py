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


def test_edge_precision_recall_f1_by_hand():
    from depthforge.metrics.functional import depth_edges, edge_scores

    t = lambda rows: torch.tensor(rows, dtype=torch.float32)
    # Truth: right-neighbour edges at (0,1) and (1,1) (1 -> 2); lower-neighbour edges at (2,0), (2,1), (1,2),
    # (2,2), (1,3), (2,3). Prediction: right edges (0,2), (1,1), (3,1); lower edges (0,2), (1,2), (2,2), (1,3),
    # (2,3). Pixel (0,2) is invalid, which drops the truth's right edge (0,1) and the prediction's (0,2) twice.
    gt = t([[1, 1, 2, 2], [1, 1, 2, 2], [1, 1, 1, 1], [5, 5, 5, 5]])
    pred = t([[1, 1, 1, 2], [1, 1, 2, 2], [1, 1, 1, 1], [1, 1, 5, 5]])
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[0, 2] = False
    s = edge_scores(pred, gt, mask)  # the default ratio, 1.15: a 1 -> 2 step is an edge
    # valid pairs only: tp = 1 (right) + 4 (lower), 6 predicted, 7 true
    assert s["edge_precision"].item() == pytest.approx(5 / 6)
    assert s["edge_recall"].item() == pytest.approx(5 / 7)
    assert s["edge_f1"].item() == pytest.approx(2 * (5 / 6) * (5 / 7) / (5 / 6 + 5 / 7))
    big = edge_scores(pred, gt, mask, ratio=3.0)  # 1 -> 5 steps only: truth 4 lower, prediction (3,1) + 2 lower
    assert (big["edge_precision"].item(), big["edge_recall"].item()) == (pytest.approx(2 / 3), pytest.approx(0.5))
    # a ratio of exactly the threshold is not an edge, in either direction
    exact = torch.tensor([[1.0, 1.15], [1.15, 1.15]], dtype=torch.float64)
    ex, ey, _, _ = depth_edges(exact, torch.ones(2, 2, dtype=torch.bool), 1.15)
    assert not ex.any() and not ey.any()
    ex, ey, _, _ = depth_edges(t([[1, 2, 1]]), torch.ones(1, 3, dtype=torch.bool), 1.15)
    assert ex.tolist() == [[True, True]]  # a step down counts as much as a step up
    _, ey, _, _ = depth_edges(t([[1], [2], [1]]), torch.ones(3, 1, dtype=torch.bool), 1.15)
    assert ey.tolist() == [[True], [True]]
    one = t([[1, 2]])
    single = edge_scores(one, one, torch.ones(1, 2, dtype=torch.bool))  # one edge, found
    assert [single[k].item() for k in ("edge_precision", "edge_recall", "edge_f1")] == [1.0, 1.0, 1.0]
    flat, ones = t([[3, 3], [3, 3]]), torch.ones(2, 2, dtype=torch.bool)
    step = t([[1, 4], [1, 4]])
    missed = edge_scores(flat, step, ones)      # no predicted edge: precision undefined, recall 0
    assert math.isnan(missed["edge_precision"]) and missed["edge_recall"].item() == 0.0
    assert math.isnan(missed["edge_f1"])
    invented = edge_scores(step, flat, ones)    # no true edge: recall undefined, precision 0
    assert invented["edge_precision"].item() == 0.0 and math.isnan(invented["edge_recall"])
    assert math.isnan(invented["edge_f1"])
    # exactly one edge on each side, not shared: F1 is 0, not undefined
    apart = edge_scores(t([[1, 4, 4]]), t([[1, 1, 4]]), torch.ones(1, 3, dtype=torch.bool))
    assert apart["edge_f1"].item() == 0.0
    disjoint = edge_scores(t([[1, 4], [1, 4]]), t([[1, 1], [4, 4]]), ones)  # edges on both sides, none shared
    assert [disjoint[k].item() for k in ("edge_precision", "edge_recall", "edge_f1")] == [0.0, 0.0, 0.0]


def test_per_image_metrics_by_hand_with_near_and_missing_depth():
    from depthforge.metrics import functional as F

    # (pred, gt) pixels: depths below 1 m, a ratio of exactly 1.25, a zero prediction, and a gt of 0 inside the
    # mask (no measurement: every metric but RMSE / MAE leaves it out).
    pairs = [(0.5, 0.5), (0.7, 0.5), (0.5, 0.7), (1.25, 1.0), (1.2, 1.0), (2.0, 1.0), (0.0, 1.0), (3.0, 0.0)]
    p = torch.tensor([[a for a, _ in pairs]], dtype=torch.float64)
    g = torch.tensor([[b for _, b in pairs]], dtype=torch.float64)
    m = torch.ones_like(p, dtype=torch.bool)
    pp, gg = np.array([a for a, b in pairs if b > 0]), np.array([b for a, b in pairs if b > 0])
    assert F.abs_rel(p, g, m).item() == pytest.approx(np.mean(np.abs(pp - gg) / gg), rel=1e-12)
    assert F.sq_rel(p, g, m).item() == pytest.approx(np.mean((pp - gg) ** 2 / gg), rel=1e-12)
    lp, lg = np.log(np.maximum(pp, 1e-3)), np.log(gg)
    assert F.rmse_log(p, g, m).item() == pytest.approx(np.sqrt(np.mean((lp - lg) ** 2)), rel=1e-12)
    assert F.log10(p, g, m).item() == pytest.approx(np.mean(np.abs(lp - lg)) / np.log(10), rel=1e-12)
    d = lp - lg
    assert F.silog(p, g, m).item() == pytest.approx(100 * np.sqrt(np.mean(d ** 2) - np.mean(d) ** 2), rel=1e-12)
    # delta < 1.25 passes (0.5, 0.5) and (1.2, 1.0) only: 2 of the 7 measured pixels
    assert F.delta(p, g, m).item() == pytest.approx(2 / 7)
    assert F.delta(p, g, m, threshold=2.5).item() == pytest.approx(6 / 7)  # all but the zero prediction
    assert math.isnan(F.rmse(p, g, torch.zeros_like(m)).item())             # nothing valid: undefined, not 0


def test_valid_ssim_needs_one_whole_window():
    from depthforge.metrics.functional import ssim

    rng = np.random.default_rng(0)
    for h, w, defined in ((11, 11, True), (10, 11, False), (11, 10, False)):
        x = torch.tensor(rng.uniform(1, 5, (1, 1, h, w)))
        value = ssim(x, x * 1.1, torch.ones_like(x, dtype=torch.bool), data_range=20, padding="valid").item()
        assert math.isnan(value) != defined, (h, w)


def test_alignments_by_hand_per_image_with_partial_masks():
    from depthforge.metrics.alignment import align, align_scale_shift

    gt = torch.tensor([[[0.2, 0.4], [0.6, 0.8]], [[1.0, 2.0], [3.0, 4.0]], [[0.5, 0.5], [0.5, 0.5]]],
                      dtype=torch.float64)
    pred = torch.tensor([[[0.1, 0.3], [0.5, 9.0]], [[0.5, 1.0], [1.5, 2.0]], [[1.0, 2.0], [3.0, 4.0]]],
                        dtype=torch.float64)
    mask = torch.tensor([[[True, True], [True, False]], [[True, True], [True, True]], [[False, False], [False, False]]])
    # image 0: gt = pred + 0.1 on its three valid pixels (the masked one is far off); image 1: gt = 2 pred;
    # image 2: nothing valid, returned as it is.
    out = align(pred, gt, mask, "scale_shift")
    assert torch.allclose(out[0], pred[0] + 0.1) and torch.allclose(out[1], 2 * pred[1])
    assert torch.equal(out[2], pred[2]) and out.shape == pred.shape
    med = align(pred, gt, mask, "median")  # median(gt) / median(pred) over valid pixels: 0.4 / 0.3, 2.5 / 1.25
    assert torch.allclose(med[0], pred[0] * 0.4 / 0.3) and torch.allclose(med[1], 2 * pred[1])
    sc = align(pred, gt, mask, "scale")     # sum(p g) / sum(p^2) over valid pixels
    s0 = (0.1 * 0.2 + 0.3 * 0.4 + 0.5 * 0.6) / (0.01 + 0.09 + 0.25)
    assert torch.allclose(sc[0], pred[0] * s0) and torch.allclose(sc[1], 2 * pred[1])
    # in disparity: 1/gt = 2 / pred + 0.5 on image 0's valid pixels (depth below 1 m)
    disp_gt = 1 / (2 / pred + 0.5)
    dd = align(pred, disp_gt, mask, "scale_shift_disparity")
    assert torch.allclose(dd[0][mask[0]], disp_gt[0][mask[0]]) and torch.allclose(dd[1], disp_gt[1])
    inv = align(1 / pred, disp_gt, mask, "disparity")  # a disparity output: fitted to 1 / gt as it is
    assert torch.allclose(inv[0][mask[0]], disp_gt[0][mask[0]])
    with pytest.raises(ValueError, match="unknown alignment 'affine'; use one of"):
        align(pred, gt, mask, "affine")
    flipped = align(pred[[2, 0]], gt[[2, 0]], mask[[2, 0]], "scale_shift")  # an empty image first: the next still fitted
    assert torch.equal(flipped[0], pred[2]) and torch.allclose(flipped[1], pred[0] + 0.1)
    # batched: one fit per image, not one for the batch
    both = align_scale_shift(pred[:2], gt[:2], mask[:2])
    assert torch.allclose(both[0], pred[0] + 0.1) and torch.allclose(both[1], 2 * pred[1])
    # one valid pixel: no slope to fit, the shift alone meets it (every pixel gets that pixel's truth)
    lone = torch.zeros(1, 2, 2, dtype=torch.bool)
    lone[0, 1, 0] = True
    assert torch.allclose(align_scale_shift(pred[1:2], gt[1:2], lone), torch.full((1, 2, 2), 3.0, dtype=torch.float64))


def test_crop_boxes_in_fractions_or_pixels():
    from depthforge.metrics.alignment import crop_mask

    assert crop_mask(4, 6, [0, 1, 0, 1]).all()                       # fractions: the whole image
    half = crop_mask(4, 6, [0, 0.5, 0, 1])                            # the top half
    assert half[:2].all() and not half[2:].any()
    px = crop_mask(4, 6, [0, 2, 1, 3])                                # pixels: rows 0-1, columns 1-2
    assert px.sum() == 4 and px[0:2, 1:3].all()
    assert crop_mask(4, 6, [0, 2, 1, 2]).sum() == 2                   # a value above 1 makes it pixels
    with pytest.raises(ValueError, match=r"unknown crop \[0, 1, 1\]"):
        crop_mask(4, 6, [0, 1, 1])


def test_gaussian_blur_is_valid_by_default_and_ssim_constants_scale_with_the_range():
    from depthforge.metrics.ssim import gaussian_blur, gaussian_window, ssim_map

    x = torch.tensor(np.random.default_rng(1).uniform(0, 1, (1, 1, 15, 16)))
    w2 = torch.outer(gaussian_window(dtype=torch.float64), gaussian_window(dtype=torch.float64))
    expected = torch.nn.functional.conv2d(x, w2[None, None])          # no padding: 5x6
    assert torch.allclose(gaussian_blur(x), expected)
    # data range 20: C1 = (0.01 * 20)^2, C2 = (0.03 * 20)^2 (scikit-image's convention), on low-contrast maps
    rng = np.random.default_rng(2)
    a, b = rng.uniform(5, 5.3, (13, 13)), rng.uniform(3, 3.3, (13, 13))
    got = ssim_map(torch.tensor(a)[None, None], torch.tensor(b)[None, None], data_range=20)[0, 0].numpy()
    assert np.allclose(got, ssim_by_hand(a, b, (0.01 * 20) ** 2, (0.03 * 20) ** 2), atol=1e-10)
