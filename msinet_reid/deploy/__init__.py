"""Deployment: the inference model, ONNX export, int8 quantization and feature extraction.

- :mod:`.inference`: ``InferenceModel`` (BatchNorm folded, training-only parts removed)
  and ``load_trained`` (a registered model from a checkpoint);
- :mod:`.onnx_export`: ``export_onnx``, checked with onnxruntime, and ``OnnxModel``, an
  ONNX file run as a torch module;
- :mod:`.quantize`: ``quantize_onnx``, static int8 calibrated on crops and checked
  against fp32;
- :mod:`.rewrites`: the exact graph rewrites that make the int8 file faster;
- :mod:`.compiled`: ``compile_model``, ``torch.compile`` per batch-size bucket and CUDA
  graphs, for any torchreid model;
- :mod:`.extract`: features of a folder of images.

``onnx`` and ``onnxruntime`` are optional (``pip install "msinet-reid[onnx]"``); the
modules that need them import them when called.

Example::

    >>> from msinet_reid.deploy import InferenceModel, export_onnx, load_trained
    >>> model = load_trained('msinet', 'log/msinet/model/model.pth.tar-60')
    >>> export_onnx(model, 'msinet.onnx', height=256, width=128)
"""
from .compiled import CompiledModel, CompileError, bucket_sizes, compile_model
from .extract import extract_image_features, find_images, image_batches
from .inference import InferenceModel, fold_batchnorm, load_trained
from .onnx_export import OnnxModel, export_onnx
from .quantize import MIN_COSINE, QuantizationError, QuantizationReport, quantize_onnx

__all__ = ['CompileError', 'CompiledModel', 'InferenceModel', 'MIN_COSINE', 'OnnxModel',
           'QuantizationError', 'QuantizationReport', 'bucket_sizes', 'compile_model',
           'export_onnx', 'extract_image_features', 'find_images', 'fold_batchnorm',
           'image_batches', 'load_trained', 'quantize_onnx']
