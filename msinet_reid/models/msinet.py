"""MSINet: Multi-Scale Interaction Net (Gu et al., CVPR 2023), the whole family.

Reference: "MSINet: Twins Contrastive Search of Multi-Scale Interaction for Object
ReID", https://arxiv.org/abs/2303.07065. Module names and shapes follow the authors'
implementation, so their checkpoints load unchanged.
"""
from typing import Callable, List, Optional, Sequence, Tuple, Type, Union

import torch
from torch import Tensor, nn

from ..genotypes import GENOTYPES, Genotype, parse_genotype
from ..layers import INTERACTIONS, ConvBnAct, SpatialAlignModule, light_conv_stack
from ..weights import (
    PathLike, PretrainedWeights, PretrainedWeightsError, load_pretrained, resolve_weights,
)
from .registry import register_model

LOSSES = ('softmax', 'triplet')
# Modules only the train-mode outputs use (the eval-mode feature is taken before them):
# those the logits pass through, and the Spatial Alignment Module, which only its loss reads.
CLASSIFIER_HEADS = ('head', 'fc', 'classifier', 'f_head', 'f_fc', 'f_classifier')
TRAINING_HEADS = CLASSIFIER_HEADS + ('align_module',)

InteractionFactory = Callable[[str, int], nn.Module]
"""Builds an interaction module from a genotype token and the branch width."""


def build_interaction(op: str, channels: int) -> nn.Module:
    """The interaction module a genotype token names (the default ``InteractionFactory``)."""
    return INTERACTIONS[op](channels)


# ImageNet-pretrained MSINet published by the paper's authors (reference layout).
MSINET_IMAGENET = PretrainedWeights(
    filename='msinet_msmt.pth.tar',
    gdrive_id='1ZNLDbtpsraiF149htbyhbh3UjCwREi9p',
    description='ImageNet-pretrained MSINet',
)


class MSICell(nn.Module):
    """Multi-Scale Interaction cell (paper Fig. 2).

    Two branches of a 1x1 reduction and light 3x3 convolutions at depths 1 and 3 (scale
    ratio 3:1), interacting twice, fused by a sum and added to the input. ``interaction``
    builds the two interaction modules (the architecture search plugs in mixed ones).
    The branches are ``out_channels // bottleneck`` wide, or ``mid_channels``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, ops: Sequence[str],
        bottleneck: int = 4, depths: Tuple[int, int] = (1, 3),
        interaction: InteractionFactory = build_interaction, mid_channels: Optional[int] = None,
    ) -> None:
        super().__init__()
        mid = mid_channels or out_channels // bottleneck
        self.conv1a = ConvBnAct(in_channels, mid)
        self.conv1b = ConvBnAct(in_channels, mid)
        self.conv2a = light_conv_stack(mid, depths[0])
        self.conv2b = light_conv_stack(mid, depths[1])
        self._op2 = interaction(ops[0], mid)
        self.conv3a = light_conv_stack(mid, depths[0])
        self.conv3b = light_conv_stack(mid, depths[1])
        self._op3 = interaction(ops[1], mid)
        self.conv4a = ConvBnAct(mid, out_channels, act=False)
        self.conv4b = ConvBnAct(mid, out_channels, act=False)
        self.downsample = (
            ConvBnAct(in_channels, out_channels, act=False) if in_channels != out_channels else None
        )

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.conv1a(x), self.conv1b(x)
        a, b = self._op2(self.conv2a(a), self.conv2b(b))
        a, b = self._op3(self.conv3a(a), self.conv3b(b))
        identity = x if self.downsample is None else self.downsample(x)
        # In place: saves two full-size temporaries per cell (autograd allows it here).
        out = self.conv4a(a).add_(self.conv4b(b)).add_(identity)
        return out.relu_()


def _transition(channels: int) -> nn.Module:
    """Down-sampling between stages: 1x1 conv block, then 2x2 average pooling."""
    return nn.Sequential(ConvBnAct(channels, channels), nn.AvgPool2d(2, stride=2))


def build_cells(
    channels: Sequence[int], genotype: Sequence[str],
    interaction: InteractionFactory = build_interaction, branches_from: str = 'output',
) -> nn.ModuleList:
    """MSINet's three stages: two cells each, with a transition after the first two.

    ``branches_from='output'`` sizes each cell's branches from its output width, as the
    final network does; ``'input'`` from its input width, as the reference supernet did.
    """
    if branches_from not in ('input', 'output'):
        raise ValueError(f"branches_from must be 'input' or 'output', got {branches_from!r}")
    cells = nn.ModuleList()
    ops = iter(genotype)
    for stage, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
        for width in (c_in, c_out):
            mid = width // 4 if branches_from == 'input' else None
            cells.append(MSICell(width, c_out, (next(ops), next(ops)),
                                 interaction=interaction, mid_channels=mid))
        if stage < 2:
            cells.append(_transition(c_out))
    return cells


def init_weights(module: nn.Module, linear_std: float = 0.01) -> None:
    """The authors' initialisation: Kaiming (fan-out) convolutions, unit BatchNorm,
    ``N(0, linear_std)`` linear layers, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, linear_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class MSINet(nn.Module):
    """MSINet backbone with its global and fine-grained part heads.

    Args:
        num_classes: number of training identities (classifier outputs).
        genotype: 12 interaction operations, or a named genotype (see ``GENOTYPES``).
        loss: ``'softmax'`` or ``'triplet'``; selects the train-mode outputs.
        sam: add the Spatial Alignment Module's parameters (training-only).
        channels: stem width, then the output width of each of the three stages.
        interaction: builds each interaction module from its genotype token and width.

    Outputs follow torchreid's contract:

    - eval mode: ``(B, 768)`` features, the 512-d global and 256-d part features
      before the BN necks;
    - train mode, ``loss='softmax'``: ``[global_logits, part_logits]``;
    - train mode, ``loss='triplet'``: ``([global_logits, part_logits],
      [global_features, part_features])``, features before the BN necks;
    - ``return_featuremaps=True``: the final ``(B, 512, H/16, W/16)`` feature maps.

    Example::

        >>> model = MSINet(num_classes=751, genotype='msinet').eval()
        >>> model(torch.randn(2, 3, 256, 128)).shape
        torch.Size([2, 768])
    """

    part_channels = 128

    def __init__(
        self, num_classes: int, genotype: Union[str, Sequence[str]] = 'msinet',
        loss: str = 'softmax', sam: bool = False,
        channels: Sequence[int] = (64, 256, 384, 512),
        interaction: InteractionFactory = build_interaction,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f'unsupported loss {loss!r}; MSINet supports {", ".join(LOSSES)}')
        self.genotype: Genotype = parse_genotype(genotype)
        self.loss = loss
        self.feature_dim = channels[-1] + 2 * self.part_channels

        self.conv1 = ConvBnAct(3, channels[0], 7, stride=2, padding=3)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.cells = build_cells(channels, self.genotype, interaction)
        # Stage-2 output (after its transition) feeds the part head.
        self.part_source = 5

        self.gap = nn.AdaptiveAvgPool2d(1)
        self.head = nn.BatchNorm1d(channels[-1])  # BN neck
        self.fc = nn.Linear(channels[-1], channels[-1], bias=False)
        self.classifier = nn.Linear(channels[-1], num_classes)

        self.f_conv = nn.Conv2d(channels[-2], self.part_channels, 1)
        self.f_head = nn.BatchNorm1d(2 * self.part_channels)
        self.f_fc = nn.Linear(2 * self.part_channels, 2 * self.part_channels, bias=False)
        self.f_classifier = nn.Linear(2 * self.part_channels, num_classes)

        self.align_module = SpatialAlignModule(channels[-1]) if sam else None
        self._init_params()

    def _init_params(self) -> None:
        init_weights(self)
        # BNNeck: the necks' shift stays zero.
        self.head.bias.requires_grad_(False)
        self.f_head.bias.requires_grad_(False)

    def featuremaps(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Return the final feature maps and the stage-2 maps that feed the part head."""
        x = self.maxpool(self.conv1(x))
        for cell in self.cells[:self.part_source + 1]:
            x = cell(x)
        part = x
        for cell in self.cells[self.part_source + 1:]:
            x = cell(x)
        return x, part

    def part_features(self, x: Tensor) -> Tensor:
        """Pool the upper and lower halves of the projected stage-2 maps: ``(B, 256)``."""
        x = self.f_conv(x)
        half = x.shape[2] // 2
        if half == 0:
            raise ValueError(
                f'the part head splits the stage-2 feature map into upper and lower halves, '
                f'but it is only {x.shape[2]} high for this input; use images at least 32 '
                f'pixels high'
            )
        return torch.cat((x[:, :, :half].mean((2, 3)), x[:, :, half:].mean((2, 3))), dim=1)

    def pool_features(self, x: Tensor, part: Tensor) -> Tuple[Tensor, Tensor]:
        """The 512-d global feature of the final maps and the 256-d part feature of the
        stage-2 maps (both before the BN necks)."""
        return self.gap(x).flatten(1), self.part_features(part)

    def logits(self, v: Tensor, f_v: Tensor) -> List[Tensor]:
        """Classify the global and the part feature, each through its BN neck."""
        return [
            self.classifier(self.head(self.fc(v))),
            self.f_classifier(self.f_head(self.f_fc(f_v))),
        ]

    def forward(self, x: Tensor, return_featuremaps: bool = False):
        x, part = self.featuremaps(x)
        if return_featuremaps:
            return x
        v, f_v = self.pool_features(x, part)
        if not self.training:
            return torch.cat((v, f_v), dim=1)
        logits = self.logits(v, f_v)
        if self.loss == 'softmax':
            return logits
        return logits, [v, f_v]


def _create_msinet(
    genotype: Union[str, Sequence[str]], num_classes: int, loss: str, pretrained: bool,
    weights: Optional[PretrainedWeights] = None, pretrained_path: Optional[PathLike] = None,
    model_cls: Type[MSINet] = MSINet, **kwargs,
) -> MSINet:
    model = model_cls(num_classes, genotype, loss=loss, **kwargs)
    if pretrained:
        if weights is None and pretrained_path is None:
            raise PretrainedWeightsError(
                'no pretrained weights are published for this genotype; build the model with '
                'pretrained=False, or pass pretrained_path= to a checkpoint of your own'
            )
        path = pretrained_path if weights is None else resolve_weights(weights, pretrained_path)
        print(load_pretrained(model, path))
    return model


def msinet(num_classes: int, loss: str = 'softmax', pretrained: bool = True, use_gpu: bool = True,
           **kwargs) -> MSINet:
    """MSINet (paper Table 1), searched on MSMT17; ImageNet-pretrained weights available.

    ``use_gpu`` is accepted for torchreid's factory signature and ignored: move the model
    with ``.to(device)``. ``pretrained_path=`` names a local checkpoint; ``model_cls=``
    builds a subclass of MSINet instead (the timm integration's ``TimmMSINet``).

    Example::

        >>> import torchreid, msinet_reid
        >>> model = torchreid.models.build_model('msinet', num_classes=751, loss='triplet',
        ...                                      pretrained=False)
    """
    return _create_msinet('msinet', num_classes, loss, pretrained, MSINET_IMAGENET, **kwargs)


register_model(msinet, weights=MSINET_IMAGENET)
register_model(msinet, name='msinet_x1_0', weights=MSINET_IMAGENET)


@register_model
def msinet_vr(num_classes: int, loss: str = 'softmax', pretrained: bool = True,
              use_gpu: bool = True, **kwargs) -> MSINet:
    """MSINet-VR (paper Table 7), searched on VeRi-776; no published weights."""
    return _create_msinet('msinet_vr', num_classes, loss, pretrained, **kwargs)


@register_model
def msinet_s(num_classes: int, loss: str = 'softmax', pretrained: bool = True,
             use_gpu: bool = True, **kwargs) -> MSINet:
    """MSINet-S (paper Table 7), searched with softmax loss; no published weights."""
    return _create_msinet('msinet_s', num_classes, loss, pretrained, **kwargs)


def msinet_sam(num_classes: int, loss: str = 'softmax', pretrained: bool = True,
               use_gpu: bool = True, **kwargs) -> MSINet:
    """MSINet with the Spatial Alignment Module (paper sec. 3.3); same outputs as ``msinet``.

    Pretrained loading fills everything but the SAM parameters from MSINet's checkpoint.
    """
    return _create_msinet(
        'msinet', num_classes, loss, pretrained, MSINET_IMAGENET, sam=True, **kwargs
    )


register_model(msinet_sam, weights=MSINET_IMAGENET)


def register_genotype(name: str, genotype: Union[str, Sequence[str]]) -> Callable:
    """Register a searched architecture as torchreid model ``name``.

    Example::

        >>> import torchreid, msinet_reid
        >>> msinet_reid.register_genotype(
        ...     'my_msinet', 'ag ag exc ag cross_att ag ag none ag cross_att exc cross_att')
        >>> model = torchreid.models.build_model('my_msinet', 751, pretrained=False)
    """
    genotype = parse_genotype(genotype)

    def factory(num_classes: int, loss: str = 'softmax', pretrained: bool = True,
                use_gpu: bool = True, **kwargs) -> MSINet:
        return _create_msinet(genotype, num_classes, loss, pretrained, **kwargs)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f'MSINet with the searched genotype: {" ".join(genotype)}.'
    return register_model(factory, name)


__all__ = [
    'CLASSIFIER_HEADS', 'GENOTYPES', 'InteractionFactory', 'LOSSES', 'MSICell', 'MSINET_IMAGENET',
    'MSINet', 'TRAINING_HEADS', 'build_cells', 'build_interaction', 'init_weights', 'msinet',
    'msinet_s', 'msinet_sam', 'msinet_vr', 'register_genotype',
]
