"""MSINet as the appearance (ReID) model of boxmot's multi-object trackers.

Importing this module registers every MSINet model (``msinet_reid.list_models()``) with
boxmot's ReID backbone registry, so boxmot builds, loads, runs and exports MSINet the way
it does its own OSNet weights. ``prepare_weights`` turns a checkpoint trained with this
package into the ``.pt`` file that boxmot reads::

    import msinet_reid.integrations.boxmot as msinet_boxmot
    from boxmot import BotSort

    weights = msinet_boxmot.prepare_weights('msinet', 'log/model/model.pth.tar-60',
                                            'msinet_market1501.pt')
    tracker = BotSort(reid_weights=weights, device='cpu', half=False)
    tracks = tracker.update(detections, frame)  # (N, 6) x1 y1 x2 y2 conf cls; BGR frame

boxmot's command line gets the same models through ``python -m
msinet_reid.integrations.boxmot`` (boxmot's CLI, MSINet registered first). Needs the
extra ``boxmot``: ``pip install "msinet-reid[boxmot]"``.
"""
import dataclasses
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ...atomic import PathLike, atomic_write
from ...deploy import InferenceModel, compile_model, export_onnx, load_trained
from ...deploy.torchscript_export import is_torchscript, torchscript_metadata
from ...weights import PretrainedWeights, load_checkpoint
from ...models import MSINet, list_models
from ...models.registry import observe_models
from ..._torchreid import models

INSTALL = 'pip install "msinet-reid[boxmot]"'


def require_boxmot():
    """Import boxmot, or say how to install it."""
    try:
        import boxmot
        from boxmot.reid.backbones import registry  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f'MSINet in boxmot needs the optional package boxmot ({error.name} is missing): '
            f'{INSTALL}'
        ) from error
    return boxmot


require_boxmot()

from boxmot.reid.backbones.registry import BACKBONE_REGISTRY, register_backbone  # noqa: E402
from boxmot.reid.core.artifacts import read_artifact_metadata, write_artifact_metadata  # noqa: E402,E501

# MSINet is a CNN trained with torchreid's softmax + triplet recipe, on 256x128 persons.
FAMILY, RECIPE, IMAGE_SIZE = 'cnn', 'cnn_reid', (256, 128)
# boxmot's ReID backends besides pytorch that run on the CPU, and export() writes.
FORMATS = ('torchscript', 'onnx', 'openvino')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')


def _builder(name: str) -> Callable[..., MSINet]:
    """boxmot calls backbone builders with torchreid's factory signature, as MSINet's."""

    def build(num_classes: int, loss: str = 'softmax', pretrained: bool = True,
              use_gpu: bool = True, **kwargs) -> MSINet:
        return models.build_model(name, num_classes, loss=loss, pretrained=pretrained,
                                  use_gpu=bool(use_gpu), **kwargs)

    build.__name__ = build.__qualname__ = name
    build.msinet_model = name  # marks the builders registered here
    return build


def register_backbones() -> List[str]:
    """Make every MSINet model a boxmot backbone; return all MSINet names.

    Importing this module does it, and registers each genotype added later with
    ``msinet_reid.register_genotype`` as it is added; calling it again is harmless. A name
    that boxmot already uses for another backbone raises ``KeyError``.

    Example::

        >>> msinet_reid.register_genotype('my_msinet', genotype)
        >>> 'my_msinet' in register_backbones()
        True
    """
    names = list_models()
    for name in names:
        _register(name)
    return names


def _register(name: str, weights: Optional[PretrainedWeights] = None) -> None:
    """Register MSINet model ``name`` with boxmot, unless it is there already; an
    observer of this package's model registry (``weights`` are boxmot's business)."""
    if getattr(BACKBONE_REGISTRY.get(name), 'msinet_model', None) == name:
        return
    register_backbone(name, family=FAMILY, default_recipe=RECIPE,
                      default_img_size=IMAGE_SIZE)(_builder(name))


def prepare_weights(model_name: str, checkpoint: PathLike, out: PathLike,
                    image_size: Tuple[int, int] = IMAGE_SIZE) -> Path:
    """Write the weights of a trained MSINet as a ReID model file for boxmot.

    ``checkpoint`` is a torchreid engine checkpoint or a bare state_dict of the
    registered model ``model_name``; ``out`` must end in ``.pt`` (boxmot picks its
    backend by suffix). The file records the model name, the number of training
    identities and the crop size ``(height, width)`` the model was trained on, so
    boxmot needs nothing else to build it. Written atomically; returns ``out``.

    Example::

        >>> prepare_weights('msinet', 'log/model/model.pth.tar-60', 'msinet_market1501.pt')
    """
    out = Path(out)
    if out.suffix != '.pt':
        raise ValueError(f'boxmot reads PyTorch ReID weights from .pt files; got {out}, '
                         f'name it {out.with_suffix(".pt").name}')
    height, width = image_size
    if height % 16 or width % 16 or height < 32:
        raise ValueError(f'image_size must be (height, width), multiples of 16 and at least 32 '
                         f'high, as MSINet was trained; got {image_size}')
    model = load_trained(model_name, checkpoint)
    register_backbones()
    state = {
        'state_dict': model.state_dict(), 'model_name': model_name,
        'num_classes': model.classifier.out_features,
        'model_kwargs': {'img_size': [height, width]},
    }
    return atomic_write(out, lambda tmp: torch.save(state, tmp))


def export(weights: PathLike, include: Sequence[str] = FORMATS) -> Dict[str, Path]:
    """Export a file from :func:`prepare_weights` to boxmot's other ReID backends.

    ``include`` picks from ``torchscript`` (``<stem>.torchscript``), ``onnx``
    (``<stem>.onnx``, opset 17, checked against PyTorch in onnxruntime) and ``openvino``
    (``<stem>_openvino_model/``), the names boxmot resolves its backends from. Each holds
    the inference model (BatchNorm folded, training heads dropped) with a dynamic batch
    axis, beside boxmot's metadata sidecar (model name, crop size), and is written
    atomically next to ``weights``. Returns the paths by format.

    boxmot's own ``export`` command (``python -m msinet_reid.integrations.boxmot export
    --weights ...``) works too; it exports the eval-mode model as it is, with its dynamo
    ONNX exporter, and pip-installs boxmot's pinned onnx packages when they are absent.

    Example::

        >>> export('msinet_market1501.pt', include=('onnx', 'openvino'))
        {'onnx': PosixPath('msinet_market1501.onnx'),
         'openvino': PosixPath('msinet_market1501_openvino_model')}
    """
    unknown = sorted(set(include) - set(FORMATS))
    if unknown:
        raise ValueError(f'unknown formats {unknown}; choose from {list(FORMATS)}')
    weights = Path(weights)
    model, (height, width), metadata = _load_prepared(weights)
    stem = weights.with_suffix('')
    written = {}
    if 'torchscript' in include:
        inference = InferenceModel(model, channels_last=False)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')  # tracing's deprecation and fixed-size warnings
            traced = torch.jit.trace(inference, torch.randn(2, 3, height, width))
        written['torchscript'] = atomic_write(stem.with_suffix('.torchscript'), traced.save)
    if 'onnx' in include or 'openvino' in include:
        onnx_path = export_onnx(model, stem.with_suffix('.onnx'), height, width)
        if 'onnx' in include:
            written['onnx'] = onnx_path
        if 'openvino' in include:
            written['openvino'] = _openvino(onnx_path, stem)
            if 'onnx' not in include:
                onnx_path.unlink()
    for path in written.values():
        write_artifact_metadata(path, metadata)
    return written


def _load_prepared(weights: Path):
    """The model, crop size and boxmot metadata of a file from :func:`prepare_weights`."""
    checkpoint = load_checkpoint(weights)
    if not isinstance(checkpoint, dict) or 'model_name' not in checkpoint:
        raise ValueError(f'{weights} was not written by prepare_weights(); convert the '
                         f'checkpoint with prepare_weights(model_name, checkpoint, out) first')
    name, size = checkpoint['model_name'], tuple(checkpoint['model_kwargs']['img_size'])
    model = load_trained(name, weights)
    metadata = {'model_name': name, 'num_classes': checkpoint['num_classes'],
                'model_kwargs': {'img_size': list(size)}, 'img_size': list(size),
                'feature_dim': model.feature_dim, 'source': str(weights)}
    return model, size, metadata


def _openvino(onnx_path: Path, stem: Path) -> Path:
    """Convert an ONNX file into an OpenVINO IR folder ``<stem>_openvino_model``."""
    try:
        import openvino as ov
    except ImportError as error:
        raise ImportError(f'OpenVINO export needs the package openvino: {INSTALL}') from error
    folder = stem.parent / f'{stem.name}_openvino_model'
    staging = Path(tempfile.mkdtemp(prefix=f'.{folder.name}.', dir=folder.parent))
    try:
        ov.save_model(ov.convert_model(str(onnx_path)), str(staging / f'{stem.name}.xml'),
                      compress_to_fp16=False)
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def reid_encoder(weights: PathLike, device: str = 'cpu', half: bool = False,
                 compile: bool = False, batch_size: Optional[int] = None):
    """boxmot's appearance encoder (``boxmot.reid.AppearanceEncoder``) for a weights file.

    ``weights`` is a file from :func:`prepare_weights` or its export by boxmot
    (``.torchscript``, ``.onnx``, ``_openvino_model``), or a file of ``msinet-reid
    export``: ``.onnx`` (fp32, fp16, int8), OpenVINO ``.xml`` (fp32, int8) or TorchScript
    ``.pt``; the suffix picks the backend, as boxmot does (a ``.pt`` holding TorchScript
    runs on boxmot's torchscript backend).
    ``encoder.encode(frames, detections)`` returns one L2-normalised ``(N, 768)`` tensor
    per frame, the input of a ``boxmot.pipelines.TrackingPipeline``.

    ``batch_size`` sets how many crops boxmot runs at a time (its default: 64).
    ``compile=True`` (PyTorch ``.pt`` weights) runs the model through
    :func:`msinet_reid.deploy.compile_model`, compiled here for every batch that boxmot
    sends (1 up to its batch size), so that frames with any number of detections never
    recompile; in float16 with ``half=True``.

    Example::

        >>> encoder = reid_encoder('msinet_market1501.onnx')
        >>> encoder.embedding_dim
        768
    """
    from boxmot.reid import create_reid_encoder
    from boxmot.reid.config import resolve_reid_spec

    path = Path(weights).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f'no ReID weights at {path}; write them with prepare_weights()')
    spec, _ = resolve_reid_spec(str(path), allow_download=False)
    options = spec.option_values()
    declared = _declared_options(path)
    for option, value in declared.items():
        options.setdefault(option, value)
    if batch_size is not None:
        options['batch_size'] = batch_size
    spec = dataclasses.replace(spec, device=device, precision='fp16' if half else 'fp32',
                               options=tuple(sorted(options.items())))
    if is_torchscript(path):
        encoder = _torchscript_encoder(spec, path, device, half)
    else:
        encoder = create_reid_encoder(spec)
    if 'image_size' in declared:  # boxmot 25 crops files without its metadata at 256x128
        encoder._runtime.input_shape = declared['image_size']
    if compile:
        _compile_backend(encoder, path, half)
    return encoder


def _torchscript_encoder(spec, path: Path, device: str, half: bool):
    """boxmot's TorchScript backend for a ``.pt`` file of ``msinet-reid export --format
    torchscript``, which boxmot's suffix rule would read as PyTorch weights."""
    from boxmot.reid.adapters import RuntimeAppearanceEncoder
    from boxmot.reid.backends.torchscript_backend import TorchscriptBackend

    backend = TorchscriptBackend(path, torch.device(device), half)
    return RuntimeAppearanceEncoder(dataclasses.replace(spec, backend='torchscript'), backend)


def _compile_backend(encoder, path: Path, half: bool) -> None:
    """Swap the torch module of boxmot's PyTorch backend for its compiled model."""
    from boxmot.reid.backends.pytorch_backend import PyTorchBackend

    backend = getattr(encoder, '_runtime', None)  # boxmot 25's RuntimeAppearanceEncoder
    if not isinstance(backend, PyTorchBackend):
        raise ValueError(f'compile=True compiles PyTorch weights (.pt files from '
                         f'prepare_weights); {path.name} runs on boxmot\'s {encoder.spec.backend} '
                         f'backend')
    backend.model = compile_model(
        backend.model, backend.device, image_size=tuple(backend.input_shape),
        max_batch_size=encoder._batch_size, dtype=torch.float16 if half else torch.float32)


def _declared_options(path: Path) -> Dict[str, object]:
    """The crop size and feature width a weights file declares, as boxmot's encoder options
    (``image_size``, ``embedding_dim``): boxmot's compiled backends do not find out the
    width until the first batch, and take a file without boxmot's metadata for 256x128.
    Read from export()'s metadata, or else the file's own record (an ONNX or OpenVINO
    graph's shapes, a TorchScript export's metadata)."""
    metadata = read_artifact_metadata(path)
    if metadata.get('feature_dim'):
        return {'embedding_dim': metadata['feature_dim']}
    if path.suffix == '.onnx':
        import onnx

        graph = onnx.load(str(path)).graph
        shapes = [[dim.dim_value for dim in value.type.tensor_type.shape.dim]
                  for value in (graph.input[0], graph.output[0])]
    elif path.suffix == '.xml':
        import openvino

        network = openvino.Core().read_model(str(path))
        shapes = [[dim.get_length() if dim.is_static else 0 for dim in value.get_partial_shape()]
                  for value in (network.input(0), network.output(0))]
    elif is_torchscript(path):
        record = torchscript_metadata(path)
        shapes = [[0, 3, *record['image_size']], [0, record['feature_dim']]]
    else:
        return {}
    (height, width), features = shapes[0][2:], shapes[1][-1]
    declared: Dict[str, object] = {}
    if features:  # 0: a dynamic axis, unknown until run
        declared['embedding_dim'] = features
    if height and width:
        declared['image_size'] = (height, width)
    return declared


def read_frames(source: PathLike) -> Iterator[Tuple[int, np.ndarray]]:
    """``(frame number from 1, BGR image)`` of a video file or a folder of images (sorted).

    Example::

        >>> for number, image in read_frames('MOT17-02/img1'): ...
    """
    import cv2

    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise FileNotFoundError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in {source}')
        for number, path in enumerate(paths, 1):
            yield number, cv2.imread(str(path))
        return
    if not source.is_file():
        raise FileNotFoundError(f'{source} is neither a video file nor a folder of frames')
    video = cv2.VideoCapture(str(source))
    try:
        number = 0
        while True:
            ok, image = video.read()
            if not ok:
                break
            number += 1
            yield number, image
    finally:
        video.release()
    if number == 0:
        raise ValueError(f'OpenCV read no frame from {source}')


def track_detections(tracker, frames: Iterable[Tuple[int, np.ndarray]],
                     detections: np.ndarray) -> np.ndarray:
    """Run a boxmot tracker over ``frames`` with MOT-format ``detections``; return tracks.

    ``detections`` rows are ``frame,id,x,y,w,h,conf,...`` (as in ``det.txt``); the result
    has MOT rows ``frame,id,x,y,w,h,conf,-1,-1,-1`` (as the MOT Challenge expects from a
    tracker), for the boxes the tracker outputs at each frame.

    Example::

        >>> tracks = track_detections(BotSort(reid_weights=weights), read_frames('img1'),
        ...                           read_mot('det/det.txt'))
    """
    rows = []
    for number, image in frames:
        found = detections[detections[:, 0] == number]
        boxes = np.zeros((len(found), 6), np.float32)  # x1 y1 x2 y2 conf class
        boxes[:, :2] = found[:, 2:4]
        boxes[:, 2:4] = found[:, 2:4] + found[:, 4:6]
        boxes[:, 4] = found[:, 6]
        for x1, y1, x2, y2, track_id, conf, *_ in tracker.update(boxes, image):
            rows.append((number, track_id, x1, y1, x2 - x1, y2 - y1, conf, -1, -1, -1))
    return np.array(rows, np.float64).reshape(-1, 10)


def main(argv: Optional[List[str]] = None) -> None:
    """boxmot's command line with MSINet registered: ``python -m msinet_reid.integrations.boxmot``.

    ``argv`` defaults to the process's arguments, as for the ``boxmot`` command.
    """
    from boxmot.engine.cli import main as boxmot_cli

    boxmot_cli.main(args=argv, prog_name='python -m msinet_reid.integrations.boxmot')


observe_models(_register)  # every MSINet model, and each one registered later
