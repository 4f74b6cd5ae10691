"""MSINet with the encoder contracts of IDM (github SikaStar/IDM, ICCV 2021).

IDM's trainers unpack more than SpCL's: its plain ResNet (``resnet50``, trained by
``train_baseline.py``) returns ``(logits, pooled features)`` in training, where SpCL's
returns the logits alone. :class:`MSINetIDMEncoder` gives IDM's outputs.

IDM's ``resnet50_idm`` puts an intermediate-domain mixing module after one of its stages,
chosen per call with ``forward(x, stage=k)``. In training the batch is source images then
target images; the module returns the source, target and mixed features stacked
(``3n`` rows for ``n`` of each) and the mixing ratios ``(n, 2)`` (source weight, target
weight), and IDM's trainer expects ``(logits, pooled features, ratios)`` back.
:class:`MSINetIDM` offers four mixing points: 0 after the stem, 1-3 after each of
MSINet's three stages.
"""
import importlib
from typing import List, Optional, Tuple, Type, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models import MSINetEncoder
from ..models.encoder import stage_channels
from ..weights import PathLike

IDM_MODULE = 'idm.models.idm_module'
NUM_STAGES = 4  # mixing points: after the stem and after each of the three stages


def find_mixing_module() -> Type[nn.Module]:
    """IDM's mixing module class, ``idm.models.idm_module.IDM``, from the user's IDM install."""
    try:
        return getattr(importlib.import_module(IDM_MODULE), 'IDM')
    except (ImportError, AttributeError) as error:
        raise ImportError(
            f'MSINet\'s IDM variant takes its mixing module from IDM, but "from {IDM_MODULE} '
            f'import IDM" failed ({error}). Run from an IDM checkout (github SikaStar/IDM) '
            f'or put it on PYTHONPATH, or pass the class: mixing_module=IDM'
        ) from error


def _check_stage(stage: int) -> None:
    if not isinstance(stage, int) or not 0 <= stage < NUM_STAGES:
        raise ValueError(
            f'stage={stage!r}: MSINet mixes after the stem (0) or after one of its three '
            f'stages (1, 2, 3); ResNet-50\'s stage 4 has no MSINet counterpart, use 3'
        )


def idm_bn_names(stage: int) -> List[str]:
    """Names for IDM's ``convert_dsbn_idm`` that select the BatchNorms after mixing point ``stage``.

    Those layers see source, target and mixed features and need IDM's 3-way BN; the
    others get 2-way DSBN. IDM matches each name as a substring of module names; these
    are the stage containers of :func:`~msinet_reid.models.build_body` and
    ``feat_bn``, which no other MSINet module name contains. For stages 0-3 this is the
    list IDM's own ``filter_layers(stage)`` returns, so ``train_idm.py`` runs unchanged.

    Example::

        >>> idm_bn_names(1)
        ['layer2', 'layer3', 'feat_bn']
    """
    _check_stage(stage)
    return [f'layer{index}' for index in range(stage + 1, NUM_STAGES)] + ['feat_bn']


def _mix(features: Tensor, ratios: Tensor) -> Tensor:
    """Stack source, target and their mix, as IDM's module does with feature maps."""
    source, target = features.chunk(2)
    return torch.cat((source, target, ratios[:, :1] * source + ratios[:, 1:] * target))


class MSINetIDMEncoder(MSINetEncoder):
    """MSINet behind IDM's plain ResNet interface: :class:`MSINetEncoder` with IDM's outputs.

    ``forward(x, output_prob=False)`` returns, as IDM's ``resnet50`` does:

    - eval mode (and ``output_prob=False``): the L2-normalised BN embedding;
    - ``cut_at_pooling``: the 768-d pooled features;
    - ``num_classes == 0``: the train-mode embedding (ReLU after ``feat`` without
      ``norm``; not normalised with ``norm``);
    - ``num_classes > 0``: ``(logits, pooled)``, or ``(logits, pooled, normalised
      embedding)`` with ``norm=True``; eval mode with ``output_prob=True`` too.

    Example::

        >>> model = MSINetIDMEncoder(pretrained=False, num_classes=100).train()
        >>> logits, pooled = model(torch.randn(4, 3, 256, 128))
        >>> logits.shape, pooled.shape
        (torch.Size([4, 100]), torch.Size([4, 768]))
    """

    def forward(self, x: Tensor, output_prob: bool = False
                ) -> Union[Tensor, Tuple[Tensor, ...]]:
        return self.idm_outputs(self.pool(x), output_prob)

    def idm_outputs(self, pooled: Tensor, output_prob: bool, *extra: Optional[Tensor]
                    ) -> Union[Tensor, Tuple[Optional[Tensor], ...]]:
        """IDM's outputs from the pooled features; ``extra`` follows ``(logits, pooled)``
        when there is no ``norm``."""
        if self.cut_at_pooling:
            return pooled
        embedding = self.bn_embedding(pooled)
        if not self.training and not output_prob:
            return F.normalize(embedding)
        if self.norm:
            normalised = F.normalize(embedding)  # IDM's classifier sees the unnormalised one
        elif self.has_embedding:
            embedding = F.relu(embedding)
        if self.dropout > 0:
            embedding = self.drop(embedding)
        if self.num_classes == 0:
            return embedding
        logits = self.classifier(embedding)
        return (logits, pooled, normalised) if self.norm else (logits, pooled, *extra)


class MSINetIDM(MSINetIDMEncoder):
    """MSINet behind IDM's ``resnet50_idm`` interface.

    Takes :class:`~msinet_reid.models.MSINetEncoder`'s arguments, plus
    ``mixing_module``: the class of IDM's mixing module, built as ``cls(channel=C)`` for
    each mixing point; by default ``idm.models.idm_module.IDM`` from the user's IDM.

    ``forward(x, output_prob=False, stage=0)``:

    - eval mode (and ``output_prob=False``): the L2-normalised BN embedding, no mixing;
    - ``cut_at_pooling``: the 768-d pooled features (``3n`` rows in training);
    - train mode, ``num_classes == 0``: the BN embedding (``3n`` rows);
    - train mode, ``num_classes > 0``: ``(logits, pooled, ratios)``, or ``(logits,
      pooled, normalised embedding)`` with ``norm=True``, as IDM's ResNet returns.
      ``ratios`` is ``None`` when no mixing ran (eval with ``output_prob=True``).

    Mixing after stage 3 comes after the part head's source (stage 2), so the part
    features are mixed with the same ratios; the part head is affine and the ratios sum
    to one, so this equals mixing its stage-2 input.

    Example::

        >>> from idm.models.idm_module import IDM
        >>> model = MSINetIDM(pretrained=False, num_classes=1000, mixing_module=IDM)
        >>> logits, pooled, ratios = model(torch.randn(8, 3, 256, 128), stage=2)
        >>> logits.shape, pooled.shape, ratios.shape
        (torch.Size([12, 1000]), torch.Size([12, 768]), torch.Size([4, 2]))
    """

    def __init__(
        self, arch: str = 'msinet', pretrained: bool = True, cut_at_pooling: bool = False,
        num_features: int = 0, norm: bool = False, dropout: float = 0.,
        num_classes: int = 0, pretrained_path: Optional[PathLike] = None,
        mixing_module: Optional[Type[nn.Module]] = None,
    ) -> None:
        super().__init__(arch, pretrained, cut_at_pooling, num_features, norm, dropout,
                         num_classes, pretrained_path)
        mixing_module = mixing_module or find_mixing_module()
        self.idm = nn.ModuleList(mixing_module(channel=c) for c in stage_channels(self.base))

    def pool_mixed(self, x: Tensor, stage: int) -> Tuple[Tensor, Optional[Tensor]]:
        """Pooled features with mixing at ``stage`` in training; ``(pooled, ratios)``."""
        body, ratios = self.base, None
        mixing = self.training
        x = body.maxpool(body.conv1(x))
        if mixing and stage == 0:
            x, ratios = self.idm[0](x)
        for index, layer in enumerate(body.cells, start=1):
            x = layer(x)
            if mixing and stage == index:
                x, ratios = self.idm[index](x)
            if index == body.part_source + 1:
                part = body.part_features(x)
        if mixing and stage > body.part_source + 1:  # mixed after the part head's source
            part = _mix(part, ratios)
        return torch.cat((body.gap(x).flatten(1), part), dim=1), ratios

    def forward(self, x: Tensor, output_prob: bool = False, stage: int = 0
                ) -> Union[Tensor, Tuple[Optional[Tensor], ...]]:
        _check_stage(stage)
        pooled, ratios = self.pool_mixed(x, stage)
        return self.idm_outputs(pooled, output_prob, ratios)
