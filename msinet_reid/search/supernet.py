"""The MSINet supernet of the architecture search (paper sec. 3.1)."""
from typing import Callable, Iterator, List, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..genotypes import NUM_INTERACTIONS, Genotype
from ..layers import ConvBnAct
from ..models.msinet import InteractionFactory, MSINet, build_cells, init_weights
from .mixed import SEARCH_OPS, MixedInteraction

SEARCH_SPACES = {
    'reference': 'the authors\' supernet: branches sized from each cell\'s input width, one '
                 'global head (512-d pooled feature, BN neck, bias-free classifier)',
    'msinet': 'the final network\'s cells (branches sized from the output width) and heads '
              '(768-d global + part feature, two classifiers)',
}
"""The supernets ``MSINetSupernet(space=...)`` builds."""

TrainOutput = Tuple[List[Tensor], List[Tensor]]


class ReferenceSearchNetwork(nn.Module):
    """The network the authors searched: MSINet's stem and cells, each cell's branches
    ``in_channels // 4`` wide, and one global head without the part branch.

    Outputs: eval mode, the ``(B, 512)`` pooled feature; train mode, ``([logits],
    [feature])``, the logits of a bias-free classifier after a BN neck (frozen shift).
    """

    def __init__(self, num_classes: int, channels: Sequence[int],
                 interaction: InteractionFactory) -> None:
        super().__init__()
        self.feature_dim = channels[-1]
        self.conv1 = ConvBnAct(3, channels[0], 7, stride=2, padding=3)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.cells = build_cells(channels, (SEARCH_OPS[0],) * NUM_INTERACTIONS, interaction,
                                 branches_from='input')
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.head = nn.BatchNorm1d(channels[-1])
        self.classifier = nn.Linear(channels[-1], num_classes, bias=False)
        init_weights(self, linear_std=0.001)
        self.head.bias.requires_grad_(False)

    def forward(self, x: Tensor) -> Union[Tensor, TrainOutput]:
        x = self.maxpool(self.conv1(x))
        for cell in self.cells:
            x = cell(x)
        feature = self.gap(x).flatten(1)
        if not self.training:
            return feature
        return [self.classifier(self.head(feature))], [feature]


class MSINetSupernet(nn.Module):
    """MSINet whose 12 interaction modules are ``MixedInteraction`` ops.

    ``space`` picks the supernet (``SEARCH_SPACES``): ``'reference'`` (default), the one
    the authors searched to find MSINet; ``'msinet'``, the final network's widths and
    heads, so that the searched network is exactly the one trained.

    ``alpha`` is one ``(12, len(ops))`` parameter, drawn as ``1e-3 x N(0, 1)`` after the
    weights. ``arch_parameters()`` (``[alpha]``) and ``weight_parameters()`` (everything
    else) feed two optimisers; ``genotype()`` reads off the strongest op of each module,
    in the form ``register_genotype`` accepts.

    Outputs: eval mode, the ``(B, feature_dim)`` feature (512 for ``'reference'``, 768 for
    ``'msinet'``); train mode, ``(logits, features)``, two lists with one entry per head.

    Example::

        >>> supernet = MSINetSupernet(num_classes=751)
        >>> arch_optimizer = torch.optim.Adam(supernet.arch_parameters(), lr=0.002)
        >>> supernet.feature_dim, len(supernet.genotype())
        (512, 12)
    """

    def __init__(
        self, num_classes: int, space: str = 'reference', ops: Sequence[str] = SEARCH_OPS,
        channels: Sequence[int] = (64, 256, 384, 512),
    ) -> None:
        super().__init__()
        if space not in SEARCH_SPACES:
            raise ValueError(f'unknown search space {space!r}; choose one of '
                             f'{", ".join(SEARCH_SPACES)}')
        self.space = space
        self.ops = tuple(ops)
        mixed = self._mixed_interaction_factory()
        if space == 'reference':
            self.network = ReferenceSearchNetwork(num_classes, channels, mixed)
        else:
            # The skeleton's genotype only names the placeholders the mixed ops replace.
            self.network = MSINet(num_classes, genotype=(self.ops[0],) * NUM_INTERACTIONS,
                                  loss='triplet', channels=channels, interaction=mixed)
        self.feature_dim = self.network.feature_dim
        # Near-uniform start, as in DARTS: every op begins with the same say.
        self.alpha = nn.Parameter(1e-3 * torch.randn(NUM_INTERACTIONS, len(self.ops)))

    def _mixed_interaction_factory(self) -> Callable[[str, int], MixedInteraction]:
        rows = iter(range(NUM_INTERACTIONS))
        return lambda _, width: MixedInteraction(width, self, next(rows), self.ops)

    def forward(self, x: Tensor) -> Union[Tensor, TrainOutput]:
        return self.network(x)

    def mixed_interactions(self) -> List[MixedInteraction]:
        """The 12 mixed ops in genotype order (row ``k`` of alpha is module ``k``'s)."""
        return [m for m in self.network.modules() if isinstance(m, MixedInteraction)]

    def arch_parameters(self) -> List[nn.Parameter]:
        """The architecture parameters: ``[alpha]``, one ``(12, len(ops))`` tensor."""
        return [self.alpha]

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter but alpha: what the model-weight optimiser updates."""
        return (p for p in self.parameters() if p is not self.alpha)

    @torch.no_grad()
    def arch_weights(self) -> Tensor:
        """``(12, len(ops))`` softmax of alpha, one row per interaction module."""
        return torch.softmax(self.alpha, dim=1)

    def genotype(self) -> Genotype:
        """The argmax op of each interaction module."""
        return tuple(self.ops[i] for i in self.alpha.argmax(dim=1).tolist())


__all__ = ['MSINetSupernet', 'ReferenceSearchNetwork', 'SEARCH_SPACES']
