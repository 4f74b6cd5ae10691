"""int8 quantization of exported ONNX models: static, calibrated on crops, rewritten for
onnxruntime's int8 kernels (:mod:`.rewrites`), and refused unless its features stay
within a cosine similarity of the fp32 model's.

``onnx`` and ``onnxruntime`` are optional: ``pip install "msinet-reid[onnx]"``.
"""
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from tqdm import tqdm

from ..atomic import PathLike, atomic_write
from .checks import feature_cosine
from .extract import find_images, image_batches
from .onnx_export import INPUT_NAME, OnnxModel, require_onnxruntime
from .rewrites import int8_friendly, shapes_from_quantized

CALIBRATION_METHODS = ('minmax', 'percentile', 'entropy')
# Measured on the demo's persons and on synthetic vehicles (benchmarks/quantization.py,
# README "INT8 quantization"): the three methods rank alike; minmax calibrates fastest.
DEFAULT_CALIBRATION = 'minmax'
# Mean cosine similarity to the fp32 features, on held-out crops, below which the int8 model
# is refused. Every calibration measured reached 0.9948 and lost at most 0.15 points of mAP;
# calibrating on flat grey crops gave 0.87 and 6.5% mAP (README "INT8 quantization").
MIN_COSINE = 0.99


class QuantizationError(RuntimeError):
    """Calibration failed, or the int8 model's features are too far from the fp32 model's;
    nothing was written."""


@dataclass(frozen=True)
class QuantizationReport:
    """How an int8 model was calibrated, and how close its features are to fp32's."""

    path: Path
    method: str
    calibration_images: int
    check_images: int
    mean_cosine: float
    min_cosine: float

    def __str__(self) -> str:
        return (f'{self.path}: int8, {self.method} calibration on {self.calibration_images} '
                f'images; cosine similarity to the fp32 features on {self.check_images} '
                f'held-out images: mean {self.mean_cosine:.4f}, min {self.min_cosine:.4f}')


class _CalibrationBatches:
    """onnxruntime's ``CalibrationDataReader`` protocol over batches of images."""

    def __init__(self, batches: Iterable[torch.Tensor]) -> None:
        self.batches = iter(batches)

    def get_next(self) -> Optional[dict]:
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: batch.numpy()}


def _shuffled_images(images: Union[PathLike, Sequence[PathLike]],
                     rng: np.random.Generator) -> List[Path]:
    """The images of a folder (searched recursively) or of a list of files, shuffled."""
    if isinstance(images, (str, os.PathLike)):
        paths = find_images(images)
    else:
        paths = [Path(p) for p in images]
    return [paths[i] for i in rng.permutation(len(paths))]


def split_calibration(
    images: Union[PathLike, Sequence[PathLike]],
    check: Union[PathLike, Sequence[PathLike], None] = None,
    num_calibration: int = 256, num_check: int = 64, seed: int = 0,
) -> Tuple[List[Path], List[Path]]:
    """Random picks of crops to calibrate on, and of held-out crops to check the result.

    The held-out crops come from ``check`` or, without it, from ``images``: then at most
    ``num_check`` and a fifth of them (at least one) are kept out of calibration.
    """
    rng = np.random.default_rng(seed)
    paths = _shuffled_images(images, rng)
    if check is None:
        if len(paths) < 2:
            raise ValueError(f'calibration needs at least 2 images (some are held out to '
                             f'check the int8 model), got {len(paths)}')
        held = min(num_check, max(1, len(paths) // 5))
        held_out, paths = paths[:held], paths[held:]
    else:
        held_out = _shuffled_images(check, rng)[:num_check]
    if not paths or not held_out:
        raise ValueError('calibration needs at least one image to calibrate on and one '
                         'to check the int8 model')
    return paths[:num_calibration], held_out


def _quantize_static(fp32_path: Path, out_path: Path, batches: Iterable[torch.Tensor],
                     method: str) -> None:
    """onnxruntime's QDQ quantization of the graph at ``fp32_path``, calibrated on
    ``batches``, written to ``out_path`` after the int8 rewrites."""
    import onnx
    from onnxruntime import quantization

    methods = {'minmax': quantization.CalibrationMethod.MinMax,
               'percentile': quantization.CalibrationMethod.Percentile,
               'entropy': quantization.CalibrationMethod.Entropy}
    with tempfile.TemporaryDirectory() as folder:
        # onnxruntime's graph optimisations first: they drop the Identity nodes left by the
        # folded BatchNorms, behind which half of MSINet's convolutions would stay fp32
        # between Dequantize and Quantize nodes (slower than the fp32 model).
        prepared = Path(folder) / 'prepared.onnx'
        quantization.quant_pre_process(str(fp32_path), str(prepared))
        graph = onnx.load(str(prepared))
        int8_friendly(graph)
        onnx.save(graph, str(prepared))
        try:
            quantization.quantize_static(
                str(prepared), str(out_path), _CalibrationBatches(batches),
                quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                calibrate_method=methods[method],
            )
        except ValueError as error:
            if 'Too many bins for data range' not in str(error):
                raise
            # percentile calibration histograms each activation over its own range
            raise QuantizationError(
                f'{method} calibration failed: an activation takes all but the same value on '
                f'every calibration crop, and onnxruntime cannot spread its histogram over so '
                f'narrow a range (numpy: {error}). An untrained model\'s attention is that '
                f'uniform. Nothing was written; use minmax or entropy calibration.'
            ) from error
    graph = onnx.load(str(out_path))
    shapes_from_quantized(graph)
    onnx.save(graph, str(out_path))


def quantize_onnx(
    fp32_path: PathLike, out_path: PathLike, images: Union[PathLike, Sequence[PathLike]],
    method: str = DEFAULT_CALIBRATION, check: Union[PathLike, Sequence[PathLike], None] = None,
    num_calibration: int = 256, num_check: int = 64, min_cosine: float = MIN_COSINE,
    batch_size: int = 32, seed: int = 0,
) -> QuantizationReport:
    """Write an int8 copy of the ONNX feature model at ``fp32_path`` to ``out_path``.

    onnxruntime's static quantization: QDQ format, int8 weights per output channel, uint8
    activations whose ranges are calibrated on crops preprocessed as extraction does
    (``images``: a folder, searched recursively, or a list of image files; up to
    ``num_calibration`` of them, drawn at random with ``seed``). ``method`` is one of
    ``minmax``, ``percentile`` and ``entropy``. Before anything is written, the int8
    features are compared with the fp32 features on held-out crops (``check``, or up to
    ``num_check`` crops of ``images`` kept out of calibration): below a mean cosine
    similarity of ``min_cosine`` a :class:`QuantizationError` is raised and ``out_path`` is
    left as it was. The file is written atomically. Before calibration the graph goes
    through onnxruntime's pre-processing and :func:`~msinet_reid.onnx_rewrites.int8_friendly`
    (exact rewrites into operators that run faster in int8).

    Example::

        >>> export_onnx(model, 'msinet.onnx')
        >>> print(quantize_onnx('msinet.onnx', 'msinet.int8.onnx', 'crops/'))
        msinet.int8.onnx: int8, minmax calibration on 256 images; cosine similarity ...
    """
    require_onnxruntime()
    if method not in CALIBRATION_METHODS:
        raise ValueError(f'unknown calibration method {method!r}; choose one of '
                         f'{", ".join(CALIBRATION_METHODS)}')
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if out_path.resolve() == fp32_path.resolve():
        raise ValueError(f'the int8 model would overwrite the fp32 model at {fp32_path}; '
                         f'choose another output path')
    fp32 = OnnxModel(fp32_path)
    calibration, held_out = split_calibration(images, check, num_calibration, num_check, seed)

    def quantize(tmp: Path) -> None:
        batches = tqdm(image_batches(calibration, fp32.image_size, batch_size, workers=0),
                       desc='Calibrating', unit='batch')
        _quantize_static(fp32_path, tmp, batches, method)

    similarity = checked_int8(
        out_path, quantize, OnnxModel, fp32, held_out, min_cosine, batch_size,
        retry=f'or try another calibration method ({", ".join(CALIBRATION_METHODS)})')
    return QuantizationReport(out_path, method, len(calibration), len(held_out),
                              float(similarity.mean()), float(similarity.min()))


def checked_int8(
    out_path: Path, quantize: Callable[[Path], None], load: Callable[[Path], torch.nn.Module],
    fp32: torch.nn.Module, held_out: Sequence[Path], min_cosine: float, batch_size: int,
    retry: str = '', write: Callable[[Path, Callable[[Path], None]], Path] = atomic_write,
) -> torch.Tensor:
    """Write an int8 model to ``out_path`` only if its features pass the cosine guard.

    ``quantize(tmp)`` writes the int8 model to a temporary path, which ``load`` runs; the
    mean cosine similarity of its features to ``fp32``'s (a runtime's model of the fp32
    file at ``fp32.path``) on the ``held_out`` crops must
    reach ``min_cosine``, or a :class:`QuantizationError` (suggesting ``retry``) is raised
    and ``out_path`` is left as it was. ``write`` places the file atomically (a format of
    several files brings its own). Returns the similarity of each held-out crop; shared
    by every runtime's int8 export.

    Example::

        >>> checked_int8(Path('m.int8.onnx'), quantize, OnnxModel, OnnxModel('m.onnx'),
        ...              held_out, MIN_COSINE, batch_size=32)
    """
    similarity = torch.empty(0)

    def quantize_and_check(tmp: Path) -> None:
        nonlocal similarity
        quantize(tmp)
        similarity = feature_cosine(
            load(tmp), fp32, image_batches(held_out, fp32.image_size, batch_size, 0))
        if not similarity.mean() >= min_cosine:
            raise QuantizationError(
                f'the int8 features are too far from the fp32 features on {len(held_out)} '
                f'held-out images: cosine similarity mean {similarity.mean():.4f}, min '
                f'{similarity.min():.4f}, below the threshold {min_cosine} (mean). Nothing '
                f'was written to {out_path}; the fp32 model at {fp32.path} is unchanged. '
                f'Calibrate on a few hundred crops like those the model will see'
                f'{", " + retry if retry else ""}.'
            )

    write(out_path, quantize_and_check)
    return similarity
