"""ONNX export of MSINet inference models, verified with onnxruntime, and ONNX files run
as torch modules.

``onnx`` and ``onnxruntime`` are optional: ``pip install "msinet-reid[onnx]"``.
"""
import os
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..atomic import PathLike
from ..models import MSINet
from .inference import InferenceModel

# Opset 17 (ONNX 1.12, 2022) runs on every maintained runtime: onnxruntime >= 1.12,
# TensorRT >= 8.5, OpenVINO >= 2022.3.
OPSET = 17
INPUT_NAME, OUTPUT_NAME = 'images', 'features'


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
    model: MSINet, path: PathLike, height: int = 256, width: int = 128,
    opset: int = OPSET, atol: float = 1e-4,
) -> Path:
    """Write ``model``'s inference model to ``path`` as ONNX and check it with onnxruntime.

    The input ``images`` is ``(batch, 3, height, width)`` with a dynamic batch axis; the
    output ``features`` is ``(batch, 768)``, the eval-mode features. The file is written
    atomically, and only once onnxruntime's features match PyTorch's within ``atol``.

    Example::

        >>> export_onnx(load_trained('msinet', 'model.pth.tar-60'), 'msinet.onnx')
    """
    require_onnxruntime()
    import onnx

    # ONNX has no memory formats; the file does not depend on the device: export on the CPU.
    inference = InferenceModel(model, channels_last=False).cpu()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, suffix='.onnx.part')
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter (opset 17; the dynamo exporter starts at 18) warns
            # that it is deprecated, and that the traced part-head split is fixed: it is,
            # because the image size is fixed.
            warnings.simplefilter('ignore', DeprecationWarning)
            warnings.simplefilter('ignore', torch.jit.TracerWarning)
            torch.onnx.export(
                inference, (torch.randn(2, 3, height, width),), str(tmp), dynamo=False,
                opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: 'batch'}, OUTPUT_NAME: {0: 'batch'}},
            )
        onnx.checker.check_model(str(tmp))
        check_onnx(tmp, inference, torch.randn(3, 3, height, width), atol)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@torch.no_grad()
def check_onnx(path: PathLike, model: torch.nn.Module, images: torch.Tensor,
               atol: float = 1e-4) -> float:
    """Largest difference between onnxruntime's and ``model``'s features; raises above ``atol``."""
    expected = model.eval()(images).numpy()
    got = onnx_session(path).run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0]
    error = float(np.abs(got - expected).max())
    if not error <= atol:
        raise RuntimeError(
            f'the ONNX model at {path} computes features {error:.2e} away from PyTorch '
            f'(tolerance {atol:.0e}); please report this with your torch and onnx versions'
        )
    return error


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
        height, width = self.session.get_inputs()[0].shape[2:]
        self.image_size = (height, width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.session.run([OUTPUT_NAME], {INPUT_NAME: images.cpu().numpy()})[0]
        return torch.from_numpy(features)
