"""Inference models for deployment: BatchNorm folded, training-only parts dropped.

``InferenceModel(model)`` is a copy of a trained MSINet that computes the same eval-mode
features with less work: every BatchNorm that follows a convolution is folded into it,
the parts that only training uses (classifiers, BN necks and their linear layers, SAM's
alignment module) are removed, and the convolutions run on channels-last tensors.
``load_trained`` builds a model from a checkpoint for deployment.
"""
import copy
from typing import Iterator, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .._torchreid import models
from ..models import list_models
from ..model_card import card_settings
from ..models.msinet import TRAINING_HEADS as TRAINING_ONLY, MSINet
from ..weights import PathLike, PretrainedWeightsError, load_state_dict_file


def _conv_bn_pairs(module: nn.Module) -> Iterator[Tuple[nn.Sequential, str, str]]:
    """``(sequential, conv_name, bn_name)`` for every BatchNorm2d right after a Conv2d."""
    for parent in module.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                yield parent, conv_name, bn_name


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> int:
    """Fold, in place, each BatchNorm2d that follows a Conv2d in a Sequential into it.

    The convolution gains the BatchNorm's eval-mode affine map (running statistics, then
    scale and shift) and the BatchNorm becomes an ``nn.Identity``. Returns how many were
    folded.

    Example::

        >>> block = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)).eval()
        >>> fold_batchnorm(block), block[1]
        (1, Identity())
    """
    pairs = list(_conv_bn_pairs(module))
    for parent, conv_name, bn_name in pairs:
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        setattr(parent, conv_name, fuse_conv_bn_eval(conv.eval(), bn.eval()))
        setattr(parent, bn_name, nn.Identity())
    return len(pairs)


class InferenceModel(nn.Module):
    """A trained MSINet reduced to what its eval-mode features need.

    Returns the same ``(B, 768)`` features as ``model.eval()(images)``. It cannot be
    trained: train the original model and convert it again.

    Args:
        model: a trained MSINet (left unchanged; the inference model holds a copy).
        channels_last: run the convolutions on channels-last (NHWC) tensors, which
            oneDNN (CPU) and cuDNN run without converting layouts at every layer.

    Example::

        >>> model = torchreid.models.build_model('msinet', 751, pretrained=False)
        >>> fast = InferenceModel(model)  # after training
        >>> fast(torch.randn(2, 3, 256, 128)).shape
        torch.Size([2, 768])
    """

    def __init__(self, model: MSINet, channels_last: bool = True) -> None:
        super().__init__()
        if not isinstance(model, MSINet):
            raise TypeError(f'InferenceModel converts MSINet models, got {type(model).__name__}')
        net = copy.deepcopy(model).eval()
        for name in TRAINING_ONLY:
            delattr(net, name)
        fold_batchnorm(net)
        self.net = net
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.feature_dim = model.feature_dim
        self.eval()

    def train(self, mode: bool = True) -> 'InferenceModel':
        if mode:
            raise RuntimeError(
                'an InferenceModel cannot be trained (its BatchNorms are folded and its '
                'classifiers removed); train the original model and convert it again'
            )
        return super().train(False)

    def forward(self, images: Tensor) -> Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images)


def feature_model(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """A copy of ``model`` that computes its eval-mode features, for export: an MSINet's
    :class:`InferenceModel`, any other torchreid model (ResNet, OSNet) as it is.

    Example::

        >>> feature_model(torchreid.models.build_model('osnet_x1_0', 751)).training
        False
    """
    if isinstance(model, MSINet):
        return InferenceModel(model, channels_last)
    return copy.deepcopy(model).eval()


def load_trained(model_name: Optional[str], weights: PathLike) -> MSINet:
    """Build the registered model ``model_name`` with the weights of a trained checkpoint.

    Reads checkpoints of torchreid's engines and bare state_dicts. Every tensor the
    eval-mode features need must be in the checkpoint; classifiers may differ (their
    size follows the checkpoint's number of training identities) or be absent. With
    ``model_name=None`` the model is the one the model card beside the checkpoint names
    (:mod:`msinet_reid.model_card`, written by ``msinet-reid train``).

    Example::

        >>> model = load_trained('msinet', 'log/msinet/model/model.pth.tar-60')
        >>> model = load_trained(None, 'log/my_crops/model/model.pth.tar-60')  # its card's
    """
    if model_name is None:
        card = card_settings(weights)
        if card is None:
            raise ValueError(f'no model card beside {weights}: name its model '
                             f'(one of {", ".join(list_models())})')
        model_name = card['model']
    state = load_state_dict_file(weights)
    classifier = state.get('classifier.weight')
    num_classes = classifier.shape[0] if classifier is not None else 1
    model = models.build_model(model_name, num_classes, pretrained=False)
    if not isinstance(model, MSINet):
        raise ValueError(
            f'{model_name!r} is not an MSINet model; choose one of msinet_reid.list_models()'
        )
    own = model.state_dict()
    problems = _feature_mismatch(own, state)
    if problems:
        holders = [name for name in list_models() if name != model_name and not
                   _feature_mismatch(models.build_model(name, 1, pretrained=False).state_dict(),
                                     state)]
        found = (f'it holds {" / ".join(holders)} weights: pass --model {holders[0]}'
                 if holders else 'it matches no registered MSINet model; check the file')
        raise PretrainedWeightsError(
            f'{weights} does not hold {model_name} weights ({"; ".join(problems)}); {found}.')
    model.load_state_dict({key: value for key, value in state.items() if key in own}, strict=False)
    return model.eval()


def _feature_mismatch(own: dict, state: dict) -> List[str]:
    """How ``state`` fails to give every tensor of ``own`` that eval-mode features need."""
    needed = {key for key in own if key.split('.')[0] not in TRAINING_ONLY}
    missing = sorted(needed - set(state))
    wrong = sorted(key for key in needed & set(state) if state[key].shape != own[key].shape)
    return [f'{len(keys)} tensors {what}, e.g. {", ".join(keys[:3])}'
            for keys, what in ((missing, 'missing'), (wrong, 'of another shape')) if keys]
