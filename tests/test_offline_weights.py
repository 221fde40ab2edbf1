"""The EfficientNet-Lite key mapping is proven by ImageNet classification of a real cat photo."""

import pytest
import torch
import torch.nn.functional as F

from depthforge.models import PretrainedWeightsError, create_model
from depthforge.models.offline_weights import load_offline
from depthforge.models.timm_import import import_timm

timm = import_timm()  # without wandb (2 s of every worker's collection otherwise)

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "tf_efficientnet_lite2"])
def test_mapped_classifier_sees_a_cat(name):
    skimage_data = pytest.importorskip("skimage.data")  # only this test needs the cat photo
    classifier = timm.create_model(name, pretrained=False)
    classifier.load_state_dict(load_offline(name))  # strict: every key mapped
    classifier.eval()
    image = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float()[None] / 255
    size = classifier.pretrained_cfg["input_size"][1:]
    image = F.interpolate(image, size=size, mode="bilinear", antialias=True)
    mean = torch.tensor(classifier.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(classifier.pretrained_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        top5 = classifier((image - mean) / std).topk(5).indices[0].tolist()
    assert CAT_CLASSES & set(top5), top5
    assert top5[0] in CAT_CLASSES


def test_depth_model_encoder_gets_the_imagenet_weights():
    model = create_model("unet_efficientnet_lite0", pretrained="imagenet")
    state = load_offline("tf_efficientnet_lite0")
    assert torch.equal(model.encoder.model.conv_stem.weight, state["conv_stem.weight"])
    assert torch.equal(model.encoder.model.blocks[6][0].conv_pwl.weight, state["blocks.6.0.conv_pwl.weight"])


def test_hub_weights_fail_clearly_offline(monkeypatch):
    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real(*args, **kwargs)

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(PretrainedWeightsError, match="offline.*local weights file"):
        create_model("unet_resnet18", pretrained="imagenet")


def test_local_timm_weights_file(tmp_path):
    classifier = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "r18.safetensors"
    from safetensors.torch import save_file
    save_file(classifier.state_dict(), str(path))
    model = create_model("unet_resnet18", pretrained=str(path))
    assert torch.equal(model.encoder.model.layer3[0].conv1.weight, classifier.layer3[0].conv1.weight)
