"""Quantisation-aware fine-tuning (train.qat=true, NNCF) and the INT8 files it exports for both runtimes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("nncf", reason="the qat extra (pip install 'depthforge[qat]')")

def scene() -> torch.Tensor:
    """A rendered room at the tiny runs' size: depth varies across it (random noise would give a flat map)."""
    from depthforge.data import SyntheticScenes

    return torch.from_numpy(SyntheticScenes(1, 48, 64, seed=5).get_color(0)).permute(2, 0, 1)[None].float() / 255


SYNTHETIC = ["data.synthetic.num_train=8", "data.synthetic.num_val=4", "data.synthetic.height=48",
             "data.synthetic.width=64", "data.batch_size=4", "train.num_previews=0", "train.progress_bar=false"]


def test_batch_norms_fold_into_the_convolution_they_follow_and_nothing_else():
    from timm.layers import BatchNormAct2d

    from depthforge.export.qat import QatError, batchnorm_pairs, fold_batchnorm

    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self, skip: bool):
            super().__init__()
            # timm's batch norm with its activation inside (EfficientNet-Lite's): the activation must stay
            self.a, self.bn_a = nn.Conv2d(3, 8, 3, padding=1), BatchNormAct2d(8, act_layer=nn.ReLU)
            self.b, self.bn_b = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
            self.skip = skip

        def forward(self, x):
            x = self.bn_a(self.a(x))
            y = self.b(x)
            return self.bn_b(y) + (y if self.skip else x)  # skip: b's raw output is read twice

    for skip in (False, True):
        net = Net(skip)
        for bn in (net.bn_a, net.bn_b):  # statistics of a trained model, not the identity
            bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
        x = torch.rand(2, 3, 16, 16)
        assert batchnorm_pairs(net.eval(), x) == [("a", "bn_a"), ("b", "bn_b")]
        before = net(x)
        if skip:
            with pytest.raises(QatError, match="read elsewhere"):
                fold_batchnorm(net, x)
            continue
        assert fold_batchnorm(net, x) == 2
        assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        assert isinstance(net.bn_a[-1], nn.ReLU)
        assert torch.allclose(net(x), before, atol=1e-5)  # the same function, without the batch norms
        assert net.b.bias is not None  # the batch norm's shift moved into the convolution


@pytest.fixture(scope="module", autouse=True)
def reference_kernels():
    """NNCF's fake quantisers in its own torch operations (what NNCF runs where it cannot compile), not the C++
    extension it compiles on first use: that build takes 42 s of CPU in each new virtual environment (about 20 s of
    the suite's first run on two cores). The claims here (batch norms folded, checkpoints that load and resume,
    exports that match the fine-tuned model) are depthforge's and hold with either kernel; the same arithmetic
    (clip, scale, round) either way."""
    from types import SimpleNamespace

    from nncf.torch.quantization.extensions import QuantizedFunctionsCPU
    from nncf.torch.quantization.reference import torch_executor

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(QuantizedFunctionsCPU, "_loaded_namespace", SimpleNamespace(
            Quantize_forward=torch_executor.forward, Quantize_backward=torch_executor.backward))
        yield


@pytest.fixture(scope="module")
def qat_run(tmp_path_factory, tiny40, reference_kernels):
    from depthforge.cli import main
    from tests.conftest import NARROW, shared_tiny

    root = tmp_path_factory.mktemp("qat")
    fp32 = shared_tiny(tiny40, tmp_path_factory, "qat-fp32")
    assert main(["train", "--out", str(root / "qat"), "--max-steps", "6", "model.name=unet_resnet18", *NARROW,
                 f"model.init_from={fp32}", "train.qat=true", "train.qat_calibration=4", "optim.lr=1e-4",
                 *SYNTHETIC]) == 0
    return fp32, root / "qat" / "checkpoints" / "last.ckpt"


def test_qat_checkpoint_loads_as_the_fine_tuned_int8_model(qat_run):
    from depthforge.export.qat import prepare_qat, quantizers
    from depthforge.sources import load_checkpoint

    fp32_ckpt, qat_ckpt = qat_run
    ckpt = torch.load(qat_ckpt, map_location="cpu", weights_only=True)
    assert ckpt["depthforge"]["qat"]["compression_state"]  # the quantisers' layout travels in the checkpoint
    model, cfg = load_checkpoint(qat_ckpt)
    assert cfg.train.qat and len(quantizers(model)) > 10
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # folded
    fp32, _ = load_checkpoint(fp32_ckpt)
    x = scene()
    # Before fine-tuning, the prepared model computes the fp32 model's depth up to INT8 rounding: its ranges cover
    # every calibration image (a dark one first: ranges from it alone would clip the scene)
    fresh = prepare_qat(load_checkpoint(fp32_ckpt)[0], [x * 0.1, x], x)
    with torch.no_grad():
        f, start = fp32(x), fresh(x)
    spread = float(f.max() - f.min())
    # (measured: mean 6 % of the 0.36 m spread, correlation 0.5; ranges from the dark image alone: 56 %, -0.05)
    assert spread > 0.3 and 0 < float((start - f).abs().mean()) < 0.1 * spread
    assert np.corrcoef(start.ravel(), f.ravel())[0, 1] > 0.3
    # The ranges were then trained: the checkpoint's scales are not the ones the run's calibration gave
    from depthforge.data import build_dataset
    from depthforge.data.transforms import model_input

    images = build_dataset(cfg.data, cfg.data.train_split, train=False)
    batches = [model_input(images[i]["image"][None], cfg.data) for i in range(cfg.train.qat_calibration)]
    calibrated = prepare_qat(load_checkpoint(fp32_ckpt)[0], batches, batches[0])
    trained = {k: v for k, v in model.state_dict().items() if k.endswith("scale")}
    initial = {k: v for k, v in calibrated.state_dict().items() if k.endswith("scale")}
    assert trained.keys() == initial.keys() and trained
    assert any(not torch.allclose(trained[k], initial[k]) for k in trained)


def test_qat_exports_int8_onnx_and_openvino_ir_that_match_the_fine_tuned_model(qat_run, tmp_path, capsys):
    import onnx

    from depthforge.cli import main
    from depthforge.export.onnx import OnnxModel, OpenVINOModel
    from depthforge.sources import load_checkpoint

    _, qat_ckpt = qat_run
    model, cfg = load_checkpoint(qat_ckpt)
    assert main(["export", "--checkpoint", str(qat_ckpt), "--out", str(tmp_path / "m")]) == 0
    assert main(["export", "--checkpoint", str(qat_ckpt), "--out", str(tmp_path / "m"), "--format", "openvino"]) == 0
    printed = capsys.readouterr().out
    assert f"{tmp_path / 'm.onnx'}: INT8 (QAT)" in printed and f"{tmp_path / 'm.xml'}: INT8 (QAT)" in printed
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    assert "BatchNormalization" not in ops
    x = scene()
    with torch.no_grad():
        eager = model(x)
    spread = float(eager.max() - eager.min())
    for runner in (OnnxModel(tmp_path / "m.onnx"), OpenVINOModel(tmp_path / "m.xml")):
        assert runner.config.model.name == "unet_resnet18"  # the config travels inside both files
        diff = (runner(x) - eager).abs()
        assert float(diff.mean()) < 0.01 * spread and float(diff.max()) < 0.02 * cfg.data.max_depth
    with pytest.raises(ValueError, match="--format openvino"):
        OpenVINOModel(tmp_path / "m.onnx")  # OpenVINO takes the IR, not the QDQ file
    import depthforge  # the IR is a model like any other: load() picks OpenVINO for a .xml file

    image = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    predicted = depthforge.load(tmp_path / "m.xml").predict(image).depth
    ov_depth = OpenVINOModel(tmp_path / "m.xml")(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    assert np.abs(predicted - ov_depth[0, 0].numpy()).max() < 1e-4
    assert main(["export", "--checkpoint", str(qat_ckpt), "--out", str(tmp_path / "x"), "--quantize", "int8"]) == 2
    assert "drop --quantize" in capsys.readouterr().err


def test_a_qat_run_resumes_with_its_quantisers(qat_run, tmp_path):
    import shutil

    from depthforge.cli import main
    from depthforge.sources import load_checkpoint

    _, qat_ckpt = qat_run
    run = tmp_path / "run"
    shutil.copytree(qat_ckpt.parent.parent, run)
    before = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    assert main(["train", "--resume", str(run), "train.max_steps=8", "train.epochs=10"]) == 0
    after = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert after["global_step"] == 8 > before and after["depthforge"]["qat"]
    old, new = load_checkpoint(qat_ckpt)[0].state_dict(), load_checkpoint(run / "checkpoints" / "last.ckpt")[0].state_dict()
    assert old.keys() == new.keys()  # the same quantisers, placed again on resume
    assert any(not torch.equal(old[k], new[k]) for k in old if k.endswith("scale"))  # and trained further
