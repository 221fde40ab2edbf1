import numpy as np
import pytest
import torch

from depthforge.data import ChallengeDataset, DataError
from tests.conftest import write_pair


def test_pairs_by_stem_in_numeric_order(challenge_root):
    ds = ChallengeDataset(challenge_root, "train")
    assert [ds.stem(i) for i in range(len(ds))] == [str(i) for i in range(12)]  # 2 before 10
    s = ds[10]
    assert s["image"].shape == (3, 32, 48) and s["image"].dtype == torch.float32
    assert 0 <= s["image"].min() and s["image"].max() <= 1
    assert s["depth"].shape == (1, 32, 48) and s["mask"].dtype == torch.bool
    assert s["meta"]["stem"] == "10"


def test_depth_is_clipped_to_configurable_cap(challenge_root):
    raw = np.load(challenge_root / "depth" / "train" / "3.npy")
    for cap in (20.0, 10.0):
        d = ChallengeDataset(challenge_root, "train", max_depth=cap)[3]["depth"][0].numpy()
        np.testing.assert_allclose(d, np.clip(raw, 0, cap))


def test_missing_partner_names_file(challenge_root):
    (challenge_root / "depth" / "train" / "5.npy").unlink()
    with pytest.raises(DataError, match=r"5\.(jpg|jpeg|png).*no partner"):
        ChallengeDataset(challenge_root, "train")
    ds = ChallengeDataset(challenge_root, "train", skip_invalid=True)
    assert len(ds) == 11 and ds.skipped == 1


def test_unreadable_image_names_file(challenge_root):
    bad = challenge_root / "rgb" / "train" / "4.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ds = ChallengeDataset(challenge_root, "train")
    with pytest.raises(DataError, match="4.jpg.*unreadable image"):
        ds[4]
    assert len(ChallengeDataset(challenge_root, "train", skip_invalid=True)) == 11


@pytest.mark.parametrize("depth, message", [
    (np.ones((16, 16), np.float32), "does not match image"),
    (np.full((32, 48), np.nan, np.float32), "NaN/inf"),
    (np.full((32, 48), np.inf, np.float32), "NaN/inf"),
])
def test_bad_depth_names_file(challenge_root, depth, message):
    write_pair(challenge_root, "train", "7", ext=".png", depth=depth)
    ds = ChallengeDataset(challenge_root, "train")
    with pytest.raises(DataError, match=rf"7\.npy.*{message}"):
        ds[7]
    skipping = ChallengeDataset(challenge_root, "train", skip_invalid=True)
    assert len(skipping) == 11 and skipping.skipped == 1
    assert "7" not in [skipping.stem(i) for i in range(len(skipping))]


def test_garbled_npy_names_file(challenge_root):
    (challenge_root / "depth" / "train" / "2.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"2\.npy.*unreadable"):
        ChallengeDataset(challenge_root, "train")[2]


def test_missing_split_folder_says_layout(tmp_path):
    with pytest.raises(DataError, match="rgb/val.*not found"):
        ChallengeDataset(tmp_path, "val")
