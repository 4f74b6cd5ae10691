"""Finding, downloading and loading pretrained weights.

A checkpoint is looked up, in order, at the path given to the model factory
(``pretrained_path=...``), at the path in the environment variable
``MSINET_PRETRAINED`` (a file, or a folder holding the file), and in torch's hub cache
(``$TORCH_HOME/hub/checkpoints``), where it is downloaded with gdown when absent.
"""
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from .atomic import PathLike, atomic_write

ENV_VAR = 'MSINET_PRETRAINED'


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights could not be found, downloaded or read."""


@dataclass(frozen=True)
class PretrainedWeights:
    """A published checkpoint: its file name and where to download it."""

    filename: str
    gdrive_id: str
    description: str

    @property
    def url(self) -> str:
        return f'https://drive.google.com/file/d/{self.gdrive_id}/view'

    def fixes(self) -> str:
        return (
            f'Download {self.filename} by hand from {self.url} and put it at {cache_path(self)}, '
            f'or point the environment variable {ENV_VAR} (or the argument pretrained_path=) '
            f'at it; or build the model with pretrained=False.'
        )


@dataclass
class LoadReport:
    """What ``load_pretrained`` took from a checkpoint, and what it left."""

    path: Path
    loaded: List[str] = field(default_factory=list)
    shape_mismatch: Dict[str, Tuple[tuple, tuple]] = field(default_factory=dict)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        total = len(self.loaded) + len(self.shape_mismatch) + len(self.missing)
        lines = [f'Loaded {len(self.loaded)}/{total} tensors from {self.path}']
        for key, (theirs, ours) in self.shape_mismatch.items():
            lines.append(f'  skipped {key}: checkpoint shape {theirs}, model shape {ours}')
        if self.missing:
            lines.append(f'  not in the checkpoint, left as initialised: {", ".join(self.missing)}')
        if self.unexpected:
            lines.append(f'  in the checkpoint but not in the model: {", ".join(self.unexpected)}')
        return '\n'.join(lines)


def cache_path(weights: PretrainedWeights) -> Path:
    return Path(torch.hub.get_dir()) / 'checkpoints' / weights.filename


def resolve_weights(weights: PretrainedWeights, path: Optional[PathLike] = None) -> Path:
    """Return the local file of ``weights``, downloading it into the cache if needed."""
    if path is None and os.environ.get(ENV_VAR):
        path = os.environ[ENV_VAR]
    if path is not None:
        path = Path(path).expanduser()
        if path.is_dir():
            path = path / weights.filename
        if not path.is_file():
            raise PretrainedWeightsError(f'No pretrained weights at {path}. {weights.fixes()}')
        return path
    cached = cache_path(weights)
    if not cached.is_file():
        _download(weights, cached)
    return cached


def _download(weights: PretrainedWeights, target: Path) -> None:
    """Download into ``target`` atomically: a broken download leaves no file behind."""
    print(f'Downloading {weights.description} ({weights.filename}) to {target}')
    atomic_write(target, lambda tmp: _fetch(weights, tmp))


def _fetch(weights: PretrainedWeights, tmp: Path) -> None:
    import gdown

    try:
        result = gdown.download(id=weights.gdrive_id, output=str(tmp), quiet=False)
    except Exception as error:  # gdown raises many kinds; all mean the same here
        raise PretrainedWeightsError(
            f'Downloading {weights.filename} failed ({error}). {weights.fixes()}'
        ) from error
    if result is None or not tmp.is_file() or tmp.stat().st_size == 0:
        raise PretrainedWeightsError(
            f'Downloading {weights.filename} failed (nothing was received). {weights.fixes()}'
        )
    load_state_dict_file(tmp)  # refuse to cache something unreadable


def _numpy_scalar_globals() -> list:
    """numpy types that checkpoints commonly hold (e.g. ``np.float64`` metrics)."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    dtypes = {type(np.dtype(code)) for code in '?bhilqBHILQefdg'}
    return [scalar, np.dtype, *dtypes]


def load_checkpoint(path: PathLike):
    """Read a whole checkpoint safely (``weights_only=True``), numpy scalars allowed.

    Checkpoints of torchreid's engines hold numpy metrics (``rank1``) besides tensors,
    which ``torch.load``'s default refuses since torch 2.6. Anything else that is not
    plain data is refused with a message saying how to convert a trusted file.
    """
    path = Path(path)
    safe_globals = getattr(torch.serialization, 'safe_globals', None)
    try:
        if safe_globals is None:
            return torch.load(path, map_location='cpu', weights_only=True)
        with safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        if 'Unsupported global' in str(error) or 'Unsupported class' in str(error):
            raise PretrainedWeightsError(
                f'{path} holds Python objects that torch.load(weights_only=True) refuses to '
                f'unpickle. If you trust the file, convert it once: '
                f"ckpt = torch.load(path, weights_only=False); "
                f"torch.save({{'state_dict': ckpt['state_dict']}}, path). ({error})"
            ) from error
        raise _corrupt(path, 'unreadable pickle data') from error
    except Exception as error:  # noqa: BLE001  (damaged bytes fail the unpickler in many ways:
        # EOFError, zipfile.BadZipFile, IndexError, KeyError, ...)
        raise _corrupt(path, f'{type(error).__name__}: '
                             f'{(str(error).splitlines() or [""])[0][:200]}') from error


def load_state_dict_file(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read a checkpoint safely (``weights_only=True``) and return its state_dict.

    Accepts a bare state_dict or a dict holding one under ``state_dict``; strips the
    ``module.`` prefix that DataParallel adds.
    """
    checkpoint = load_checkpoint(path)
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or not all(
        isinstance(value, torch.Tensor) for value in state_dict.values()
    ):
        raise PretrainedWeightsError(
            f'{path} is not a model checkpoint: expected a state_dict, or a dict holding '
            f"one under 'state_dict'."
        )
    return {key.removeprefix('module.'): value for key, value in state_dict.items()}


def _corrupt(path: Path, detail: str) -> PretrainedWeightsError:
    return PretrainedWeightsError(
        f'Cannot read {path}: it is corrupt or not a PyTorch checkpoint ({detail}). Delete it '
        f'and download it again, or build the model with pretrained=False.'
    )


def load_pretrained(model: nn.Module, path: PathLike) -> LoadReport:
    """Copy every tensor of the checkpoint at ``path`` whose name and shape match ``model``."""
    report = LoadReport(Path(path))
    checkpoint = load_state_dict_file(path)
    own = model.state_dict()
    matched = {}
    for key, value in checkpoint.items():
        if key not in own:
            report.unexpected.append(key)
        elif value.shape != own[key].shape:
            report.shape_mismatch[key] = (tuple(value.shape), tuple(own[key].shape))
        else:
            matched[key] = value
            report.loaded.append(key)
    report.missing = [key for key in own if key not in checkpoint]
    model.load_state_dict(matched, strict=False)
    return report
