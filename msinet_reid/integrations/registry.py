"""One call that adds the MSINet encoders to a SpCL/IDM-style model factory dict."""
import warnings
from collections.abc import MutableMapping
from functools import partial
from typing import Callable, Dict, List, Optional, Type

from torch import nn

from ..models import MSINetEncoder, published_weights
from .idm import MSINetIDM, MSINetIDMEncoder

ARCHS = ('msinet', 'msinet_vr', 'msinet_s')
ENCODERS: Dict[str, Type[MSINetEncoder]] = {'spcl': MSINetEncoder, 'idm': MSINetIDMEncoder}
"""Host project -> the plain encoder whose outputs its trainers unpack: SpCL's take the
logits alone, IDM's ``(logits, pooled)``."""


def _constructor(cls: Type[MSINetEncoder], arch: str, name: str) -> Callable[..., nn.Module]:
    def create(**kwargs) -> nn.Module:
        # SpCL's and IDM's scripts never pass pretrained=False: without published weights
        # the model starts from scratch rather than stopping the script.
        if (kwargs.get('pretrained', True) and kwargs.get('pretrained_path') is None
                and published_weights(arch) is None):
            warnings.warn(
                f'{name}: no ImageNet weights are published for MSINet {arch!r}, so it '
                f'starts from random initialisation. To start from weights of your own, '
                f'pass pretrained_path=CHECKPOINT to models.create({name!r}, ...)',
                stacklevel=2,
            )
            kwargs['pretrained'] = False
        return cls(arch=arch, **kwargs)

    create.__name__ = create.__qualname__ = name
    create.__doc__ = (f'{cls.__name__} on MSINet {arch!r}; takes the keyword arguments of '
                      f'SpCL/IDM models.create (pretrained, num_features, norm, ...).')
    return create


def constructors(host: str = 'spcl') -> Dict[str, Callable[..., nn.Module]]:
    """Name -> constructor for ``host`` (``'spcl'`` or ``'idm'``): ``msinet``,
    ``msinet_vr``, ``msinet_s`` (that host's plain encoder) and their ``_idm`` variants
    (IDM's mixing encoder).

    Example::

        >>> model = constructors('idm')['msinet'](pretrained=False, num_classes=10)
        >>> type(model).__name__
        'MSINetIDMEncoder'
    """
    if host not in ENCODERS:
        raise ValueError(f'host={host!r}: MSINet has encoders for {", ".join(ENCODERS)}; '
                         f'pick the one whose trainers your script uses')
    return {
        **{arch: _constructor(ENCODERS[host], arch, arch) for arch in ARCHS},
        **{f'{arch}_idm': _constructor(MSINetIDM, arch, f'{arch}_idm') for arch in ARCHS},
    }


def find_host(factory: MutableMapping) -> str:
    """``'idm'`` when the factory's own models come from the ``idm`` package, else ``'spcl'``."""
    packages = {getattr(constructor, '__module__', None) or '' for constructor in factory.values()}
    return 'idm' if any(module.split('.')[0] == 'idm' for module in packages) else 'spcl'


def register_models(factory: MutableMapping, prefix: str = '',
                    mixing_module: Optional[Type[nn.Module]] = None,
                    host: Optional[str] = None) -> List[str]:
    """Add the MSINet constructors for ``host`` to ``factory``; return the new names.

    ``factory`` is the name -> constructor dict behind a ``models.create(name, ...)``,
    such as SpCL's or IDM's ``models.__factory``. ``host`` (``'spcl'`` or ``'idm'``)
    picks the outputs the plain encoders give that project's trainers (see
    :func:`constructors`); by default IDM's when the factory's models come from the
    ``idm`` package, SpCL's otherwise. Names get ``prefix`` in front;
    ``mixing_module`` binds IDM's mixing module class to the ``_idm`` constructors
    (by default they import it from the IDM install when built). Nothing is added when
    a name is taken or the dict does not look like a model factory.

    In these constructors, MSINets without published ImageNet weights (``msinet_vr``,
    ``msinet_s``) start from random initialisation, with a warning, unless given
    ``pretrained_path=``; ``msinet`` loads its weights.

    Example (in SpCL's or IDM's training script, after ``from spcl import models``)::

        >>> register_models(models.__factory)
        ['msinet', 'msinet_vr', 'msinet_s', 'msinet_idm', 'msinet_vr_idm', 'msinet_s_idm']
        >>> model = models.create('msinet', num_features=0, norm=True, num_classes=0)
    """
    if not isinstance(factory, MutableMapping):
        raise TypeError(
            f'register_models needs the model factory dict (name -> constructor) behind '
            f'models.create, e.g. spcl.models.__factory; got {type(factory).__name__} '
            f'{factory!r:.80}'
        )
    for name, constructor in factory.items():
        if not isinstance(name, str) or not callable(constructor):
            raise TypeError(
                f'this dict is not a model factory: its entry {name!r}: {constructor!r:.60} '
                f'is not a name mapped to a constructor; pass the dict models.create reads'
            )
    if mixing_module is not None and not (
            isinstance(mixing_module, type) and issubclass(mixing_module, nn.Module)):
        raise TypeError(f'mixing_module must be an nn.Module class such as IDM\'s IDM, '
                        f'got {mixing_module!r}')
    new = {}
    for name, constructor in constructors(host or find_host(factory)).items():
        if mixing_module is not None and name.endswith('_idm'):
            constructor = partial(constructor, mixing_module=mixing_module)
        new[prefix + name] = constructor
    taken = [name for name in new if name in factory]
    if taken:
        raise ValueError(
            f'the factory already has models named {", ".join(taken)}; nothing was '
            f'registered. Pass prefix= to register the MSINet models under other names'
        )
    factory.update(new)
    return list(new)
