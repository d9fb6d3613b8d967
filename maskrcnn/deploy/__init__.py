"""Deployment: export a model to ONNX (`onnx_export`) and run the export with onnxruntime
(`onnx_runner`). Both import their optional dependencies (onnx, onnxruntime) only when used."""

from .onnx_export import ExportError, export_onnx
from .onnx_runner import OnnxPredictor

__all__ = ["ExportError", "OnnxPredictor", "export_onnx"]
