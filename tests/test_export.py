"""ONNX parity for every exportable registered model; torch.export for a model without shape arithmetic."""

import pytest
import torch

from depthforge.inference.export import OnnxModel, check_parity, export_onnx, export_torch
from depthforge.models import create_model, list_models

# timm's ViT resizes its position embedding with antialiased bicubic interpolation, which ONNX has no operator for.
NOT_ONNX = {"dpt_vit_tiny": "aten::_upsample_bicubic2d_aa has no ONNX export"}


@pytest.mark.parametrize("name", [n for n in list_models() if n not in NOT_ONNX])
def test_onnx_parity(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name).eval()
    path = export_onnx(model, tmp_path / f"{name}.onnx")
    assert check_parity(model, OnnxModel(path), tol=1e-4) < 1e-4  # two sizes, one not a multiple of 32


def test_dpt_onnx_limit_is_real(tmp_path):
    with pytest.raises(Exception, match="bicubic"):
        export_onnx(create_model("dpt_vit_tiny").eval(), tmp_path / "d.onnx")


def test_torch_export_parity(tmp_path):
    model = create_model("unet_resnet18").eval()
    program = torch.export.load(str(export_torch(model, tmp_path / "m.pt2"))).module()
    assert check_parity(model, program, sizes=((160, 256), (96, 128)), tol=1e-5) < 1e-5


def test_onnx_parity_with_global_context(tmp_path):
    torch.manual_seed(0)
    model = create_model("unet_efficientnet_lite0", widths=(64, 32, 16), context_layers=1, context_dim=64,
                         context_heads=4).eval()
    torch.nn.init.normal_(model.decoder.context.proj_out.weight, std=0.1)  # not the identity it starts as
    path = export_onnx(model, tmp_path / "ctx.onnx")
    assert check_parity(model, OnnxModel(path), tol=1e-4) < 1e-4  # attention over a variable number of cells
