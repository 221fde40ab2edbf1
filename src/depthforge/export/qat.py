"""Quantisation-aware fine-tuning with NNCF (OpenVINO's compression framework), and its INT8 export.

A trained model is prepared once (`prepare_qat`): every batch norm that directly follows a convolution is
folded into it (their running statistics frozen, as deployment folds them anyway), then NNCF inserts fake
quantisers (int8 weights per channel, int8 activations) whose ranges start from calibration images and are then
learnt with the weights (``depthforge train ... model.init_from=RUN/checkpoints/last.ckpt train.qat=true``). The
quantisers' layout travels in the checkpoint (`qat_state`), so a QAT checkpoint loads, resumes and exports
without its run (`restore_qat`); `qdq_export` makes ``torch.onnx.export`` write them as
QuantizeLinear / DequantizeLinear pairs, an INT8 ONNX file that ONNX Runtime and OpenVINO both execute.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence

import torch
from torch import nn

log = logging.getLogger(__name__)
FOLD_TOL = 1e-3  # largest |folded - original| (relative to the output's range) that still counts as the same model


class QatError(RuntimeError):
    """A model NNCF cannot prepare, or a QAT state that does not fit the model."""


def _nncf():
    try:
        import nncf
    except ImportError:
        raise QatError("quantisation-aware training needs NNCF: pip install 'depthforge[qat]'") from None
    return nncf


def batchnorm_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """``(convolution, batch norm)`` module names where the batch norm's input is the convolution's output, found
    by running ``example`` through ``model`` once."""
    outputs: dict[int, tuple[str, torch.Tensor]] = {}
    pairs: list[tuple[str, str]] = []
    hooks = []

    def after_conv(name):
        def hook(_module, _inputs, output):
            outputs[id(output)] = (name, output)  # the tensor is kept so that its id is not reused meanwhile
        return hook

    def before_bn(name):
        def hook(_module, inputs):
            source = outputs.get(id(inputs[0]))
            if source is not None and source[1] is inputs[0]:
                pairs.append((source[0], name))
        return hook

    for name, module in model.named_modules():
        if type(module) is nn.Conv2d:
            hooks.append(module.register_forward_hook(after_conv(name)))
        elif isinstance(module, nn.BatchNorm2d):
            hooks.append(module.register_forward_pre_hook(before_bn(name)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return list(dict.fromkeys(pairs))


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> int:
    """Fold every batch norm that directly follows a convolution into that convolution, in place (eval-mode
    statistics, as deployment runs it); a batch norm with a fused activation (timm's ``BatchNormAct2d``) leaves its
    activation behind. Returns how many were folded; raises `QatError` if the model then computes something
    else (a convolution's output that another layer also reads)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        before = model(example)
    pairs = batchnorm_pairs(model, example)
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        _set(model, conv_name, torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn))
        rest = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None)) if m is not None]
        _set(model, bn_name, nn.Sequential(*rest) if rest else nn.Identity())
    with torch.no_grad():
        after = model(example)
    scale = float(before.abs().max().clamp_min(1e-6))
    if float((after - before).abs().max()) > FOLD_TOL * scale:
        raise QatError(f"folding {len(pairs)} batch norms changed the model's output by "
                       f"{float((after - before).abs().max()):.3g}: a convolution's raw output is read elsewhere too")
    model.train(was_training)
    return len(pairs)


def prepare_qat(model: nn.Module, images: Sequence[torch.Tensor], example: torch.Tensor) -> nn.Module:
    """``model`` with batch norms folded and NNCF's fake quantisers inserted, their ranges calibrated on
    ``images`` (model-ready batches). The model is changed in place and returned."""
    nncf = _nncf()
    folded = fold_batchnorm(model, example)
    was_training = model.training
    model.eval()
    quantized = nncf.quantize(model, nncf.Dataset(list(images)), subset_size=len(images),
                              fast_bias_correction=True)
    quantized.train(was_training)
    log.info("QAT: %d batch norms folded, %d fake quantisers calibrated on %d batches", folded,
             len(quantizers(quantized)), len(images))
    return quantized


def qat_example(data_cfg) -> torch.Tensor:
    """A random input at the model's training geometry (``data_cfg``, a DataConfig), to trace a QAT model with."""
    from depthforge.data.transforms import model_input

    generator = torch.Generator().manual_seed(0)
    return model_input(torch.rand(1, 3, 96, 128, generator=generator), data_cfg)


def quantizers(model: nn.Module) -> list[nn.Module]:
    """The NNCF fake quantisers inside ``model`` (none for an ordinary model)."""
    if "nncf" not in sys.modules:  # no model holds NNCF quantisers before NNCF is imported: skip its slow import
        return []
    from nncf.torch.quantization.layers import BaseQuantizer

    return [m for m in model.modules() if isinstance(m, BaseQuantizer)]


def qat_state(model: nn.Module) -> dict | None:
    """What rebuilds the quantisers of a QAT model (`restore_qat`), or None for an ordinary model."""
    if not quantizers(model):
        return None
    # Through JSON: NNCF's enums become the plain strings a weights_only checkpoint may hold (and it reads back).
    return json.loads(json.dumps(_nncf().torch.get_config(model)))


def restore_qat(model: nn.Module, state: dict, example: torch.Tensor) -> nn.Module:
    """An ordinary model of the QAT run's architecture, made the QAT model again (folded, quantisers placed) so
    that the QAT checkpoint's state dict loads into it."""
    nncf = _nncf()
    fold_batchnorm(model, example)
    return nncf.torch.load_from_config(model, state)


def qdq_export(model: nn.Module) -> int:
    """Make ``torch.onnx.export`` write the model's fake quantisers as ONNX QuantizeLinear / DequantizeLinear
    pairs (ONNX Runtime and OpenVINO read them) instead of OpenVINO's own FakeQuantize op; returns how many."""
    from nncf.torch.quantization.layers import QuantizerExportMode

    found = quantizers(model)
    for q in found:
        q.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    return len(found)
