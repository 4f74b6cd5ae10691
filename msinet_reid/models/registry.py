"""Model registry: every MSINet constructor is a torchreid model factory."""
from typing import Callable, Dict, List, Optional

from .._torchreid import model_factory

_model_entrypoints: Dict[str, Callable] = {}


def register_model(fn: Callable, name: Optional[str] = None) -> Callable:
    """Register ``fn`` as model ``name`` (default ``fn.__name__``) with torchreid.

    Afterwards ``torchreid.models.build_model(name, ...)`` calls ``fn``. Raises
    ``ValueError`` when torchreid already has a model of that name.
    """
    name = name or fn.__name__
    factory = model_factory()
    if name in factory:
        raise ValueError(
            f'torchreid already has a model named {name!r}; register under another name'
        )
    factory[name] = fn
    _model_entrypoints[name] = fn
    return fn


def list_models() -> List[str]:
    """Names of the MSINet models registered with torchreid by this package."""
    return sorted(_model_entrypoints)
