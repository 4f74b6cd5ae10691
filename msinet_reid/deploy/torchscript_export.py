"""TorchScript export of MSINet inference models: a traced, frozen ``.pt`` file that
``torch.jit.load`` runs in any process with torch, without msinet_reid or torchreid.

Example::

    >>> export_torchscript(load_trained('msinet', 'model.pth.tar-60'), 'msinet.pt')
    >>> model = torch.jit.load('msinet.pt')  # anywhere torch is installed
"""
import contextlib
import json
import warnings
import zipfile
from pathlib import Path
from typing import Iterator, Tuple

import torch

from ..atomic import PathLike, atomic_write
from .checks import check_features
from .inference import feature_model

# A file in the archive's extra/ folder, which torch.jit.load leaves alone.
METADATA = 'msinet_reid.json'


def export_torchscript(model: torch.nn.Module, path: PathLike, height: int = 256,
                       width: int = 128, atol: float = 1e-4) -> Path:
    """Write ``model``'s features (an MSINet's inference model, or any torchreid model) to
    ``path`` as TorchScript, traced and frozen.

    Channels-last, BatchNorm folded, any batch size; the crop size ``(height, width)`` and
    feature width are recorded in the file (:func:`torchscript_metadata`). Written
    atomically, once the loaded file's features match PyTorch's within ``atol`` at another
    batch size than the traced one.

    Example::

        >>> export_torchscript(load_trained('msinet', 'model.pth.tar-60'), 'msinet.pt')
    """
    path = Path(path)
    if path.suffix != '.pt':
        raise ValueError(f'a TorchScript model is a .pt file; got {path}')
    inference = feature_model(model).cpu()
    images = torch.randn(2, 3, height, width)
    with torch.no_grad(), quiet_tracing():
        traced = torch.jit.freeze(torch.jit.trace(inference, images))
        feature_dim = traced(images).shape[1]
    metadata = {METADATA: json.dumps({'image_size': [height, width],
                                      'feature_dim': feature_dim})}

    def write(tmp: Path) -> None:
        with quiet_tracing():
            torch.jit.save(traced, str(tmp), _extra_files=metadata)
            loaded = torch.jit.load(str(tmp))
        check_features(loaded, inference, torch.randn(3, 3, height, width), atol)

    return atomic_write(path, write)


@contextlib.contextmanager
def quiet_tracing() -> Iterator[None]:
    """Silences tracing's warning that the part-head split is fixed (it is: the image size
    is), and torch's FutureWarning that TorchScript is deprecated: LibTorch, Triton,
    boxmot and OpenVINO's PyTorch converter still read it."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.simplefilter('ignore', FutureWarning)
        yield


def is_torchscript(path: PathLike) -> bool:
    """Whether ``path`` is a TorchScript file of :func:`export_torchscript` (a ``.pt``
    checkpoint is a zip archive too, without the crop size record)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(f'/extra/{METADATA}') for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def torchscript_metadata(path: PathLike) -> dict:
    """What :func:`export_torchscript` recorded: ``image_size``, ``feature_dim``."""
    with zipfile.ZipFile(path) as archive:
        name = next(name for name in archive.namelist()
                    if name.endswith(f'/extra/{METADATA}'))
        return json.loads(archive.read(name))


def load_torchscript(path: PathLike) -> Tuple[torch.jit.ScriptModule, Tuple[int, int]]:
    """The TorchScript model at ``path`` and the crop size it was exported for.

    Example::

        >>> model, (height, width) = load_torchscript('msinet.pt')
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'no TorchScript model at {path}')
    if not is_torchscript(path):
        raise ValueError(
            f'cannot load {path} as a TorchScript model of `msinet-reid export --format '
            f'torchscript` (it records the crop size): checkpoints end in .pth or .pth.tar; '
            f'export the TorchScript model again')
    with quiet_tracing():
        model = torch.jit.load(str(path), map_location='cpu')
    return model.eval(), tuple(torchscript_metadata(path)['image_size'])
