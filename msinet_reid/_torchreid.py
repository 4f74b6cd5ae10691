"""The one place that knows torchreid's two package layouts.

The official Torchreid 1.4 (installed from source) exposes ``torchreid.models``,
``torchreid.data``, ... directly. The PyPI distribution ``torchreid`` 0.2.5 ships the
same code nested under ``torchreid.reid``. Importing this module makes the official
module names importable under either layout, so scripts written for the official API
(``from torchreid.utils import FeatureExtractor``, ``import torchreid.models``) run
unchanged, and gives the rest of this package one way to reach torchreid.
"""
import sys
from pathlib import Path
from typing import Callable, Dict

import torchreid  # noqa: F401  (imports torchreid.reid in the PyPI layout)

_NESTED_PREFIX = 'torchreid.reid.'


def _alias_nested_layout() -> None:
    """Register every ``torchreid.reid.X`` module as ``torchreid.X`` as well.

    Importing ``torchreid`` 0.2.5 imports its whole tree eagerly, so aliasing the
    modules already loaded covers every module a script can name.
    """
    if 'torchreid.reid' not in sys.modules:
        return  # official layout: nothing to do
    for name, module in list(sys.modules.items()):
        if name.startswith(_NESTED_PREFIX):
            sys.modules.setdefault('torchreid.' + name[len(_NESTED_PREFIX):], module)


_alias_nested_layout()

from torchreid import data, engine, losses, metrics, models, optim, utils  # noqa: E402

NESTED_LAYOUT = 'torchreid.reid' in sys.modules


def _load_checkpoint_safely(fpath):
    """torchreid's ``load_checkpoint`` on top of this package's safe loader.

    torchreid calls ``torch.load`` with its default, ``weights_only=True`` since torch
    2.6, which refuses the numpy ``rank1`` its own engines save. This loader allows
    numpy scalars and names the fix for anything else.
    """
    from .weights import load_checkpoint

    if fpath is None:
        raise ValueError('File path is None')
    path = Path(fpath).expanduser()
    if not path.exists():
        raise FileNotFoundError(f'File is not found at "{path}"')
    return load_checkpoint(path)


def _patch_checkpoint_loading() -> None:
    """Route torchreid's checkpoint loading (``FeatureExtractor``, ``load_pretrained_weights``,
    ``resume_from_checkpoint``) through ``_load_checkpoint_safely``."""
    utils.torchtools.load_checkpoint = _load_checkpoint_safely  # read by the two loaders
    utils.load_checkpoint = _load_checkpoint_safely  # `from torchreid.utils import ...`


_patch_checkpoint_loading()


def model_factory() -> Dict[str, Callable]:
    """torchreid's model-name -> constructor dict, which ``build_model`` reads."""
    return vars(models)['__model_factory']


__all__ = [
    'NESTED_LAYOUT', 'data', 'engine', 'losses', 'metrics', 'model_factory', 'models',
    'optim', 'utils',
]
