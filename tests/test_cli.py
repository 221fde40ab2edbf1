"""The CLI end to end on the embedded default: train a few steps, evaluate, predict, score the predictions."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from depthforge.cli import main
from tests.conftest import write_pair


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    code = main(["train", "--out", str(out), "--max-steps", "2", "--device", "cpu", "data.synthetic.num_train=8",
                 "data.synthetic.num_val=4", "data.batch_size=4", "train.progress_bar=false",
                 "data.synthetic.height=64", "data.synthetic.width=96"])
    assert code == 0
    return out


def test_train_writes_the_run_folder(run):
    for rel in ("config.yaml", "checkpoints/last.ckpt", "checkpoints/best.ckpt", "metrics.csv"):
        assert (run / rel).is_file(), rel
    previews = list((run / "previews").glob("*.png"))
    width, height = Image.open(previews[0]).size
    assert previews and width > 4 * 96 and height > 4 * 64  # 4 titled panels (+ colour bars) wide, 4 samples high
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["depthforge"]["model_name"] == "baseline" and ckpt["global_step"] == 2
    assert ckpt["depthforge"]["config"]["data"]["synthetic"]["num_train"] == 8
    assert "val/rmse" in (run / "metrics.csv").read_text()


def test_evaluate_writes_json(run, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["evaluate", "--checkpoint", str(run / "checkpoints" / "best.ckpt"), "--protocol", "standard",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n"] == 4 and result["protocol"]["name"] == "standard"
    m = result["metrics"]
    assert set(m) >= {"rmse", "ssim", "abs_rel", "delta1"}
    # Predictions are clamped to (0, 20] and targets lie in it: every error is below 20 m; RMSE >= MAE always.
    assert 0 < m["mae"] <= m["rmse"] < 20 and 0 <= m["delta1"] <= 1 and -1 <= m["ssim"] <= 1
    assert f"{m['rmse']:.4f}" in capsys.readouterr().out  # the printed table shows the saved value


def test_predict_then_score_predictions(run, tmp_path):
    root = tmp_path / "data"
    for i in range(3):
        write_pair(root, "val", str(i), h=40, w=60, seed=i)
    write_pair(root, "val", "3", h=44, w=60, seed=3)  # another size: its own batch
    pred_dir = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), str(root / "rgb" / "val"),
                 "--out", str(pred_dir), "--batch-size", "2"]) == 0
    assert np.load(pred_dir / "3.npy").shape == (44, 60)
    from depthforge.predict import Predictor
    from depthforge.sources import load_checkpoint
    model, cfg = load_checkpoint(run / "checkpoints" / "last.ckpt")
    alone = Predictor(model, cfg.data).predict_file(root / "rgb" / "val" / "1.jpeg")
    valid = (1e-3, 20.0)  # written depth is clamped into the model's valid range
    np.testing.assert_allclose(np.load(pred_dir / "1.npy"), np.clip(alone, *valid), atol=1e-5)  # batching: no change
    depth = np.load(pred_dir / "1.npy")
    assert depth.shape == (40, 60) and depth.dtype == np.float32 and (pred_dir / "1_color.png").is_file()
    assert json.loads((pred_dir / "1.npy.json").read_text())["units"] == "metres"
    ms_dir = tmp_path / "pred_ms"
    image = str(root / "rgb" / "val" / "1.jpeg")
    assert main(["predict", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), image, "--out", str(ms_dir),
                 "--tta-scales", "0.5,1"]) == 0
    multi = Predictor(model, cfg.data, scales=(0.5, 1.0)).predict_file(image)
    np.testing.assert_allclose(np.load(ms_dir / "1.npy"), np.clip(multi, *valid), atol=1e-5)
    assert not np.allclose(multi, alone, atol=1e-4)  # the half-size pass changes the answer
    assert json.loads((ms_dir / "1.npy.json").read_text())["tta_scales"] == [0.5, 1.0]
    # Scoring saved predictions equals scoring the checkpoint directly (under a protocol that clamps predictions
    # as the written files are clamped; the course's scores raw predictions).
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["evaluate", "--predictions", str(pred_dir), "--data", str(root), "--json", str(a),
                 "--protocol", "standard"]) == 0
    assert main(["evaluate", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--data", str(root),
                 "--json", str(b), "--protocol", "standard"]) == 0
    ma, mb = json.loads(a.read_text())["metrics"], json.loads(b.read_text())["metrics"]
    assert ma["rmse"] == pytest.approx(mb["rmse"], rel=1e-5) and ma["ssim"] == pytest.approx(mb["ssim"], rel=1e-4)


def test_missing_prediction_is_named(run, tmp_path, capsys):
    root = tmp_path / "data"
    write_pair(root, "val", "9")
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--predictions", str(tmp_path / "empty"), "--data", str(root)]) == 2
    assert "9.npy" in capsys.readouterr().err


def test_eval_card_round_trip_and_report(run, tmp_path, capsys):
    card = tmp_path / "card.json"
    report = tmp_path / "report"
    ckpt = str(run / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", ckpt, "--tta-scales", "1,-2"]) == 2  # a usage error, like argparse's
    assert re.search(r"--tta-scales '1,-2'.*e.g. 0.83,1,1.17", capsys.readouterr().err)
    assert main(["evaluate", "--checkpoint", ckpt, "--protocol", "standard", "--flip-tta", "--tta-scales", "0.75,1",
                 "--json", str(card), "--report", str(report), "--worst", "2"]) == 0
    saved = json.loads(card.read_text())
    assert saved["protocol"]["flip_tta"] is True and len(saved["source"]["sha256"]) == 64
    assert saved["protocol"]["tta_scales"] == [0.75, 1.0]
    assert card.with_suffix(".md").read_text().startswith("# Eval card")
    folder = next(report.iterdir())
    names = {p.name for p in folder.iterdir()}
    assert {"per_image.csv", "error_by_depth.png", "density.png", "worst_2.png"} <= names
    assert len((folder / "per_image.csv").read_text().strip().splitlines()) == 1 + saved["n"]
    capsys.readouterr()
    assert main(["evaluate", "--card", str(card)]) == 0  # re-running reproduces the numbers
    assert "max |recorded - now| = 0" in capsys.readouterr().out


def test_comparison_of_several_checkpoints(run, tmp_path, capsys):
    ckpts = [str(run / "checkpoints" / "last.ckpt"), str(run / "checkpoints" / "best.ckpt")]
    assert main(["evaluate", "--checkpoint", *ckpts, "--protocol", "challenge"]) == 0
    table = capsys.readouterr().out
    assert "r-last" in table and "r-best" in table and table.count("| challenge/b16 |") == 2
    lines = table.splitlines()
    header = [cell.strip() for cell in lines[0].split("|")]
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")] for line in lines[2:]}
    for ckpt, name in zip(ckpts, ("r-last", "r-best")):  # each row is that checkpoint scored alone
        alone = tmp_path / f"{name}.json"
        assert main(["evaluate", "--checkpoint", ckpt, "--protocol", "challenge", "--json", str(alone)]) == 0
        metrics = json.loads(alone.read_text())["metrics"]
        for key in ("rmse", "rmse_pooled", "ssim"):
            assert rows[name][header.index(key)] == f"{metrics[key]:.4f}", key


def test_several_protocols_are_scored_from_one_pass_as_each_alone(run, tmp_path, capsys):
    ckpt = str(run / "checkpoints" / "last.ckpt")
    both = tmp_path / "both.json"
    assert main(["evaluate", "--checkpoint", ckpt, "--protocol", "challenge,standard", "--json", str(both)]) == 0
    table = capsys.readouterr().out
    assert "| challenge/b16 |" in table and "| standard |" in table
    cards = json.loads(both.read_text())
    assert [c["protocol"]["name"] for c in cards] == ["challenge", "standard"]
    for card in cards:
        alone = tmp_path / f"{card['protocol']['name']}.json"
        assert main(["evaluate", "--checkpoint", ckpt, "--protocol", card["protocol"]["name"], "--json",
                     str(alone)]) == 0
        assert card["metrics"] == pytest.approx(json.loads(alone.read_text())["metrics"], nan_ok=True)


def test_protocol_batch_is_recorded_in_the_card_and_rerun(run, tmp_path, capsys):
    ckpt = str(run / "checkpoints" / "last.ckpt")
    b16, b1 = tmp_path / "b16.json", tmp_path / "b1.json"
    assert main(["evaluate", "--checkpoint", ckpt, "--json", str(b16)]) == 0
    assert main(["evaluate", "--checkpoint", ckpt, "--protocol-batch", "1", "--json", str(b1)]) == 0
    m16, m1 = (json.loads(p.read_text()) for p in (b16, b1))
    assert m16["protocol"]["batch_size"] == 16 and m1["protocol"]["batch_size"] == 1
    assert m1["metrics"]["rmse"] != pytest.approx(m16["metrics"]["rmse"], abs=1e-6)  # batching changes it ...
    assert m1["metrics"]["rmse_pooled"] == pytest.approx(m16["metrics"]["rmse_pooled"], rel=1e-9)  # ... not this
    capsys.readouterr()
    assert main(["evaluate", "--card", str(b1)]) == 0  # the re-run uses the recorded batch size
    out = capsys.readouterr().out
    assert out.count("| challenge/b1 |") == 2 and "max |recorded - now| = 0" in out
    for bad in ("0", "two"):
        with pytest.raises(SystemExit):
            main(["evaluate", "--checkpoint", ckpt, "--protocol-batch", bad])
    assert "not a positive whole number" in capsys.readouterr().err


def test_predict_formats_ply_calibration_and_onnx_backend(run, tmp_path, capsys):
    from depthforge.io.depth import read_depth
    from depthforge.geometry.pointcloud import read_ply

    root = tmp_path / "data"
    img, _ = write_pair(root, "val", "5", h=40, w=60)
    ckpt = str(run / "checkpoints" / "last.ckpt")
    out = tmp_path / "p"
    assert main(["predict", "--checkpoint", ckpt, str(img), "--out", str(out), "--format", "npy", "png16", "pfm",
                 "--ply", "--fx", "50"]) == 0
    d_npy, meta = read_depth(out / "5.npy")
    d_pfm, _ = read_depth(out / "5.pfm")
    assert np.array_equal(d_npy, d_pfm) and meta["intrinsics"]["fx"] == 50.0 and meta["model"] == "baseline"
    pts = read_ply(out / "5.ply")
    assert len(pts) > 0 and np.all(pts[:, 2] > 0)

    csv = tmp_path / "k.csv"  # known distances equal to 2x the prediction: calibration must find scale 2
    csv.write_text("\n".join(f"{x},{y},{2 * d_npy[y, x]}" for x, y in [(3, 4), (50, 30), (20, 10)]))
    out2 = tmp_path / "c"
    assert main(["predict", "--checkpoint", ckpt, str(img), "--out", str(out2), "--calibrate", str(csv)]) == 0
    one_more = f"{7},{8},{2 * d_npy[8, 7]}"
    assert main(["predict", "--checkpoint", ckpt, str(img), "--out", str(tmp_path / "c2"), "--point", one_more,
                 "--point", f"1,1,{2 * d_npy[1, 1]}"]) == 0
    assert read_depth(tmp_path / "c2" / "5.npy")[1]["calibration"]["scale"] == pytest.approx(2.0, rel=1e-4)
    d_cal, meta2 = read_depth(out2 / "5.npy")
    assert meta2["calibration"]["scale"] == pytest.approx(2.0, rel=1e-4)
    np.testing.assert_allclose(d_cal, 2 * d_npy, rtol=1e-4)

    onnx_path = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", ckpt, "--out", str(onnx_path)]) == 0
    assert "max |exported - eager|" in capsys.readouterr().out
    out3 = tmp_path / "o"
    assert main(["predict", "--onnx", str(onnx_path), str(img), "--out", str(out3)]) == 0
    np.testing.assert_allclose(np.load(out3 / "5.npy"), d_npy, atol=1e-4)
    for backend, name in ((["--onnx", str(onnx_path)], "o_ms"), (["--checkpoint", ckpt], "c_ms")):  # any input size
        assert main(["predict", *backend, str(img), "--out", str(tmp_path / name), "--tta-scales", "0.75,1"]) == 0
    ms_onnx, ms_eager = np.load(tmp_path / "o_ms" / "5.npy"), np.load(tmp_path / "c_ms" / "5.npy")
    np.testing.assert_allclose(ms_onnx, ms_eager, atol=1e-4)
    assert not np.allclose(ms_eager, d_npy, atol=1e-3)


def test_video_in_gives_every_frame_out(run, tmp_path):
    pytest.importorskip("av")
    from depthforge.video.frames import read_frames, write_test_video

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(7)]
    video = write_test_video(tmp_path / "clip.mp4", frames)
    out = tmp_path / "v"
    assert main(["predict", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), str(video), "--out",
                 str(out)]) == 0
    assert len(sorted(out.glob("clip_*.npy"))) == 7
    assert sum(1 for _ in read_frames(out / "clip_depth.mp4")) == 7
    assert np.load(out / "clip_000003.npy").shape == (32, 48)


def test_tiled_predict_cli(run, tmp_path):
    root = tmp_path / "data"
    img, _ = write_pair(root, "val", "8", h=96, w=160)
    out = tmp_path / "t"
    assert main(["predict", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), str(img), "--out", str(out),
                 "--tile", "64x96"]) == 0
    tiled = np.load(out / "8.npy")
    assert tiled.shape == (96, 160)
    assert json.loads((out / "8.npy.json").read_text())["tiles"]["window"] == "64x96"
    # Windows of 64x96 at overlap 0.25 start at x = 0, 64 and y = 0, 32: the corner blocks x < 64, y < 32 and
    # x >= 96, y >= 64 lie in one window each, away from every seam. There the tiled depth is the untiled
    # prediction of that window, mapped by the one scale and shift that harmonises it to the coarse pass.
    from depthforge.predict import Predictor
    from depthforge.sources import load_checkpoint
    from depthforge.io import read_rgb

    model, cfg = load_checkpoint(run / "checkpoints" / "last.ckpt")
    predictor = Predictor(model, cfg.data)
    rgb = read_rgb(img)
    raw = predictor.tiled(rgb, (64, 96), 0.25)
    np.testing.assert_allclose(tiled, np.clip(raw, 1e-3, 20.0), atol=1e-5)  # the file: clamped into the valid range
    tiled = raw
    for window, block in (((slice(0, 64), slice(0, 96)), (slice(0, 32), slice(0, 64))),
                          ((slice(32, 96), slice(64, 160)), (slice(32, 64), slice(32, 96)))):
        untiled = predictor(np.ascontiguousarray(rgb[window]))[block].ravel().astype(np.float64)
        got = tiled[window][block].ravel().astype(np.float64)
        assert untiled.std() > 1e-4  # a real image, not a constant map
        scale, shift = np.polyfit(untiled, got, 1)
        residual = got - (scale * untiled + shift)
        assert np.abs(residual).max() < 1e-3 * (np.abs(got).max() + 1e-3), np.abs(residual).max()
        assert scale > 0


def test_ensemble_predicts_the_mean_and_its_card_reruns(tmp_path, capsys):
    from tests.conftest import train_tiny

    # two small models of one architecture, two seeds (the mean is the same code whatever the model)
    a, b = (str(train_tiny(tmp_path / f"seed{seed}", size=(64, 96), extra=[f"train.seed={seed}"])) for seed in (0, 1))
    root = tmp_path / "data"
    write_pair(root, "val", "0", h=40, w=60)
    image = root / "rgb" / "val" / "0.jpeg"
    for name, ckpts in (("a", ["--checkpoint", a]), ("b", ["--checkpoint", b]),
                        ("ab", ["--checkpoint", a, "--checkpoint", b])):
        assert main(["predict", *ckpts, str(image), "--out", str(tmp_path / name)]) == 0
    from depthforge.predict import Predictor
    from depthforge.sources import load_checkpoint

    def raw_prediction(checkpoint):  # the model's own output, unclamped
        model, cfg = load_checkpoint(checkpoint)
        return Predictor(model, cfg.data).predict_file(image)

    ra, rb = raw_prediction(a), raw_prediction(b)
    assert np.abs(ra - rb).max() > 1e-3  # two different models, so the mean is a real test
    for name, raw in (("a", ra), ("b", rb), ("ab", (ra + rb) / 2)):  # files: clamped into the valid range
        np.testing.assert_allclose(np.load(tmp_path / name / "0.npy"), np.clip(raw, 1e-3, 20.0), atol=1e-5)

    card = tmp_path / "ens.json"
    assert main(["evaluate", "--checkpoint", a, b, "--ensemble", "--data", str(root), "--json", str(card)]) == 0
    saved = json.loads(card.read_text())
    assert saved["source"]["checkpoint"] == [a, b] and len(saved["source"]["sha256"]) == 2
    assert "ensemble of 2" in card.with_suffix(".md").read_text()
    capsys.readouterr()
    assert main(["evaluate", "--card", str(card)]) == 0
    assert "max |recorded - now| = 0" in capsys.readouterr().out
    assert main(["evaluate", "--checkpoint", a, "--ensemble"]) == 2
    assert "two or more" in capsys.readouterr().err
