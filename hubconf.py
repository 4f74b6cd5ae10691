"""torch.hub entry points: every MSINet model of msinet-reid, from a checkout.

    model = torch.hub.load('path/to/msinet-reid', 'msinet', source='local', pretrained=False)

Each entry point builds the torchreid model of the same name (eval mode returns the 768-d
ReID feature), with the factory's keyword arguments (``loss``, ``pretrained_path``, ...).
``num_classes`` defaults to the 1000 classes of the authors' ImageNet weights, which
``pretrained=True`` finds and loads as ``torchreid.models.build_model`` does.
"""
from typing import Callable

from torch import nn

import msinet_reid
from msinet_reid.models import model_entrypoint

dependencies = ['torch', 'torchvision', 'torchreid', 'gdown']


def _entrypoint(name: str) -> Callable[..., nn.Module]:
    def load(pretrained: bool = False, num_classes: int = 1000, **kwargs) -> nn.Module:
        return model_entrypoint(name)(num_classes, pretrained=pretrained, **kwargs)

    load.__name__ = load.__qualname__ = name
    load.__doc__ = model_entrypoint(name).__doc__
    return load


globals().update({name: _entrypoint(name) for name in msinet_reid.list_models()})
