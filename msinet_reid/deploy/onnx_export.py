"""ONNX export of MSINet inference models, verified with onnxruntime, and ONNX files run
as torch modules.

``onnx`` and ``onnxruntime`` are optional: ``pip install "msinet-reid[onnx]"``.
"""
import copy
import warnings
from pathlib import Path
from typing import Optional

import torch

from ..atomic import PathLike, atomic_write
from .checks import check_cosine, check_features
from .inference import feature_model

# Opset 17 (ONNX 1.12, 2022) runs on every maintained runtime: onnxruntime >= 1.12,
# TensorRT >= 8.5, OpenVINO >= 2022.3.
OPSET = 17
INPUT_NAME, OUTPUT_NAME = 'images', 'features'
# float16 keeps 11 bits of mantissa: the features keep their direction, not 1e-4.
MIN_FP16_COSINE = 0.999


def require_onnxruntime():
    """Import onnx and onnxruntime, or say how to install them."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as error:
        raise ImportError(
            f'ONNX export and inference need the optional packages onnx and onnxruntime '
            f'({error.name} is missing): pip install "msinet-reid[onnx]"'
        ) from error
    return onnxruntime


def onnx_session(path: PathLike, threads: Optional[int] = None):
    """An onnxruntime CPU session for the model at ``path``; ``threads`` caps its threads."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def export_onnx(
    model: torch.nn.Module, path: PathLike, height: int = 256, width: int = 128,
    opset: int = OPSET, atol: float = 1e-4, fp16: bool = False,
) -> Path:
    """Write ``model``'s inference model to ``path`` as ONNX and check it with onnxruntime.

    The input ``images`` is ``(batch, 3, height, width)`` with a dynamic batch axis; the
    output ``features`` is ``(batch, 768)``, the eval-mode features. The file is written
    atomically, and only once onnxruntime's features match PyTorch's within ``atol``.
    With ``fp16``, weights, activations, input and output are float16 (for GPU runtimes
    and TensorRT's ONNX parser); onnxruntime's CPU features must then reach a cosine
    similarity of 0.999 to PyTorch's fp32 features.

    Example::

        >>> export_onnx(load_trained('msinet', 'model.pth.tar-60'), 'msinet.onnx')
        >>> export_onnx(load_trained('msinet', 'model.pth.tar-60'), 'msinet.fp16.onnx',
        ...             fp16=True)
    """
    require_onnxruntime()
    import onnx

    # ONNX has no memory formats; the file does not depend on the device: export on the CPU.
    inference = feature_model(model, channels_last=False).cpu()
    dtype = torch.float16 if fp16 else torch.float32
    images = torch.randn(3, 3, height, width)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            # The TorchScript exporter (opset 17; the dynamo exporter starts at 18) warns
            # that it is deprecated, and that the traced part-head split is fixed: it is,
            # because the image size is fixed.
            warnings.simplefilter('ignore', DeprecationWarning)
            warnings.simplefilter('ignore', torch.jit.TracerWarning)
            torch.onnx.export(
                copy.deepcopy(inference).to(dtype),
                (torch.randn(2, 3, height, width, dtype=dtype),), str(tmp), dynamo=False,
                opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: 'batch'}, OUTPUT_NAME: {0: 'batch'}},
            )
        onnx.checker.check_model(str(tmp))
        if fp16:
            check_cosine(OnnxModel(tmp), inference, images, MIN_FP16_COSINE)
        else:
            check_features(OnnxModel(tmp), inference, images, atol)

    return atomic_write(path, write)


def check_onnx(path: PathLike, model: torch.nn.Module, images: torch.Tensor,
               atol: float = 1e-4) -> float:
    """Largest difference between onnxruntime's and ``model``'s features; raises above ``atol``."""
    return check_features(OnnxModel(path), model, images, atol)


class OnnxModel(torch.nn.Module):
    """An ONNX feature model run by onnxruntime, callable like the PyTorch model.

    Code written for PyTorch models (``msinet_reid.evaluation``, torchreid-style loops)
    runs exported files unchanged: ``model(images)`` returns the features as a CPU tensor.

    Example::

        >>> model = OnnxModel('msinet.int8.onnx')
        >>> model(torch.randn(2, 3, *model.image_size)).shape
        torch.Size([2, 768])
    """

    def __init__(self, path: PathLike, threads: Optional[int] = None) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f'no ONNX model at {self.path}')
        ort = require_onnxruntime()
        errors = ort.capi.onnxruntime_pybind11_state
        try:
            self.session = onnx_session(self.path, threads)
        except (errors.InvalidProtobuf, errors.InvalidGraph, errors.Fail) as error:
            raise ValueError(
                f'cannot load {self.path} as an ONNX model: it is truncated or not an ONNX '
                f'file ({error}). Export it again with `msinet-reid export`.') from error
        image = self.session.get_inputs()[0]
        self.image_size = tuple(image.shape[2:])
        # an fp16 export takes and returns float16; callers give and get float32
        self.dtype = torch.float16 if image.type == 'tensor(float16)' else torch.float32

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        inputs = {INPUT_NAME: images.to(self.dtype).cpu().numpy()}
        return torch.from_numpy(self.session.run([OUTPUT_NAME], inputs)[0]).float()
