import torch

from depthforge.config import DataConfig
from depthforge.data.transforms import build_transform


def _checkerboard_sample(h=32, w=48):
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    board = ((yy // 4 + xx // 4) % 2).float()
    ramp = xx.float() / w  # breaks left-right symmetry, so a flip is detectable
    image = torch.stack([board, ramp, 1 - board])
    depth = (1 + 10 * board + ramp)[None]
    return {"image": image, "depth": depth, "mask": (board > 0)[None], "meta": {"stem": "x"}}


def test_joint_flip_resize_crop_keep_image_depth_mask_aligned():
    cfg = DataConfig(hflip=True, resize_short=64, crop=[48, 80])
    tf = build_transform(cfg, train=True)
    flipped = 0
    for seed in range(8):
        torch.manual_seed(seed)
        out = tf(_checkerboard_sample())
        assert out["image"].shape == (3, 48, 80) and out["depth"].shape == (1, 48, 80)
        board_from_depth = (out["depth"][0] > 6).float()
        # nearest resampling keeps depth values from the original set (no blending across the board's edges)
        assert torch.equal(out["mask"][0].float(), board_from_depth)
        # the image's board channel agrees with depth away from bilinear edge pixels
        agree = ((out["image"][0] > 0.5).float() == board_from_depth).float().mean()
        assert agree > 0.9
        ramp = out["image"][1]
        flipped += int(ramp[:, 0].mean() > ramp[:, -1].mean())
        depth_ramp = out["depth"][0] - 10 * board_from_depth
        assert (depth_ramp[:, 0].mean() > depth_ramp[:, -1].mean()) == (ramp[:, 0].mean() > ramp[:, -1].mean())
    assert 0 < flipped < 8  # both outcomes occurred


def test_color_jitter_changes_image_only():
    tf = build_transform(DataConfig(color_jitter=0.4), train=True)
    sample = _checkerboard_sample()
    torch.manual_seed(0)
    out = tf(sample)
    assert not torch.equal(out["image"], sample["image"])
    assert torch.equal(out["depth"], sample["depth"]) and torch.equal(out["mask"], sample["mask"])
    assert build_transform(DataConfig(color_jitter=0.4), train=False) is None


def test_cache_returns_identical_samples(challenge_root):
    from depthforge.data import ChallengeDataset
    plain, cached = ChallengeDataset(challenge_root, "train"), ChallengeDataset(challenge_root, "train", cache=True)
    first = plain[0]
    for i in range(len(plain)):
        a, b = plain[i], cached[i]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["depth"], b["depth"])
    (challenge_root / "rgb" / "train" / "0.jpeg").unlink()  # from now on only RAM has it
    assert torch.equal(cached[0]["image"], first["image"])


def test_random_crop_and_rotation_keep_alignment():
    cfg = DataConfig(random_crop=[24, 40], rotate=15.0)
    tf = build_transform(cfg, train=True)
    for seed in range(6):
        torch.manual_seed(seed)
        out = tf(_checkerboard_sample())
        assert out["image"].shape == (3, 24, 40) and out["depth"].shape == (1, 24, 40)
        depth, mask = out["depth"][0], out["mask"][0]
        values = set(torch.unique(depth).tolist())
        # nearest resampling: only original depth values (1 + 10 * board + ramp) or the fill 0 appear
        original = set(torch.unique(_checkerboard_sample()["depth"]).tolist())
        assert values <= original | {0.0}
        assert torch.equal(mask, depth > 6)  # mask moved with depth: board squares (> 6 m) are the mask


def test_random_scale_zooms_and_keeps_depth_consistent():
    from depthforge.data.transforms import RandomScale

    torch.manual_seed(0)
    sample = _checkerboard_sample(32, 48)
    out = RandomScale(2.0, 2.0)(sample)  # exactly 2x
    assert out["image"].shape == (3, 32, 48) and out["depth"].shape == (1, 32, 48)
    assert set(torch.unique(out["depth"]).tolist()) <= {v / 2 for v in torch.unique(sample["depth"]).tolist()}
    assert torch.equal(out["mask"][0], out["depth"][0] > 3)  # board squares (> 6 m, now halved) stay the mask
    small = RandomScale(0.5, 0.5, adjust_depth=False)(sample)
    assert not small["mask"][0, 20:, :].any() and small["depth"][0, :16, :24].max() > 6  # padding is invalid


def test_depth_is_capped_after_a_zoom_that_divides_it():
    import numpy as np

    from depthforge.data.transforms import RandomScale
    from tests.conftest import ArrayDataset

    depth = np.full((8, 8), 10.0, np.float32)
    depth[:4] = 100.0  # sky, far beyond the cap

    def Two(**kwargs):
        return ArrayDataset([depth], **kwargs)

    zoom_in = Two(max_depth=20.0, transform=RandomScale(2.0, 2.0))[0]["depth"]
    assert zoom_in.max() == 20.0  # 100 / 2 = 50 is still beyond the cap, not 20 / 2 = 10
    assert set(zoom_in.unique().tolist()) <= {5.0, 20.0}
    zoom_out = Two(max_depth=20.0, transform=RandomScale(0.5, 0.5))[0]
    assert zoom_out["depth"].max() <= 20.0 and zoom_out["depth"][zoom_out["mask"]].min() == 20.0
