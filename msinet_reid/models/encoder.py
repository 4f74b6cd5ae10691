"""MSINet as an embedding encoder with the interface of SpCL-family ResNet encoders.

SpCL (github yxgeee/SpCL), IDM (github SikaStar/IDM) and the many projects derived from
them build their ResNet encoders with ``models.create(name, pretrained=True,
cut_at_pooling=False, num_features=0, norm=False, dropout=0, num_classes=0)``.
:class:`MSINetEncoder` honours the same keywords and SpCL's outputs, so their memories,
clustering, DSBN conversion and trainers take MSINet unchanged; this package's own
unsupervised training (:mod:`msinet_reid.unsupervised`) trains it too.

One embedding from MSINet's two heads: the 512-d global feature (average-pooled final
maps) and the 256-d part feature (upper and lower halves of the stage-2 maps) are
concatenated into the 768-d feature that MSINet's eval mode returns, and that vector takes
the place of ResNet's pooled feature: optional ``feat`` Linear, then the ``feat_bn``
BatchNorm. A BatchNorm normalises each channel on its own, so ``feat_bn`` over the
concatenation is exactly MSINet's two BN necks side by side; MSINet's torchreid heads
(necks, fc layers, classifiers, SAM) are removed, leaving no unused parameters.
"""
from collections import OrderedDict
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._torchreid import model_factory
from ..weights import PathLike
from .msinet import TRAINING_HEADS, MSICell, MSINet
from .registry import list_models


def _group_stages(body: MSINet) -> Tuple[List[nn.Sequential], int]:
    """MSINet's flat cells split after each down-sampling transition: its three stages.

    Also returns the stage whose output feeds the part head.
    """
    stages, current, part_stage = [], [], None
    last = len(body.cells) - 1
    for index, cell in enumerate(body.cells):
        current.append(cell)
        if not isinstance(cell, MSICell) or index == last:  # a transition ends a stage
            if index == body.part_source:
                part_stage = len(stages)
            stages.append(nn.Sequential(*current))
            current = []
    return stages, part_stage


def build_body(arch: str = 'msinet', pretrained: bool = True,
               pretrained_path: Optional[PathLike] = None) -> MSINet:
    """The MSINet ``arch`` without its torchreid heads, cells grouped into named stages.

    ``arch`` is any MSINet registered with torchreid (``msinet``, ``msinet_vr``,
    ``msinet_s``, or one added with ``register_genotype``); ``pretrained`` loads weights
    through the torchreid factory, as ``torchreid.models.build_model`` does.

    The cells become ``cells.layer1``, ``cells.layer2``, ``cells.layer3``, named like
    torchvision ResNet's stages: name-based tools written for ResNet (IDM's
    ``filter_layers`` + ``convert_dsbn_idm``) then address MSINet's stages correctly,
    where MSINet's index names would misfire (``'3'`` is part of ``conv3a``).
    ``featuremaps`` and ``part_features`` work as before.
    """
    if arch not in list_models():
        raise KeyError(f'unknown MSINet {arch!r}: use one of {", ".join(list_models())}, '
                       f'or register a genotype with msinet_reid.register_genotype')
    kwargs = {} if pretrained_path is None else {'pretrained_path': pretrained_path}
    body = model_factory()[arch](num_classes=1, pretrained=pretrained, **kwargs)
    for name in TRAINING_HEADS:  # replaced by the encoder's own feat/feat_bn/classifier
        setattr(body, name, None)
    stages, part_stage = _group_stages(body)
    body.cells = nn.Sequential(OrderedDict(
        (f'layer{index}', stage) for index, stage in enumerate(stages, start=1)
    ))
    body.part_source = part_stage  # featuremaps() now slices whole stages
    return body


def stage_channels(body: MSINet) -> List[int]:
    """Output channels after the stem and after each stage of a :func:`build_body` body."""
    widths = [body.conv1.bn.num_features]
    for stage in body.cells:
        last_bn = [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)][-1]
        widths.append(last_bn.num_features)
    return widths


class MSINetEncoder(nn.Module):
    """MSINet behind SpCL's ResNet encoder interface.

    Args:
        arch: registered MSINet to build (``msinet``, ``msinet_vr``, ``msinet_s``, ...).
        pretrained: load the ImageNet weights (only ``msinet`` has published ones).
        cut_at_pooling: return the 768-d pooled feature and nothing else.
        num_features: if positive, a Linear to this width before ``feat_bn``;
            otherwise the embedding is the 768-d pooled feature itself.
        norm: L2-normalise the train-mode embedding (else ReLU after ``feat``).
        dropout: dropout rate on the train-mode embedding.
        num_classes: if positive, a bias-free classifier whose logits train mode returns.
        pretrained_path: a local checkpoint for ``pretrained=True``.

    Outputs, as SpCL's ResNet: eval mode, the L2-normalised ``feat_bn`` embedding
    ``(B, num_features)``; train mode, that embedding (normalised when ``norm``, ReLU'd
    when there is a ``feat`` and no ``norm``, after dropout), or the classifier's logits
    when ``num_classes > 0``. ``num_features`` is the embedding width (768 unless
    given; also set with ``cut_at_pooling``, where SpCL leaves it undefined).

    Example::

        >>> model = MSINetEncoder(pretrained=False, num_features=0, norm=True).eval()
        >>> model.num_features, model(torch.randn(2, 3, 256, 128)).shape
        (768, torch.Size([2, 768]))
    """

    def __init__(
        self, arch: str = 'msinet', pretrained: bool = True, cut_at_pooling: bool = False,
        num_features: int = 0, norm: bool = False, dropout: float = 0.,
        num_classes: int = 0, pretrained_path: Optional[PathLike] = None,
    ) -> None:
        super().__init__()
        self.pretrained = pretrained
        self.cut_at_pooling = cut_at_pooling
        self.base = build_body(arch, pretrained, pretrained_path)
        pooled_dim = self.base.feature_dim
        self.num_features = pooled_dim
        if cut_at_pooling:
            return
        self.norm = norm
        self.dropout = dropout
        self.has_embedding = num_features > 0
        self.num_classes = num_classes
        if self.has_embedding:
            self.num_features = num_features
            self.feat = nn.Linear(pooled_dim, num_features)
            nn.init.kaiming_normal_(self.feat.weight, mode='fan_out')
            nn.init.zeros_(self.feat.bias)
        self.feat_bn = nn.BatchNorm1d(self.num_features)
        self.feat_bn.bias.requires_grad_(False)
        if dropout > 0:
            self.drop = nn.Dropout(dropout)
        if num_classes > 0:
            self.classifier = nn.Linear(self.num_features, num_classes, bias=False)
            nn.init.normal_(self.classifier.weight, std=0.001)

    def pool(self, x: Tensor) -> Tensor:
        """MSINet's 768-d feature: global (512) and part (256) pooled features, concatenated."""
        maps, part = self.base.featuremaps(x)
        return torch.cat((self.base.gap(maps).flatten(1), self.base.part_features(part)), dim=1)

    def bn_embedding(self, pooled: Tensor) -> Tensor:
        """``feat_bn(feat(pooled))``, or ``feat_bn(pooled)`` without ``num_features``."""
        return self.feat_bn(self.feat(pooled) if self.has_embedding else pooled)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pool(x)
        if self.cut_at_pooling:
            return pooled
        embedding = self.bn_embedding(pooled)
        if not self.training:
            return F.normalize(embedding)
        if self.norm:
            embedding = F.normalize(embedding)
        elif self.has_embedding:
            embedding = F.relu(embedding)
        if self.dropout > 0:
            embedding = self.drop(embedding)
        return self.classifier(embedding) if self.num_classes > 0 else embedding
