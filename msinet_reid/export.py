"""ONNX export and int8 quantization, now in :mod:`msinet_reid.deploy`: this module keeps
the imports of msinet-reid 0.1 (``from msinet_reid.export import export_onnx``) working."""
from .deploy.onnx_export import OnnxModel, export_onnx
from .deploy.quantize import MIN_COSINE, QuantizationError, QuantizationReport, quantize_onnx

__all__ = ['MIN_COSINE', 'OnnxModel', 'QuantizationError', 'QuantizationReport',
           'export_onnx', 'quantize_onnx']
