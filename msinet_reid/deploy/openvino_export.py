"""OpenVINO export of MSINet inference models (IR: ``.xml`` + ``.bin``), fp32 and int8,
checked with OpenVINO's CPU runtime, and IR files run as torch modules.

``openvino`` (and ``nncf`` for int8) are optional: ``pip install "msinet-reid[openvino]"``.
OpenVINO runs a model on the CPU in bf16 by default where the CPU has bf16 instructions
(AVX-512 BF16, AMX); :class:`OpenVinoModel` runs f32 unless asked for ``bf16``, which is
checked separately at export (cosine similarity).
"""
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Union

import torch

from ..atomic import PathLike
from .checks import check_cosine, check_features
from .extract import image_batches
from .inference import feature_model
from .onnx_export import INPUT_NAME, OUTPUT_NAME
from .quantize import MIN_COSINE, QuantizationReport, checked_int8, split_calibration
from .torchscript_export import quiet_tracing

INSTALL = 'pip install "msinet-reid[openvino]"'
PRECISIONS = ('f32', 'bf16')
# bf16 keeps 8 bits of mantissa: features stay close in direction, not within 1e-4.
MIN_BF16_COSINE = 0.999


def require_openvino(nncf: bool = False):
    """Import openvino (and nncf, for int8), or say how to install them."""
    try:
        import openvino
        if nncf:
            import nncf  # noqa: F401
    except ImportError as error:
        raise ImportError(f'OpenVINO export and inference need the optional packages '
                          f'openvino and nncf ({error.name} is missing): {INSTALL}') from error
    return openvino


def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 natively here (AVX-512 BF16 or AMX)."""
    core = require_openvino().Core()
    return 'BF16' in core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES')


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f'unknown OpenVINO precision {precision!r}; choose one of '
                         f'{", ".join(PRECISIONS)}')
    if precision == 'bf16' and not cpu_has_bf16():
        raise ValueError('this CPU has no bf16 instructions (AVX-512 BF16 or AMX), so '
                         'OpenVINO would not run bf16 here: use --precision f32')


class OpenVinoModel(torch.nn.Module):
    """An OpenVINO IR feature model run on the CPU, callable like the PyTorch model.

    ``precision`` is the inference precision: ``f32`` (features within 1e-4 of PyTorch's)
    or ``bf16`` (CPUs with bf16 instructions; faster, cosine similarity >= 0.999).

    Example::

        >>> model = OpenVinoModel('msinet.xml', precision='f32')
        >>> model(torch.randn(2, 3, *model.image_size)).shape
        torch.Size([2, 768])
    """

    def __init__(self, path: PathLike, precision: str = 'f32',
                 threads: Optional[int] = None) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f'no OpenVINO model at {self.path}')
        ov = require_openvino()
        _check_precision(precision)
        config = {'INFERENCE_PRECISION_HINT': precision}
        if threads:
            config['INFERENCE_NUM_THREADS'] = threads
        core = ov.Core()
        try:
            network = core.read_model(str(self.path))
        except RuntimeError as error:
            raise ValueError(f'cannot load {self.path} as an OpenVINO model ({error}); export '
                             f'it again with `msinet-reid export --format openvino`') from error
        shape = network.input(0).get_partial_shape()
        self.image_size = (shape[2].get_length(), shape[3].get_length())
        self.precision = precision
        self.compiled = core.compile_model(network, 'CPU', config)
        self.request = self.compiled.create_infer_request()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.request.infer({0: images.cpu().numpy()})[self.compiled.output(0)]
        return torch.from_numpy(features.copy())  # the request reuses its output buffer


def save_ir(path: PathLike, write: Callable[[Path], None]) -> Path:
    """``atomic_write`` for the two files of an IR: ``write`` fills a staging ``.xml``
    (and its ``.bin``); the ``.bin`` is moved in place first, so that an ``.xml`` is
    never seen without its weights."""
    path = Path(path)
    if path.suffix != '.xml':
        raise ValueError(f'an OpenVINO model is an .xml file (and its .bin); got {path}')
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f'.{path.name}.') as staging:
        tmp = Path(staging) / path.name
        write(tmp)
        os.replace(tmp.with_suffix('.bin'), path.with_suffix('.bin'))
        os.replace(tmp, path)
    return path


def convert(module: torch.nn.Module, height: int, width: int):
    """``module`` converted by OpenVINO's PyTorch frontend, with a dynamic batch axis and
    the input and output named as in the ONNX export."""
    ov = require_openvino()
    with quiet_tracing():  # the converter traces the module
        network = ov.convert_model(module.eval(), input=[(-1, 3, height, width)],
                                   example_input=torch.randn(2, 3, height, width))
    network.input(0).get_tensor().set_names({INPUT_NAME})
    network.output(0).get_tensor().set_names({OUTPUT_NAME})
    return network


def export_openvino(model: torch.nn.Module, path: PathLike, height: int = 256, width: int = 128,
                    atol: float = 1e-4) -> Path:
    """Write ``model``'s inference model to ``path`` (``.xml`` + ``.bin``) as OpenVINO IR.

    Converted by OpenVINO's own converter, fp32 weights, dynamic batch axis; written only
    once OpenVINO's f32 features match PyTorch's within ``atol`` (max abs) and, on CPUs
    with bf16, its bf16 features reach a cosine similarity of 0.999.

    Example::

        >>> export_openvino(load_trained('msinet', 'model.pth.tar-60'), 'msinet.xml')
    """
    ov = require_openvino()
    inference = feature_model(model, channels_last=False).cpu()
    images = torch.randn(3, 3, height, width)

    def write(tmp: Path) -> None:
        with torch.no_grad():
            ov.save_model(convert(inference, height, width), str(tmp), compress_to_fp16=False)
        check_features(OpenVinoModel(tmp, 'f32'), inference, images, atol)
        if cpu_has_bf16():
            check_cosine(OpenVinoModel(tmp, 'bf16'), inference, images, MIN_BF16_COSINE)

    return save_ir(path, write)


class _CalibrationImages:
    """One image per item, read again at each pass: NNCF's statistics are per sample."""

    def __init__(self, paths: List[Path], image_size) -> None:
        self.paths, self.image_size = paths, image_size

    def __iter__(self) -> Iterator:
        for batch in image_batches(self.paths, self.image_size, 1, workers=0):
            yield batch.numpy()

    def __len__(self) -> int:
        return len(self.paths)


def quantize_openvino(
    fp32_path: PathLike, out_path: PathLike, images: Union[PathLike, Sequence[PathLike]],
    check: Union[PathLike, Sequence[PathLike], None] = None, num_calibration: int = 256,
    num_check: int = 64, min_cosine: float = MIN_COSINE, batch_size: int = 32, seed: int = 0,
) -> QuantizationReport:
    """Write an int8 copy of the OpenVINO IR at ``fp32_path`` to ``out_path`` (``.xml``).

    NNCF's post-training quantization (OpenVINO's own: its performance preset, min-max
    ranges on the calibration crops, fast bias correction), calibrated and checked as
    :func:`~msinet_reid.deploy.quantize_onnx` does: the same draw of calibration and
    held-out crops (:func:`~msinet_reid.deploy.quantize.split_calibration`), and nothing
    written below a mean cosine similarity of ``min_cosine`` to the fp32 features.

    Example::

        >>> export_openvino(model, 'msinet.xml')
        >>> print(quantize_openvino('msinet.xml', 'msinet.int8.xml', 'crops/'))
        msinet.int8.xml: int8, nncf calibration on 256 images; cosine similarity ...
    """
    ov = require_openvino(nncf=True)
    import nncf

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if out_path.resolve() == fp32_path.resolve():
        raise ValueError(f'the int8 model would overwrite the fp32 model at {fp32_path}; '
                         f'choose another output path')
    fp32 = OpenVinoModel(fp32_path, 'f32')
    calibration, held_out = split_calibration(images, check, num_calibration, num_check, seed)

    def quantize(tmp: Path) -> None:
        dataset = nncf.Dataset(_CalibrationImages(calibration, fp32.image_size))
        int8 = nncf.quantize(ov.Core().read_model(str(fp32_path)), dataset,
                             subset_size=len(calibration))
        ov.save_model(int8, str(tmp), compress_to_fp16=False)

    similarity = checked_int8(out_path, quantize, OpenVinoModel, fp32, held_out, min_cosine,
                              batch_size, write=save_ir)
    return QuantizationReport(out_path, 'nncf', len(calibration), len(held_out),
                              float(similarity.mean()), float(similarity.min()))
