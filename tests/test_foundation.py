"""Foundation models through depthforge: transformers (Depth Anything, DPT, ZoeDepth) and Marigold (diffusers) as
depth sources, their output semantics in scoring, fine-tuning, and sharing depthforge models.

No network here: every model is a tiny random one built from a config, saved with ``save_pretrained`` and loaded
through depthforge's real loading path (nothing mocks ``from_pretrained``).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from depthforge.cli import main

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _dinov2():
    from transformers import Dinov2Config

    return Dinov2Config(image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=64, out_features=["stage1", "stage2", "stage3", "stage4"],
                        reshape_hidden_states=False)


def make_depth_anything(folder, metric=False):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    extra = {"depth_estimation_type": "metric", "max_depth": 20} if metric else {}
    model = DepthAnythingForDepthEstimation(DepthAnythingConfig(
        backbone_config=_dinov2(), reassemble_hidden_size=32, patch_size=14, neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16, **extra))
    model.save_pretrained(folder)
    DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    return folder


def make_dpt(folder):
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(1)
    DPTForDepthEstimation(DPTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4,
                                    num_attention_heads=2, intermediate_size=64, neck_hidden_sizes=[8, 16, 32, 32],
                                    fusion_hidden_size=16, backbone_out_indices=[0, 1, 2, 3])).save_pretrained(folder)
    DPTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)  # MiDaS v3: squashed to a square
    return folder


def make_zoedepth(folder):
    from transformers import ZoeDepthConfig, ZoeDepthForDepthEstimation, ZoeDepthImageProcessor

    torch.manual_seed(2)
    ZoeDepthForDepthEstimation(ZoeDepthConfig(
        backbone_config=_dinov2(), backbone_hidden_size=32, patch_size=14, neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16, reassemble_factors=[4, 2, 1, 0.5], bottleneck_features=16, num_relative_features=8,
        bin_embedding_dim=16, num_attractors=[4, 2, 2, 2],
        bin_configurations=[{"n_bins": 16, "min_depth": 0.001, "max_depth": 10.0, "name": "nyu"}])
    ).save_pretrained(folder)
    ZoeDepthImageProcessor(size={"height": 56, "width": 56}, ensure_multiple_of=14).save_pretrained(folder)
    return folder


def make_depth_pro(folder):
    from transformers import DepthProConfig, DepthProForDepthEstimation, DepthProImageProcessor, Dinov2Config

    def vit():
        return Dinov2Config(image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                            intermediate_size=64)

    torch.manual_seed(4)
    DepthProForDepthEstimation(DepthProConfig(
        fusion_hidden_size=16, patch_size=56, intermediate_hook_ids=[3, 1], intermediate_feature_dims=[16, 16],
        scaled_images_ratios=[0.25, 0.5, 1], scaled_images_overlap_ratios=[0.0, 0.5, 0.25],
        scaled_images_feature_dims=[32, 32, 16], use_fov_model=True, num_fov_head_layers=1,
        image_model_config=vit(), patch_model_config=vit(), fov_model_config=vit())).save_pretrained(folder)
    DepthProImageProcessor(size={"height": 224, "width": 224}).save_pretrained(folder)
    return folder


def make_marigold(folder):
    from diffusers import AutoencoderKL, DDIMScheduler, MarigoldDepthPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from depthforge.sources.marigold import save_empty_text_embedding

    torch.manual_seed(3)
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=8,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32)
    vae = AutoencoderKL(block_out_channels=[32, 64], down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4)
    scheduler = DDIMScheduler(prediction_type="v_prediction", timestep_spacing="trailing",
                              beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=32, num_hidden_layers=5, num_attention_heads=4,
                                        intermediate_size=37, vocab_size=1000, bos_token_id=0, eos_token_id=2,
                                        pad_token_id=1))
    # Built modules start in training mode; from_pretrained returns them in eval mode, as a user's pipeline is.
    unet, vae, text = unet.eval(), vae.eval(), text.eval()
    pipe = MarigoldDepthPipeline(unet=unet, vae=vae, scheduler=scheduler, text_encoder=text, tokenizer=None,
                                 prediction_type="depth", scale_invariant=True, shift_invariant=True,
                                 default_denoising_steps=2, default_processing_resolution=64)
    with torch.no_grad():  # the empty prompt's embedding, without a tokenizer download
        pipe.empty_text_embedding = text(torch.zeros(1, 77, dtype=torch.long))[0]
    pipe.save_pretrained(folder)
    save_empty_text_embedding(pipe, folder)
    return folder, pipe


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("hf")
    return {"da": make_depth_anything(base / "da"), "dpt": make_dpt(base / "dpt"),
            "zoe": make_zoedepth(base / "zoe"), "da-metric": make_depth_anything(base / "da-metric", metric=True),
            "depth-pro": make_depth_pro(base / "depth-pro")}


@pytest.fixture()
def photo(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (40, 70, 3), dtype=np.uint8)  # non-square
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    return path, rgb


@pytest.mark.parametrize("name, kind", [("da", "disparity"), ("dpt", "disparity"), ("zoe", "metric"),
                                        ("da-metric", "metric"), ("depth-pro", "metric")])
def test_transformers_models_match_the_pipeline_and_say_what_they_predict(tiny, photo, tmp_path, name, kind):
    from transformers import pipeline

    from depthforge.sources.loading import load_source

    path, rgb = photo
    reference = pipeline("depth-estimation", model=str(tiny[name]))(Image.open(path))["predicted_depth"].numpy()
    loaded = load_source({"model": f"hf:{tiny[name]}"})
    assert loaded.kind == kind
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        ours = loaded.model(x)[0, 0].numpy()
    assert ours.shape == (40, 70)
    np.testing.assert_allclose(ours, reference, atol=1e-4)
    # The command line: the same numbers in the written file, the kind in the sidecar, metres clamped only if metric.
    out = tmp_path / "out"
    assert main(["predict", "--model", f"hf:{tiny[name]}", str(path), "--out", str(out)]) == 0
    written = np.load(out / "photo.npy")
    sidecar = json.loads((out / "photo.npy.json").read_text())
    assert sidecar["kind"] == kind and sidecar["model"] == f"hf:{tiny[name]}"
    if kind == "metric":
        np.testing.assert_allclose(written, np.clip(reference, 1e-3, sidecar["max_depth"]), atol=1e-4)
    else:
        np.testing.assert_allclose(written, reference, atol=1e-4)
        assert "clamped" not in sidecar and sidecar["units"].startswith("disparity")


def test_depth_pro_focal_length_goes_into_the_point_cloud(tiny, photo, tmp_path):
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    path, _ = photo
    processor = AutoImageProcessor.from_pretrained(tiny["depth-pro"])
    model = AutoModelForDepthEstimation.from_pretrained(tiny["depth-pro"])
    with torch.no_grad():  # transformers' own way to the focal length (its pipeline drops it)
        outputs = model(**processor(images=Image.open(path), return_tensors="pt"))
    focal = float(processor.post_process_depth_estimation(outputs, [(40, 70)])[0]["focal_length"])
    out = tmp_path / "out"
    assert main(["predict", "--model", f"hf:{tiny['depth-pro']}", str(path), "--out", str(out), "--ply"]) == 0
    sidecar = json.loads((out / "photo.npy.json").read_text())
    assert sidecar["intrinsics"]["fx"] == pytest.approx(focal, rel=1e-5) == sidecar["focal_px_predicted"]
    from depthforge.geometry.pointcloud import read_ply

    # Every pixel the model meant is a point; clamped ones (a random tiny model has many) are left out and counted.
    assert len(read_ply(out / "photo.ply")) == 40 * 70 - sidecar["points_left_out"] > 0
    given = tmp_path / "given"
    assert main(["predict", "--model", f"hf:{tiny['depth-pro']}", str(path), "--out", str(given), "--fx", "99"]) == 0
    assert json.loads((given / "photo.npy.json").read_text())["intrinsics"]["fx"] == 99  # the user's value wins


def test_a_transformers_source_runs_tiled_and_with_tta(tiny, tmp_path):
    from depthforge.predict import Predictor
    from depthforge.sources.loading import load_source

    rgb = np.random.default_rng(1).integers(0, 255, (96, 160, 3), dtype=np.uint8)
    loaded = load_source({"model": f"hf:{tiny['zoe']}"})
    predictor = Predictor(loaded.model, loaded.cfg.data, flip=True)
    with torch.no_grad():
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
        expected = 0.5 * (loaded.model(x) + loaded.model(x.flip(-1)).flip(-1))[0, 0].numpy()
    np.testing.assert_allclose(predictor(rgb), expected, atol=1e-5)  # flip TTA through the same Predictor
    tiled = Predictor(loaded.model, loaded.cfg.data).tiled(rgb, (48, 80), overlap=0.25, coarse_side=96)
    assert tiled.shape == (96, 160) and np.isfinite(tiled).all()


def test_an_unavailable_hub_model_names_the_repo_and_both_ways_to_provide_it(monkeypatch):
    from depthforge.sources.loading import load_source

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import (an earlier test imported it): without the constant too,
    # each lookup waited for network timeouts (46 s of the suite)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match=r"no-such-org/no-such-depth-model.*HF_HOME.*local-dir.*hf:FOLDER"):
        load_source({"model": "hf:no-such-org/no-such-depth-model"})
    assert main(["predict", "--model", "hf:no-such-org/no-such-depth-model", "x.png", "--out", "o"]) == 2


def test_marigold_matches_its_pipeline_and_writes_its_uncertainty(tmp_path, photo):
    from depthforge.sources.loading import load_source

    folder, pipe = make_marigold(tmp_path / "marigold")
    path, rgb = photo
    # Contiguous, as depthforge's readers give it (the tiny pipeline's result moves with the memory layout).
    x = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255).contiguous()
    loaded = load_source({"model": f"marigold:{folder}", "ensemble_size": 3, "steps": 2, "seed": 7})
    assert loaded.kind == "relative"
    ours = loaded.model(x)
    own = pipe(x, num_inference_steps=2, ensemble_size=3, batch_size=3, output_type="pt", output_uncertainty=True,
               generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(ours, own.prediction, atol=1e-5, rtol=0)
    torch.testing.assert_close(loaded.model.last_uncertainty, own.uncertainty, atol=1e-5, rtol=0)
    other = load_source({"model": f"marigold:{folder}", "ensemble_size": 3, "steps": 2, "seed": 8}).model(x)
    assert not torch.allclose(other, ours)  # the seed is really used
    out = tmp_path / "out"
    assert main(["predict", "--model", f"marigold:{folder}", "--ensemble-size", "3", "--denoise-steps", "2",
                 "--seed", "7", str(path), "--out", str(out)]) == 0
    np.testing.assert_allclose(np.load(out / "photo.npy"), own.prediction[0, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(np.load(out / "photo_uncertainty.npy"), own.uncertainty[0, 0].numpy(), atol=1e-5)
    assert (out / "photo_uncertainty_color.png").is_file()
    # With known distances the affine-invariant output becomes metres.
    assert main(["predict", "--model", f"marigold:{folder}", "--denoise-steps", "2", str(path), "--out",
                 str(tmp_path / "cal"), "--point", "5,5,2.0", "--point", "60,30,4.0", "--point", "30,20,3.0"]) == 0
    assert json.loads((tmp_path / "cal" / "photo.npy.json").read_text())["units"] == "metres"
    assert not (tmp_path / "cal" / "photo_uncertainty.npy").exists()  # an ensemble of 1 has no spread


def test_a_disparity_source_is_aligned_in_disparity_space_and_a_metric_one_is_not():
    from depthforge.evaluation import get_protocol
    from depthforge.evaluation.evaluator import Evaluator
    from depthforge.sources.loading import protocol_for

    gt = torch.linspace(1.0, 9.0, 40 * 60).reshape(1, 1, 40, 60)
    disparity = 3.0 / gt + 0.5  # what a MiDaS-like model returns for this scene: affine in 1/depth
    standard = get_protocol("standard", 10.0)
    scored, why = protocol_for(standard, "disparity")
    assert scored.alignment == "disparity" and "disparity" in why
    ev = Evaluator(scored)
    ev.process(disparity, gt)
    assert ev.compute()["rmse"] < 1e-3  # inverted correctly: exact depth back
    wrong = Evaluator(protocol_for(standard, "relative")[0])  # fitted as depth instead: a clear error remains
    wrong.process(disparity, gt)
    assert wrong.compute()["rmse"] > 0.3
    assert protocol_for(standard, "metric") == (standard, None)
    explicit = get_protocol("standard", 10.0, alignment="median")
    assert protocol_for(explicit, "disparity")[0].alignment == "median"  # a chosen alignment is kept


def test_eval_cards_record_the_kind_and_the_alignment(tiny, tmp_path):
    from tests.conftest import write_pair

    data = tmp_path / "DepthEstimationUnreal"
    for i in range(3):
        write_pair(data, "val", str(i), seed=i, depth=np.linspace(1, 9, 32 * 48, dtype=np.float32).reshape(32, 48))
    cards = tmp_path / "cards.json"
    assert main(["evaluate", "--model", f"hf:{tiny['da']}", "--model", f"hf:{tiny['zoe']}", "--data", str(data),
                 "--split", "val", "--protocol", "standard", "--max-depth", "10", "--json", str(cards)]) == 0
    da, zoe = json.loads(cards.read_text())
    assert da["source_kind"] == "disparity" and da["protocol"]["alignment"] == "disparity"
    assert "aligned" in da["alignment_note"]
    assert zoe["source_kind"] == "metric" and zoe["protocol"]["alignment"] == "none" and "alignment_note" not in zoe
    assert main(["evaluate", "--model", f"hf:{tiny['da']}", "--protocol", "standard"]) == 2  # no data of its own


TRAIN = ["data.synthetic.num_train=16", "data.synthetic.num_val=4", "data.synthetic.height=42",
         "data.synthetic.width=56", "data.batch_size=4", "train.progress_bar=false", "train.num_previews=0",
         "train.log_every=1", "loss.terms={silog: 1.0, l1: 0.1}", "optim.name=adamw", "optim.lr=2e-3",
         "optim.scheduler=none", "data.max_depth=20", "train.epochs=100"]


def test_fine_tuning_depth_anything_lowers_the_loss_resumes_and_reloads_offline(tiny, tmp_path):
    import shutil

    from depthforge.sources import load_checkpoint

    src = tmp_path / "da-metric"
    shutil.copytree(tiny["da-metric"], src)
    from safetensors.torch import load_file

    start = load_file(src / "model.safetensors")
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--max-steps", "30", "model.name=hf", f"model.kwargs.repo={src}",
                 "model.kwargs.frozen_stages=1", "optim.encoder_lr_mult=0.5", *TRAIN]) == 0
    with open(run / "metrics.csv") as f:
        losses = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(losses) == 30 and np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 30 and "hf_config" in ckpt["depthforge"]["config"]["model"]["kwargs"]
    trained = {k[len("model.model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.model.")}
    frozen, moving = "backbone.embeddings.patch_embeddings.projection.weight", "backbone.encoder.layer.0.mlp.fc1.weight"
    assert torch.equal(trained[frozen], start[frozen]) and not torch.equal(trained[moving], start[moving])
    shutil.rmtree(src)  # the model's folder is gone: the checkpoint alone must rebuild it
    model, cfg = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert cfg.model.name == "hf" and model.kind == "metric"
    for key, value in model.model.state_dict().items():
        assert torch.equal(value, trained[key]), key
    with torch.no_grad():
        out = model(torch.rand(1, 3, 42, 56))
    assert out.shape == (1, 1, 42, 56) and torch.isfinite(out).all()
    assert main(["train", "--resume", str(run), "train.max_steps=33"]) == 0
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 33


def test_frozen_backbone_stages_stay_fixed(tiny):
    from depthforge.engine.optim import param_groups
    from depthforge.models import create_model

    model = create_model("hf", repo=str(tiny["da-metric"]), frozen_stages=2)
    groups = model.stages()
    assert all(not p.requires_grad for g in groups[:2] for p in g) and all(p.requires_grad for p in groups[2][:1])
    named = {g["name"]: g for g in param_groups(model, 1e-3, 0.1)}
    assert named["encoder"]["lr"] == pytest.approx(1e-4)
    backbone = {id(p) for p in model.model.backbone.parameters()}
    assert {id(p) for p in named["encoder"]["params"]} == backbone
    assert not backbone & {id(p) for p in named["decoder"]["params"]}
    assert len(model.state_dict()) == len(dict(model.model.state_dict()))  # the backbone is stored once


def test_two_gloo_processes_fine_tune_one_step(tiny, tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "depthforge.cli", "train", f"--out={run}", "--max-steps", "1",
                           "model.name=hf", f"model.kwargs.repo={tiny['da-metric']}", *TRAIN, "train.devices=2",
                           "train.strategy=ddp", "train.device=cpu"], env=env, capture_output=True, text=True,
                          timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "Starting with 2 processes" in output and "gloo" in output
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 1


def test_shared_folder_round_trip_model_card_and_upload(tmp_path, monkeypatch):
    import depthforge
    from depthforge.config import load_config
    from depthforge.sources.hub import init_from_pretrained, load_pretrained, save_pretrained
    from depthforge.models import model_from_config

    cfg = load_config(overrides=["model.name=unet_resnet18", "data.max_depth=10"])
    torch.manual_seed(0)
    model = model_from_config(cfg.model, cfg.data.max_depth).eval()
    card = {"metrics": {"rmse": 1.234, "ssim": 0.5, "abs_rel": 0.1, "delta1": 0.9}, "n": 7,
            "protocol": {"name": "standard", "max_depth": 10.0, "alignment": "none"},
            "data": {"name": "folder", "split": "test"}}
    folder = save_pretrained(model, cfg, tmp_path / "shared", [card])
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json", "README.md"}
    readme = (folder / "README.md").read_text()
    assert "library_name: depthforge" in readme and "| folder | test | standard (cap 10.0 m" in readme
    assert "1.234" in readme
    x = torch.rand(1, 3, 40, 56)
    again, cfg2 = load_pretrained(folder)
    loaded = depthforge.load(str(folder))
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), atol=0, rtol=0)
        torch.testing.assert_close(loaded.model(x), model(x), atol=0, rtol=0)
    assert cfg2.model.name == "unet_resnet18" and loaded.kind == "metric"
    fresh = model_from_config(cfg.model, cfg.data.max_depth).eval()  # model.pretrained=hf:FOLDER starts from it
    init_from_pretrained(fresh, str(folder))
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), atol=0, rtol=0)
    # Uploading is the only network step: that call alone is replaced.
    calls = []
    from huggingface_hub import HfApi
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw["folder_path"])))
    from depthforge.sources.hub import push
    push(folder, "me/my-depth")
    assert calls == [("create", "me/my-depth"), ("upload", str(folder))]


def test_push_command_writes_a_loadable_folder_with_the_cards_metrics(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--max-steps", "2", "model.name=unet_resnet18", *TRAIN[:7]]) == 0
    card = tmp_path / "card.json"
    assert main(["evaluate", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--json", str(card)]) == 0
    rmse = json.loads(card.read_text())["metrics"]["rmse"]
    out = tmp_path / "shared"
    assert main(["push", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--out", str(out), "--card",
                 str(card)]) == 0
    assert f"{rmse:.3f}" in (out / "README.md").read_text()
    again = tmp_path / "again.json"
    assert main(["evaluate", "--model", f"depthforge:{out}", "--json", str(again)]) == 0
    assert json.loads(again.read_text())["metrics"]["rmse"] == pytest.approx(rmse, rel=1e-6)
