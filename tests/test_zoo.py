"""Every registered model: odd sizes, backward, no NaN, state-dict round trip."""

import pytest
import torch

from depthforge.engine.optim import build_optimizer
from depthforge.config import OptimConfig
from depthforge.models import create_model, list_models
from depthforge.models.decoders import UNetDecoder
from depthforge.models.decoders.blocks import GlobalContext


@pytest.mark.parametrize("name", list_models())
def test_registered_model(name, tmp_path):
    torch.manual_seed(0)
    if name == "hf":  # a transformers model needs its folder: a tiny random Depth Anything (no network here)
        from tests.test_foundation import make_depth_anything

        model = create_model(name, repo=str(make_depth_anything(tmp_path / "da", metric=True)))
    else:
        model = create_model(name)
    assert model.name == name
    model.train()
    out = model(torch.rand(2, 3, 144, 256))
    assert out.shape == (2, 1, 144, 256)
    out.mean().backward()
    # Depth Anything has parameters its forward never uses (the masked-image-modelling token, the first fusion
    # layer's skip branch, which has no skip input): transformers' architecture, not a depthforge bug.
    unused = ("mask_token", "fusion_stage.layers.0.residual_layer1") if name == "hf" else ()
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad and not any(u in n for u in unused)]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    x = torch.rand(1, 3, 150, 250)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 1, 150, 250) and torch.isfinite(y).all()
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    # hf rebuilds from the configs a checkpoint stores (offline), the others from their name.
    clone = create_model(name, **(model.checkpoint_kwargs() if name == "hf" else {})).eval()
    clone.load_state_dict(torch.load(path, weights_only=True))
    with torch.no_grad():
        assert torch.equal(clone(x), y)


def test_sigmoid_head_is_bounded_and_bins_head_in_range():
    x = torch.rand(1, 3, 64, 96)
    for name in ("unet_resnet18", "bins_efficientnet_lite0"):
        y = create_model(name, max_depth=7.0).eval()(x)
        assert 0 <= y.min() and y.max() <= 7.0


def test_freeze_stages_and_frozen_batchnorm_stays_in_eval():
    model = create_model("unet_resnet18", frozen_stages=2)
    enc = model.encoder
    groups = enc.stage_parameters()
    assert all(not p.requires_grad for g in groups[:2] for p in g)
    assert all(p.requires_grad for g in groups[2:] for p in g)
    model.train()
    bns = enc.stage_batchnorms()
    assert bns[0] and all(not m.training for g in bns[:2] for m in g)
    assert all(m.training for g in bns[2:] for m in g)
    # Running statistics of frozen stages do not move in a training forward pass.
    before = bns[1][0].running_mean.clone()
    model(torch.rand(2, 3, 64, 64) * 5)
    assert torch.equal(bns[1][0].running_mean, before)
    enc.freeze(0)
    model.train()
    assert all(p.requires_grad for p in enc.parameters()) and all(m.training for g in bns for m in g)


def test_encoder_learning_rate_multiplier():
    model = create_model("unet_resnet18")
    opt = build_optimizer(OptimConfig(name="adamw", lr=1e-3, encoder_lr_mult=0.1), model)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"decoder": 1e-3, "encoder": pytest.approx(1e-4)}
    n_enc = sum(p.numel() for g in opt.param_groups if g["name"] == "encoder" for p in g["params"])
    assert n_enc == sum(p.numel() for p in model.encoder.parameters())


def test_preprocessing_travels_with_encoder():
    lite = create_model("unet_efficientnet_lite0")
    res = create_model("unet_resnet18")
    assert torch.allclose(lite.mean.flatten(), torch.tensor([0.5, 0.5, 0.5]))
    assert torch.allclose(res.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))


def test_unet_decoder_can_stop_at_stride_two():
    full = create_model("unet_efficientnet_lite0")
    short = create_model("unet_efficientnet_lite0", widths=(128, 64, 32, 16)).eval()
    assert full.decoder.final_stride == 1 and short.decoder.final_stride == 2
    x = torch.rand(1, 3, 160, 256)
    with torch.no_grad():
        features = short.decoder(short.encoder((x - short.mean) / short.std))
        assert features.shape[-2:] == (80, 128)
        y = short(x[..., :150, :250])
    assert y.shape == (1, 1, 150, 250) and torch.isfinite(y).all()
    assert sum(p.numel() for p in short.decoder.parameters()) < sum(p.numel() for p in full.decoder.parameters())
    with pytest.raises(ValueError, match="1 to 5 widths"):
        create_model("unet_efficientnet_lite0", widths=(64,) * 6)


def test_unet_merges_levels_that_share_a_stride():
    # A dilated encoder (timm output_stride=16): the deepest two levels are both at stride 16.
    decoder = UNetDecoder([4, 8, 16], [4, 8, 8], widths=(12, 10, 6, 5))
    assert decoder.skip_index == [1, 0, -1, -1] and decoder.final_stride == 1
    assert decoder.blocks[0][0][0].in_channels == 16 + 8  # deepest + its same-stride neighbour, no upsampling
    out = decoder([torch.rand(1, 4, 16, 24), torch.rand(1, 8, 8, 12), torch.rand(1, 16, 8, 12)])
    assert out.shape == (1, 5, 64, 96)
    with pytest.raises(ValueError, match="1 to 4 widths"):
        UNetDecoder([4, 8, 16], [4, 8, 8], widths=(8,) * 5)


def test_dilated_encoder_keeps_the_weights_of_its_undilated_original():
    torch.manual_seed(0)
    plain = create_model("unet_efficientnet_lite0", widths=(64, 32, 16, 16, 16)).eval()
    dilated = create_model("unet_efficientnet_lite0", widths=(64, 32, 16, 16, 16),
                           encoder_kwargs={"output_stride": 16}).eval()
    assert plain.encoder.strides[-1] == 32 and dilated.encoder.strides[-2:] == [16, 16]
    dilated.load_state_dict(plain.state_dict())  # same names and shapes: model.init_from works across the two
    deepest = []
    hook = dilated.encoder.register_forward_hook(lambda _, __, out: deepest.append(tuple(out[-1].shape[-2:])))
    x = torch.rand(1, 3, 150, 250)
    with torch.no_grad():
        y, y_plain = dilated(x), plain(x)
    hook.remove()
    assert deepest == [(10, 16)]  # 160x256 padded input at stride 16, not 5x8
    assert y.shape == (1, 1, 150, 250) and torch.isfinite(y).all()
    assert not torch.allclose(y, y_plain)  # the dilation changes what the same weights compute


def test_input_scale_runs_the_network_on_an_enlarged_copy():
    torch.manual_seed(0)
    model = create_model("unet_efficientnet_lite0", widths=(64, 32, 16), input_scale=1.5).eval()
    seen = []
    hook = model.encoder.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[-2:])))
    x = torch.rand(2, 3, 144, 256)
    with torch.no_grad():
        y = model(x)
        # Same weights at scale 1 see the native size; the enlarged copy gives a different (but finite) answer.
        model.input_scale = 1.0
        y1 = model(x)
    hook.remove()
    assert seen == [(224, 384), (160, 256)]  # 216x384 and 144x256, each padded to a multiple of 32
    assert y.shape == y1.shape == (2, 1, 144, 256) and torch.isfinite(y).all()
    assert not torch.allclose(y, y1)
    with pytest.raises(ValueError, match="input_scale"):
        create_model("unet_efficientnet_lite0", input_scale=0)


def test_scale_jitter_varies_the_training_scale_only():
    torch.manual_seed(0)
    model = create_model("unet_efficientnet_lite0", widths=(64, 32, 16), input_scale=1.5, scale_jitter=0.2)
    widths = []
    hook = model.encoder.register_forward_pre_hook(lambda _, args: widths.append(args[0].shape[-1]))
    x = torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        outs = [model(x) for _ in range(8)]  # training mode: a scale in 1.5 * [0.8, 1.2] per call
        model.eval()
        model(x), model(x)
    hook.remove()
    train_widths, eval_widths = widths[:8], widths[8:]
    assert all(o.shape == (1, 1, 64, 128) for o in outs)
    assert len(set(train_widths)) > 1 and all(160 <= w <= 256 for w in train_widths)  # 128 * [1.2, 1.8], padded
    assert eval_widths == [192, 192]  # exactly input_scale: 128 * 1.5
    with pytest.raises(ValueError, match="scale_jitter"):
        create_model("unet_efficientnet_lite0", scale_jitter=1.0)


def test_unet_image_skip_feeds_the_image_to_the_stride_one_stage():
    torch.manual_seed(0)
    model = create_model("unet_efficientnet_lite0", widths=(64, 32, 16, 16, 16), image_skip=True).eval()
    decoder = model.decoder
    assert decoder.final_stride == 1 and decoder.skip_index[-1] == 0
    assert decoder.blocks[-1][0][0].in_channels == 16 + 3  # previous width + RGB
    x = torch.rand(1, 3, 150, 250)
    with torch.no_grad():
        y = model(x)
        features = model.encoder(torch.rand(1, 3, 160, 256))
        image = torch.zeros(1, 3, 160, 256)
        # Same encoder features, different stride-1 image: only the image skip can change the output.
        a = model.decoder([image, *features])
        b = model.decoder([image + 1, *features])
    assert y.shape == (1, 1, 150, 250) and torch.isfinite(y).all()
    assert a.shape[-2:] == image.shape[-2:] and not torch.allclose(a, b)


def test_image_skip_needs_a_decoder_down_to_stride_one():
    with pytest.raises(ValueError, match="image_skip needs a U-Net that ends at stride 1"):
        create_model("unet_efficientnet_lite0", widths=(64, 32, 16), image_skip=True)


def test_global_context_mixes_every_cell_and_starts_as_identity():
    torch.manual_seed(0)
    block = GlobalContext(32, dim=16, layers=1, heads=4).eval()
    x = torch.rand(2, 32, 5, 8)
    with torch.no_grad():
        assert torch.equal(block(x), x)  # zero-initialised output projection
        torch.nn.init.normal_(block.proj_out.weight)
        y = x.clone()
        y[:, :, 0, 0] += 1.0  # one corner cell
        delta = (block(y) - y) - (block(x) - x)
    assert delta[:, :, 4, 7].abs().max() > 1e-4  # the opposite corner sees it (a 3x3 conv would not)
    with pytest.raises(ValueError, match="multiple of context heads"):
        GlobalContext(32, dim=18, heads=4)


def test_unet_context_layers_load_a_checkpoint_without_them_and_train():
    torch.manual_seed(0)
    plain = create_model("unet_efficientnet_lite0", widths=(64, 32, 16, 16, 16)).eval()
    model = create_model("unet_efficientnet_lite0", widths=(64, 32, 16, 16, 16), context_layers=2,
                         context_dim=64, context_heads=4).eval()
    result = model.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys and all(k.startswith("decoder.context.") for k in result.missing_keys)
    x = torch.rand(1, 3, 150, 250)
    with torch.no_grad():
        assert torch.allclose(model(x), plain(x), atol=1e-6)
    model.train()
    model(torch.rand(2, 3, 144, 256)).mean().backward()
    grad = model.decoder.context.proj_out.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
