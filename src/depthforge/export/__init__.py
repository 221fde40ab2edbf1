"""Exported models: ONNX and torch.export files with a parity check, their CPU runtimes (ONNX Runtime, OpenVINO)
and INT8 quantisation (`quantize`)."""

from depthforge.export.onnx import (BACKENDS, OnnxModel, OpenVINOModel, ParityError, check_parity, export_checked,
                                    export_onnx, export_torch, onnx_runner, parity_limits, remove_export)

__all__ = ["BACKENDS", "OnnxModel", "OpenVINOModel", "ParityError", "check_parity", "export_checked", "export_onnx",
           "export_torch", "onnx_runner", "parity_limits", "remove_export"]
