"""Model registry: every MSINet constructor is a torchreid model factory."""
from typing import Callable, Dict, List, Optional

from .._torchreid import model_factory
from ..weights import PretrainedWeights

Observer = Callable[[str, Optional[PretrainedWeights]], None]
"""Told ``(name, published weights or None)`` of each registered model; may refuse by raising."""

_model_entrypoints: Dict[str, Callable] = {}
_published_weights: Dict[str, PretrainedWeights] = {}
_observers: List[Observer] = []


def register_model(fn: Callable, name: Optional[str] = None,
                   weights: Optional[PretrainedWeights] = None) -> Callable:
    """Register ``fn`` as model ``name`` (default ``fn.__name__``) with torchreid.

    Afterwards ``torchreid.models.build_model(name, ...)`` calls ``fn``. ``weights`` is the
    published checkpoint that ``fn(..., pretrained=True)`` loads, if there is one. Raises
    ``ValueError`` when torchreid already has a model of that name, or an observer (the
    timm integration) refuses it; nothing is registered then.
    """
    name = name or fn.__name__
    factory = model_factory()
    if name in factory:
        raise ValueError(
            f'torchreid already has a model named {name!r}; register under another name'
        )
    for observer in _observers:
        observer(name, weights)
    factory[name] = fn
    _model_entrypoints[name] = fn
    if weights is not None:
        _published_weights[name] = weights
    return fn


def observe_models(observer: Observer) -> None:
    """Call ``observer(name, weights)`` for every model registered so far, and from now on
    for each one registered later, before it is registered.

    Integrations use it to keep another library's registry in step with this one (see
    ``msinet_reid.integrations.timm``). Observers are called in the order they were added.
    """
    for name in sorted(_model_entrypoints):
        observer(name, _published_weights.get(name))
    _observers.append(observer)


def model_entrypoint(name: str) -> Callable:
    """The constructor registered as model ``name``: ``(num_classes, loss, pretrained,
    use_gpu, **kwargs)``, keyword arguments included, which torchreid's ``build_model``
    does not pass on."""
    if name not in _model_entrypoints:
        raise KeyError(f'no MSINet model named {name!r}; choose one of {list_models()}')
    return _model_entrypoints[name]


def published_weights(name: str) -> Optional[PretrainedWeights]:
    """The published checkpoint that model ``name`` loads with ``pretrained=True``, if any."""
    return _published_weights.get(name)


def list_models() -> List[str]:
    """Names of the MSINet models registered with torchreid by this package."""
    return sorted(_model_entrypoints)
