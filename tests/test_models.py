import urllib.error

import pytest
import torch
import torchvision

from depthforge.models import PretrainedWeightsError, create_model, list_models


@pytest.fixture(scope="module")
def baseline():
    torch.manual_seed(0)
    return create_model("baseline")


def test_baseline_parameter_counts(baseline):
    total = sum(p.numel() for p in baseline.parameters())
    trainable = sum(p.numel() for p in baseline.parameters() if p.requires_grad)
    assert (total, trainable) == (43_041_665, 34_498_369)
    # Exactly layer4 of the encoder trains.
    trainable_encoder = {n.split(".")[1] for n, p in baseline.encoder.named_parameters(prefix="e") if p.requires_grad}
    assert trainable_encoder == {"layer4"}
    convs = [m for m in baseline.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (2048, 512, (4, 4), (2, 2), (1, 1)), (512, 256, (4, 4), (2, 2), (1, 1)), (256, 128, (4, 4), (2, 2), (1, 1)),
        (128, 64, (4, 4), (2, 2), (1, 1)), (64, 1, (4, 4), (2, 2), (1, 1))]


@torch.no_grad()
def test_baseline_output_sizes(baseline):
    baseline.eval()
    assert baseline(torch.rand(1, 3, 224, 224)).shape == (1, 1, 224, 224)
    # 144 is not a multiple of 32: the bare network returns 160x256 (layer4 is 5x8, times 32) ...
    raw = baseline.decoder(baseline.encoder(torch.rand(1, 3, 144, 256)))
    assert raw.shape == (1, 1, 160, 256)
    # ... so DepthModel pads the input to 160x256 (replicate) and crops the output back to 144x256.
    assert baseline(torch.rand(2, 3, 144, 256)).shape == (2, 1, 144, 256)


def test_local_weights_file_is_loaded(tmp_path):
    reference = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    model = create_model("baseline", pretrained=str(path))
    assert torch.equal(model.encoder.stem[0].weight, reference.conv1.weight)
    assert torch.equal(model.encoder.layer4[2].conv3.weight, reference.layer4[2].conv3.weight)


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match="r18.pth.*same architecture"):
        create_model("baseline", pretrained=str(path))
    with pytest.raises(PretrainedWeightsError, match="not found"):
        create_model("baseline", pretrained=str(tmp_path / "missing.pth"))


def test_imagenet_offline_error_names_alternatives(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.raises(PretrainedWeightsError, match="offline.*local weights file.*'none'"):
        create_model("baseline", pretrained="imagenet")


def test_registry():
    assert "baseline" in list_models()
    with pytest.raises(KeyError, match="available"):
        create_model("nope")


def test_a_timm_model_is_built_without_importing_wandb_which_stays_importable():
    # timm imports wandb (2.9 s of a 12 s two-step training here) for an option depthforge never uses
    import subprocess
    import sys

    code = ("import sys; from depthforge.models import create_model; create_model('unet_resnet18'); "
            "assert 'wandb' not in sys.modules, 'wandb was imported'; import wandb, timm.utils.summary; "
            "print(wandb.__name__, sys.modules['wandb'] is wandb)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["wandb", "True"], done.stderr[-2000:]
