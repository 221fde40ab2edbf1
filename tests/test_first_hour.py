"""A new user's first hour: layouts found on their own, reports that name every problem, outputs that never lie,
clean console output, usage errors and help that explain themselves."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from depthforge.cli import build_parser, main, separate_values
from depthforge.data.detect import LAYOUTS, detect_format
from depthforge.io import DataError
from tests.conftest import NARROW, write_pair

TINY = ["model.name=unet_resnet18", *NARROW, "data.batch_size=2", "train.num_previews=2", "optim.scheduler=none",
        "data.cache=false"]


def make_folder(root: Path, split_first: bool, n: int = 4, h: int = 32, w: int = 48, seed: int = 0) -> Path:
    """A generic folder data set with 16-bit millimetre PNG depth, in either split order."""
    rng = np.random.default_rng(seed)
    for split, stems in (("train", range(n)), ("val", range(100, 100 + n // 2))):
        images = root / split / "images" if split_first else root / "images" / split
        depth = root / split / "depth" if split_first else root / "depth" / split
        images.mkdir(parents=True, exist_ok=True)
        depth.mkdir(parents=True, exist_ok=True)
        for i in stems:
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / f"{i:04d}.jpg")
            Image.fromarray(rng.integers(500, 9000, (h, w)).astype(np.uint16)).save(depth / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained run on a split-first folder, through the CLI with the layout detected."""
    base = tmp_path_factory.mktemp("first")
    data = make_folder(base / "data", split_first=True)
    out = base / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--max-steps", "2", *TINY,
                 "data.max_depth=10"]) == 0
    return out


# 1. Layouts are detected, and an unknown root is an error listing them all.

def test_every_layout_is_detected(tmp_path, challenge_root):
    from depthforge.data.cache import write_cache
    from depthforge.data.folder import FolderDataset

    assert detect_format(challenge_root)[0] == "challenge"
    assert detect_format(make_folder(tmp_path / "a", split_first=False)) == (
        "folder", "folder layout (images/ + depth/), depth 16-bit PNG")
    name, text = detect_format(make_folder(tmp_path / "b", split_first=True))
    assert name == "folder" and "split first (train, val)" in text and "16-bit PNG" in text
    (tmp_path / "list.csv").write_text("image,depth\n")
    assert detect_format(tmp_path / "list.csv")[0] == "manifest"
    (tmp_path / "nyu_depth_v2_labeled.mat").write_bytes(b"")
    assert detect_format(tmp_path / "nyu_depth_v2_labeled.mat")[0] == "nyu-mat"
    write_cache(FolderDataset(tmp_path / "a", "train"), tmp_path / "cache" / "train")
    assert detect_format(tmp_path / "cache")[0] == "cache"
    scene = tmp_path / "nyu" / "train" / "kitchen_0001"
    scene.mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(scene / "1.jpg")
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(scene / "1.png")
    assert detect_format(tmp_path / "nyu")[0] == "nyu"
    (tmp_path / "kitti" / "2011_09_26" / "2011_09_26_drive_0001_sync").mkdir(parents=True)
    assert detect_format(tmp_path / "kitti")[0] == "kitti"
    (tmp_path / "junk" / "photos").mkdir(parents=True)
    with pytest.raises(DataError) as err:
        detect_format(tmp_path / "junk")
    assert "found: photos/" in str(err.value) and all(f"  {name}:" in str(err.value) for name in LAYOUTS)


def test_data_check_without_format_checks_the_given_root(tmp_path, capsys):
    data = make_folder(tmp_path / "mine", split_first=True)
    assert main(["data", "check", str(data)]) == 0
    out = capsys.readouterr().out
    assert "detected folder layout, split first" in out and "split 'train': 4 sample(s)" in out
    assert "split 'val': 2 sample(s)" in out and "median 4." in out  # millimetres read as metres (0.5-9 m)
    assert main(["data", "check", str(tmp_path / "nothing_here")]) == 2
    assert main(["train", "--data", str(tmp_path)]) == 2  # tmp_path holds only 'mine/': no layout
    assert "Known layouts" in capsys.readouterr().err


# 2. The split-first layout.

def test_split_first_folder_loads_like_image_first(tmp_path):
    from depthforge.data.folder import FolderDataset

    a = FolderDataset(make_folder(tmp_path / "a", split_first=False, seed=3), "val")
    b = FolderDataset(make_folder(tmp_path / "b", split_first=True, seed=3), "val")
    assert len(a) == len(b) == 2
    for i in range(2):
        assert torch.equal(a[i]["depth"], b[i]["depth"]) and torch.equal(a[i]["image"], b[i]["image"])


# 3. data check names every kind of problem with its own count.

def test_data_check_reports_every_problem_kind(tmp_path, capsys, caplog):
    root = tmp_path / "DepthEstimationUnreal"
    for i in range(6):
        write_pair(root, "train", str(i), seed=i)
    (root / "rgb" / "train" / "0.jpeg").unlink()  # depth 0.npy now has no partner
    (root / "rgb" / "train" / "1.jpeg").write_bytes(b"")  # 0-byte JPEG
    two = root / "rgb" / "train" / "2.jpeg"
    two.write_bytes(two.read_bytes()[:200])  # truncated JPEG
    np.save(root / "depth" / "train" / "3.npy", np.ones((10, 10), np.float32))  # wrong size
    with caplog.at_level(logging.WARNING):
        assert main(["data", "check", str(root), "--split", "train"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"ERROR 1 unpaired:\n\s+\S*0\.npy: has no partner", out)
    assert re.search(r"ERROR 2 unreadable image:\n\s+\S*1\.jpeg.*\n\s+\S*2\.jpeg", out)
    assert re.search(r"ERROR 1 size mismatch:\n\s+\S*3\.npy", out)
    assert "4 error(s)" in out
    assert "skipped" not in caplog.text  # nothing was asked to skip


# 4. Options with several values do not swallow what follows.

def test_multi_value_options_stop_at_overrides_and_paths():
    parser = build_parser()
    args, extra = parser.parse_known_args(separate_values(
        ["data", "check", "my_data", "--split", "train", "test", "data.depth_scale=1000"]))
    assert args.split == ["train", "test"] and args.root == "my_data" and extra == ["data.depth_scale=1000"]
    args, extra = parser.parse_known_args(separate_values(
        ["predict", "--checkpoint", "c.ckpt", "--format", "npy", "png16", "photo.jpg", "--out", "o"]))
    assert args.format == ["npy", "png16"] and args.inputs == ["photo.jpg"] and not extra
    args, _ = parser.parse_known_args(separate_values(["evaluate", "--checkpoint", "a.ckpt", "b.ckpt", "--json", "x"]))
    assert args.checkpoint == ["a.ckpt", "b.ckpt"]


def test_data_check_split_list_then_override(tmp_path, capsys):
    data = make_folder(tmp_path / "mine", split_first=True)
    assert main(["data", "check", str(data), "--split", "train", "val", "data.depth_scale=500"]) == 0
    out = capsys.readouterr().out
    assert "split 'train'" in out and "split 'val'" in out and "data.depth_scale" not in out
    assert "median 9." in out  # scale 500: the override was applied (4.7 m at 1000)


# 5. Written depth is never impossible without saying so.

def test_predict_clamps_impossible_depth_and_says_so(run, tmp_path, monkeypatch, caplog):
    from depthforge.predict import Predictor

    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(image)
    raw = np.linspace(-5.0, 30.0, 32 * 48, dtype=np.float32).reshape(32, 48)  # 1/7 negative, 20/35 beyond 10 m
    monkeypatch.setattr(Predictor, "batch", lambda self, rgbs: [raw.copy() for _ in rgbs])
    out = tmp_path / "p"
    with caplog.at_level(logging.WARNING):
        assert main(["predict", "--checkpoint", str(run / "checkpoints" / "best.ckpt"), str(image), "--out", str(out),
                     "--ply", "--fx", "40"]) == 0
    depth = np.load(out / "photo.npy")
    assert depth.min() == pytest.approx(1e-3) and depth.max() == pytest.approx(10.0)
    side = json.loads((out / "photo.npy.json").read_text())
    assert side["value_range"][0] > 0 and side["clamped"]["model_range"] == [1e-3, 10.0]
    assert side["clamped"]["below"] == pytest.approx((raw < 1e-3).mean())
    assert side["clamped"]["above"] == pytest.approx((raw > 10).mean())
    assert side["clamped"]["raw_range"] == pytest.approx([-5.0, 30.0])
    assert re.search(r"photo.png: 14\.\d% of pixels below 0.001 m and 57\.\d% above 10 m", caplog.text)


def test_evaluation_still_scores_raw_predictions():
    from depthforge.evaluation import Evaluator, get_protocol

    gt = torch.full((1, 1, 2, 2), 5.0)
    pred = torch.tensor([[[[-1.0, 5.0], [5.0, 5.0]]]])
    evaluator = Evaluator(get_protocol("challenge"))
    evaluator.process(pred, gt)
    assert evaluator.compute()["rmse"] == pytest.approx(3.0)  # sqrt(36 / 4): the -1 m is scored as it is


# 6. best.ckpt holds what evaluation needs; last.ckpt what resuming needs.

def test_best_checkpoint_is_evaluation_only(run):
    from depthforge.sources import load_checkpoint

    best, last = run / "checkpoints" / "best.ckpt", run / "checkpoints" / "last.ckpt"
    b, lst = (torch.load(p, weights_only=True) for p in (best, last))
    assert "optimizer_states" in lst and "optimizer_states" not in b and "depthforge" in b
    assert best.stat().st_size < 0.6 * last.stat().st_size  # AdamW keeps two moments per weight
    model, cfg = load_checkpoint(best)
    assert cfg.data.max_depth == 10 and all(torch.equal(v, lst["state_dict"]["model." + k])
                                            for k, v in model.state_dict().items())


# 7. Previews say what each column is, in metres.

def test_preview_columns_are_titled_with_colour_bars(run):
    from depthforge.viz.plots import comparison_figure

    rng = np.random.default_rng(0)
    rows = [(rng.integers(0, 255, (8, 12, 3), dtype=np.uint8), rng.uniform(0, 10, (8, 12)),
             rng.uniform(0, 10, (8, 12))) for _ in range(2)]
    fig = comparison_figure(rows, 10.0)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert titles == ["input", "ground truth (m)", "prediction (m)", "|error| (m)"]
    assert labels == ["depth (m)", "|error| (m)"]
    assert sorted(p.name for p in (run / "previews").glob("*.png"))


# 8. A file that is not a checkpoint.

def test_foreign_file_as_checkpoint_never_suggests_unsafe_loading(tmp_path, capsys):
    foreign = tmp_path / "model.pt"
    torch.save({"args": argparse.Namespace(lr=1)}, foreign)  # a pickled Python object: safe loading refuses it
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(image)
    for path in (foreign, image):
        assert main(["evaluate", "--checkpoint", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"{path}: not a depthforge checkpoint" in err and "written by depthforge train" in err
        assert "weights_only" not in err and "file an issue" not in err.lower()
    assert "a PNG image" in err


# 9. One clean line per event on a non-terminal; --quiet.

def test_console_output_of_a_short_train_has_no_repeats(tmp_path, capsys):
    data = make_folder(tmp_path / "mine", split_first=True)
    args = ["train", "--data", str(data), "--epochs", "2", *TINY]
    # the console of a real process (what a user sees: Lightning's own handlers and warnings as they are there)
    out = subprocess.run([sys.executable, "-m", "depthforge.cli", *args, "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    lines = [line for line in text.splitlines() if line.strip() and set(line.strip()) != {"-"}]
    repeated = {line for line in lines if lines.count(line) > 1 and not line.startswith(("0 ", "|"))}
    assert not repeated, repeated
    assert "\r" not in text and "litlogger" not in text and "LeafSpec" not in text
    assert len(re.findall(r"^epoch \d/2, step \d+: train/loss [\d.]+, val/rmse [\d.]+", text, re.M)) == 2
    assert "detected folder layout, split first" in text
    capsys.readouterr()  # --quiet in this process (its console handler writes to the captured stderr)
    assert main([*args, "--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    quiet = "".join(capsys.readouterr())
    assert "epoch 1/2" not in quiet and "GPU available" not in quiet and "run folder:" in quiet


# 10. A failed train leaves nothing behind; cards re-run from anywhere.

def test_failed_train_leaves_no_run_folder(tmp_path, capsys):
    data = make_folder(tmp_path / "mine", split_first=True)
    (data / "train" / "depth" / "0001.png").unlink()  # an image without depth: the run cannot start
    out = tmp_path / "r"
    assert main(["train", "--data", str(data), "--out", str(out), "--max-steps", "1", *TINY]) == 2
    assert "has no partner" in capsys.readouterr().err and not out.exists()
    out.mkdir()  # a folder the user made is never removed
    assert main(["train", "--data", str(data), "--out", str(out), "--max-steps", "1", *TINY]) == 2
    assert out.is_dir()


def test_eval_card_reruns_from_another_directory(run, tmp_path, monkeypatch, capsys):
    import shutil

    home = tmp_path / "project"
    shutil.copytree(run, home / "runs" / "r")
    monkeypatch.chdir(home)
    assert main(["evaluate", "--checkpoint", "runs/r/checkpoints/best.ckpt", "--json", "cards/r.json"]) == 0
    card = json.loads((home / "cards" / "r.json").read_text())
    assert card["source"]["locations"]["checkpoint"]["relative_to_card"] == ["../runs/r/checkpoints/best.ckpt"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["evaluate", "--card", str(home / "cards" / "r.json")]) == 0  # via the absolute path
    assert "max |recorded - now| = 0" in capsys.readouterr().out
    moved = tmp_path / "moved"
    shutil.move(home, moved)  # card and run moved together: found relative to the card
    assert main(["evaluate", "--card", str(moved / "cards" / "r.json")]) == 0
    shutil.rmtree(moved / "runs")
    assert main(["evaluate", "--card", str(moved / "cards" / "r.json")]) == 2
    assert "not found (looked at" in capsys.readouterr().err


# 11. Usage errors exit 2; help explains every option and shows defaults.

def test_usage_errors_exit_2_and_help_is_complete(capsys):
    assert main(["predict", "x.jpg", "--out", "o"]) == 2
    assert "exactly one of --checkpoint" in capsys.readouterr().err
    parser = build_parser()
    assert "No logic" not in parser.format_help()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help"
        text = sub.format_help()
        if name == "evaluate":
            assert "(default: challenge)" in text


# 12. timm-style booleans for pretrained.

def test_pretrained_true_means_the_default_weights():
    from depthforge.models import create_model
    from depthforge.models.offline_weights import load_offline

    stem = load_offline("tf_efficientnet_lite0")["conv_stem.weight"]
    assert torch.equal(create_model("unet_efficientnet_lite0", pretrained=True).encoder.model.conv_stem.weight, stem)
    assert not torch.equal(create_model("unet_efficientnet_lite0", pretrained=False).encoder.model.conv_stem.weight,
                           stem)


# 13. An undefined metric is explained, not printed as nan.

def test_undefined_metric_is_explained_in_the_table():
    from depthforge.evaluation.report import comparison_table

    card = {"source": {"predictions": "preds"}, "protocol": {"name": "standard"}, "n": 3,
            "metrics": {"rmse": 1.0, "rmse_pooled": 1.1, "ssim": 0.5, "abs_rel": 0.1, "delta1": 0.9, "silog": 9.0,
                        "edge_f1": float("nan")}}
    table = comparison_table([card])
    assert "nan" not in table and "| n/a |" in table and "n/a: edge_f1 is undefined" in table
