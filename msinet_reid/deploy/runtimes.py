"""One entry point per exported format: write a model in it, quantize it, and load a
file back as a torch module, the runtime picked by the file's suffix.

- ``onnx`` (``.onnx``): onnxruntime; fp32, fp16 (``fp16=True``) and int8;
- ``openvino`` (``.xml`` and its ``.bin``): OpenVINO; fp32 run in f32 or bf16, and int8
  (NNCF);
- ``torchscript`` (``.pt``): ``torch.jit``; fp32.

Example::

    >>> path = export_model(load_trained('msinet', 'model.pth.tar-60'), 'msinet.xml',
    ...                     'openvino')
    >>> model, image_size = load_exported(path, precision='f32')
"""
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

from torch import nn

from ..atomic import PathLike
from .quantize import DEFAULT_CALIBRATION, MIN_COSINE, QuantizationReport

SUFFIXES = {'onnx': '.onnx', 'openvino': '.xml', 'torchscript': '.pt'}
FORMATS = tuple(SUFFIXES)
INT8_FORMATS = ('onnx', 'openvino')


def format_of(path: PathLike) -> Optional[str]:
    """The exported format a file's suffix names, or None (a PyTorch checkpoint)."""
    return {suffix: name for name, suffix in SUFFIXES.items()}.get(Path(path).suffix)


def require(format: str, int8: bool = False) -> None:
    """Import the optional packages ``format`` needs, or say which extra installs them."""
    if format == 'onnx':
        from .onnx_export import require_onnxruntime
        require_onnxruntime()
    elif format == 'openvino':
        from .openvino_export import require_openvino
        require_openvino(nncf=int8)
    elif format != 'torchscript':
        raise ValueError(f'unknown format {format!r}; choose one of {", ".join(FORMATS)}')


def export_model(model: nn.Module, path: PathLike, format: str, height: int = 256,
                 width: int = 128, fp16: bool = False, **options) -> Path:
    """Write ``model``'s features (an MSINet's :class:`InferenceModel`, or any torchreid
    model in eval mode) to ``path`` in ``format``, checked on its runtime.

    ``path`` must end in the format's suffix; ``fp16`` is for ``onnx``; ``options`` go to
    the format's exporter (``opset`` for ONNX).

    Example::

        >>> export_model(model, 'msinet.pt', 'torchscript', height=256, width=128)
    """
    require(format)
    path = Path(path)
    if path.suffix != SUFFIXES[format]:
        raise ValueError(f'{format} models are {SUFFIXES[format]} files; got {path}: name it '
                         f'{path.with_suffix(SUFFIXES[format]).name}')
    if fp16 and format != 'onnx':
        raise ValueError(f'fp16 applies to ONNX exports, not {format}: OpenVINO chooses bf16 '
                         f'at run time (--precision bf16)')
    if format == 'onnx':
        from .onnx_export import export_onnx
        return export_onnx(model, path, height, width, fp16=fp16, **options)
    if format == 'openvino':
        from .openvino_export import export_openvino
        return export_openvino(model, path, height, width, **options)
    from .torchscript_export import export_torchscript
    return export_torchscript(model, path, height, width, **options)


def int8_path(path: PathLike) -> Path:
    """Where the int8 copy of an exported file goes by default: ``m.onnx`` -> ``m.int8.onnx``."""
    path = Path(path)
    return path.with_suffix('.int8' + path.suffix)


def quantize_model(
    fp32_path: PathLike, out_path: PathLike, images: Union[PathLike, Sequence[PathLike]],
    check: Union[PathLike, Sequence[PathLike], None] = None,
    method: Optional[str] = None, min_cosine: float = MIN_COSINE, **options,
) -> QuantizationReport:
    """int8 copy of an exported fp32 file, on its runtime's post-training quantization
    (onnxruntime's static QDQ, or NNCF for OpenVINO), behind the same cosine guard.

    ``method`` picks onnxruntime's calibration (``minmax``, ``percentile``, ``entropy``);
    NNCF has its own.

    Example::

        >>> print(quantize_model('msinet.xml', 'msinet.int8.xml', 'crops/'))
    """
    format = format_of(fp32_path)
    if format not in INT8_FORMATS:
        raise ValueError(f'int8 quantization applies to {" and ".join(INT8_FORMATS)} '
                         f'exports; got {fp32_path}')
    require(format, int8=True)
    if format == 'onnx':
        from .quantize import quantize_onnx
        return quantize_onnx(fp32_path, out_path, images, method or DEFAULT_CALIBRATION,
                             check, min_cosine=min_cosine, **options)
    if method is not None:
        raise ValueError('OpenVINO int8 calibrates with NNCF, which has no calibration '
                         'method to choose: leave the calibration method out')
    from .openvino_export import quantize_openvino
    return quantize_openvino(fp32_path, out_path, images, check, min_cosine=min_cosine,
                             **options)


def load_exported(path: PathLike, precision: str = 'f32',
                  threads: Optional[int] = None) -> Tuple[nn.Module, Tuple[int, int]]:
    """An exported file as a torch module on its runtime (CPU), and its crop size.

    ``.onnx`` runs in onnxruntime, ``.xml`` in OpenVINO (``precision`` ``f32`` or, on
    CPUs with bf16, ``bf16``), ``.pt`` in ``torch.jit``; each returns float32 features.

    Example::

        >>> model, (height, width) = load_exported('msinet.int8.xml')
    """
    format = format_of(path)
    if format is None:
        raise ValueError(f'{path} is no exported model: they end in '
                         f'{", ".join(SUFFIXES.values())}')
    if precision != 'f32' and format != 'openvino':
        raise ValueError(f'--precision {precision} applies to OpenVINO (.xml) models; '
                         f'{path} runs as it was exported')
    require(format)
    if format == 'onnx':
        from .onnx_export import OnnxModel
        model = OnnxModel(path, threads)
    elif format == 'openvino':
        from .openvino_export import OpenVinoModel
        model = OpenVinoModel(path, precision, threads)
    else:
        from .torchscript_export import load_torchscript
        return load_torchscript(path)
    return model, model.image_size
