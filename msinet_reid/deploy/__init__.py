"""Deployment: the inference model, exports to ONNX, OpenVINO and TorchScript, int8
quantization and feature extraction.

- :mod:`.inference`: ``InferenceModel`` (BatchNorm folded, training-only parts removed)
  and ``load_trained`` (a registered model from a checkpoint);
- :mod:`.runtimes`: ``export_model``, ``quantize_model`` and ``load_exported``, one entry
  point over the formats below, the runtime picked by the file's suffix;
- :mod:`.onnx_export`: ``export_onnx`` (fp32 or fp16), checked with onnxruntime, and
  ``OnnxModel``, an ONNX file run as a torch module;
- :mod:`.openvino_export`: ``export_openvino`` (IR), ``quantize_openvino`` (NNCF int8)
  and ``OpenVinoModel`` (f32 or bf16 inference);
- :mod:`.torchscript_export`: ``export_torchscript`` and ``load_torchscript``;
- :mod:`.checks`: the feature checks every export passes before it is written;
- :mod:`.quantize`: ``quantize_onnx``, static int8 calibrated on crops and checked
  against fp32 (the guard that OpenVINO's int8 shares);
- :mod:`.rewrites`: the exact graph rewrites that make the int8 file faster;
- :mod:`.compiled`: ``compile_model``, ``torch.compile`` per batch-size bucket and CUDA
  graphs, for any torchreid model;
- :mod:`.extract`: features of a folder of images.

``onnx`` and ``onnxruntime`` (``pip install "msinet-reid[onnx]"``), ``openvino`` and
``nncf`` (``pip install "msinet-reid[openvino]"``) are optional; the modules that need
them import them when called.

Example::

    >>> from msinet_reid.deploy import InferenceModel, export_onnx, load_trained
    >>> model = load_trained('msinet', 'log/msinet/model/model.pth.tar-60')
    >>> export_onnx(model, 'msinet.onnx', height=256, width=128)
"""
from .compiled import CompiledModel, CompileError, bucket_sizes, compile_model
from .extract import extract_image_features, find_images, image_batches
from .inference import InferenceModel, fold_batchnorm, load_trained
from .onnx_export import OnnxModel, export_onnx
from .openvino_export import OpenVinoModel, export_openvino, quantize_openvino
from .quantize import MIN_COSINE, QuantizationError, QuantizationReport, quantize_onnx
from .runtimes import export_model, load_exported, quantize_model
from .torchscript_export import export_torchscript, load_torchscript

__all__ = ['CompileError', 'CompiledModel', 'InferenceModel', 'MIN_COSINE', 'OnnxModel',
           'OpenVinoModel', 'QuantizationError', 'QuantizationReport', 'bucket_sizes',
           'compile_model', 'export_model', 'export_onnx', 'export_openvino',
           'export_torchscript', 'extract_image_features', 'find_images', 'fold_batchnorm',
           'image_batches', 'load_exported', 'load_torchscript', 'load_trained',
           'quantize_model', 'quantize_onnx', 'quantize_openvino']
