"""Own data end to end: evaluate where the run trained (its own val split), and on any other data in any format."""

import json

import numpy as np
import pytest
from PIL import Image

from depthforge.cli import main
from tests.conftest import write_pair


def _folder(root, splits, n=3, h=32, w=48, seed=0):
    rng = np.random.default_rng(seed)
    for split in splits:
        for i in range(n):
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            (root / split / "depth").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / split / "images" / f"{i}.jpg")
            Image.fromarray(rng.integers(500, 9000, (h, w)).astype(np.uint16)).save(root / split / "depth" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("own")
    # Splits of different content and size: scoring the wrong one cannot give the right count or numbers.
    data = _folder(base / "mine", ("train",), n=3)
    _folder(data, ("test",), n=5, seed=1)
    out = base / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--max-steps", "2", "model.name=unet_resnet18",
                 "data.batch_size=2", "data.val_split=test", "data.max_depth=10", "train.num_previews=0",
                 "optim.scheduler=cosine", "optim.warmup_fraction=0.5", "train.ema_decay=0.999",
                 "train.ema_fraction=0.5"]) == 0
    return out


def test_run_length_rules_are_resolved_and_stored(run):
    import torch

    resolved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["depthforge"]["resolved"]
    assert resolved == {"warmup_steps": 1, "ema_decay": pytest.approx(1 - 1 / 10)}  # 2 steps: half, and the floor


def test_evaluate_defaults_to_the_runs_own_val_split(run, tmp_path):
    ckpt = str(run / "checkpoints" / "last.ckpt")
    cards = {}
    for name, extra in (("default", []), ("test", ["--split", "test"]), ("train", ["--split", "train"])):
        cards[name] = tmp_path / f"{name}.json"
        assert main(["evaluate", "--checkpoint", ckpt, "--protocol", "standard", "--max-depth", "10", "--json",
                     str(cards[name]), *extra]) == 0
    default, test, train = (json.loads(cards[k].read_text()) for k in ("default", "test", "train"))
    assert default["data"]["split"] == "test" and default["n"] == 5 and train["n"] == 3
    assert default["metrics"] == test["metrics"]  # the run's data.val_split, exactly as if named
    assert abs(default["metrics"]["rmse"] - train["metrics"]["rmse"]) > 1e-3  # and not the training images


def test_a_checkpoint_scores_on_another_folder_in_another_format(run, tmp_path, capsys):
    other = tmp_path / "DepthEstimationUnreal"  # the challenge layout: .npy metres, splits under rgb/ and depth/
    for i in range(4):
        write_pair(other, "val", str(i), seed=10 + i, depth=np.full((32, 48), 2.0 + i, np.float32))
    card = tmp_path / "c.json"
    assert main(["evaluate", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--data", str(other),
                 "--split", "val", "--protocol", "standard", "--max-depth", "10", "--json", str(card)]) == 0
    saved = json.loads(card.read_text())
    assert saved["data"]["name"] == "challenge" and saved["data"]["root"] == str(other) and saved["n"] == 4
    # A manifest of the same files, with a data override after the options: the same numbers.
    csv = tmp_path / "list.csv"
    csv.write_text("image,depth,split\n" + "".join(f"DepthEstimationUnreal/rgb/val/{i}.jpeg,"
                                                   f"DepthEstimationUnreal/depth/val/{i}.npy,val\n" for i in range(4)))
    card2 = tmp_path / "c2.json"
    assert main(["evaluate", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--data", str(csv), "--split",
                 "val", "--protocol", "standard", "--max-depth", "10", "--json", str(card2), "data.max_depth=10"]) == 0
    saved2 = json.loads(card2.read_text())
    assert saved2["data"]["name"] == "manifest" and saved2["data"]["config"]["max_depth"] == 10
    assert saved2["metrics"]["rmse"] == pytest.approx(saved["metrics"]["rmse"], rel=1e-6)
    assert main(["evaluate", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "optim.lr=1"]) == 2
    assert "data overrides only" in capsys.readouterr().err
