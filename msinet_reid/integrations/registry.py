"""One call that adds the MSINet encoders to a SpCL/IDM-style model factory dict."""
from collections.abc import MutableMapping
from functools import partial
from typing import Callable, Dict, List, Optional, Type

from torch import nn

from .idm import MSINetIDM
from .spcl import MSINetEncoder

ARCHS = ('msinet', 'msinet_vr', 'msinet_s')


def _constructor(cls: Type[MSINetEncoder], arch: str, name: str) -> Callable[..., nn.Module]:
    def create(**kwargs) -> nn.Module:
        return cls(arch=arch, **kwargs)

    create.__name__ = create.__qualname__ = name
    create.__doc__ = (f'{cls.__name__} on MSINet {arch!r}; takes the keyword arguments of '
                      f'SpCL/IDM models.create (pretrained, num_features, norm, ...).')
    return create


CONSTRUCTORS: Dict[str, Callable[..., nn.Module]] = {
    **{arch: _constructor(MSINetEncoder, arch, arch) for arch in ARCHS},
    **{f'{arch}_idm': _constructor(MSINetIDM, arch, f'{arch}_idm') for arch in ARCHS},
}
"""Name -> constructor: ``msinet``, ``msinet_vr``, ``msinet_s`` (SpCL-style encoders) and
their ``_idm`` variants (IDM-style, with mixing modules)."""


def register_models(factory: MutableMapping, prefix: str = '',
                    mixing_module: Optional[Type[nn.Module]] = None) -> List[str]:
    """Add every constructor of :data:`CONSTRUCTORS` to ``factory``; return the new names.

    ``factory`` is the name -> constructor dict behind a ``models.create(name, ...)``,
    such as SpCL's or IDM's ``models.__factory``. Names get ``prefix`` in front;
    ``mixing_module`` binds IDM's mixing module class to the ``_idm`` constructors
    (by default they import it from the IDM install when built). Nothing is added when
    a name is taken or the dict does not look like a model factory.

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
    for name, constructor in CONSTRUCTORS.items():
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
