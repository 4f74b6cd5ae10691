"""The MSINet supernet of the architecture search (paper sec. 3.1)."""
from typing import Iterator, List, Sequence

import torch
from torch import Tensor, nn

from ..genotypes import NUM_INTERACTIONS, Genotype
from ..layers.interaction import INTERACTIONS
from ..layers.mixed import MixedInteraction
from .msinet import MSINet


class MSINetSupernet(nn.Module):
    """MSINet whose 12 interaction modules are ``MixedInteraction`` ops.

    The cells are the final network's ``MSICell`` with mixed interactions plugged in,
    so the searched widths are exactly the trained ones. ``arch_parameters()`` (the 12
    alphas) and ``weight_parameters()`` (everything else) feed two optimisers;
    ``genotype()`` reads off the strongest op of each module, in the form
    ``register_genotype`` accepts.

    Outputs: eval mode, the 768-d features MSINet is evaluated with; train mode,
    ``([global_logits, part_logits], [global_features, part_features])``.

    Example::

        >>> supernet = MSINetSupernet(num_classes=751)
        >>> arch_optimizer = torch.optim.Adam(supernet.arch_parameters(), lr=0.002)
        >>> len(supernet.genotype())
        12
    """

    def __init__(
        self, num_classes: int, ops: Sequence[str] = tuple(INTERACTIONS),
        channels: Sequence[int] = (64, 256, 384, 512),
    ) -> None:
        super().__init__()
        # The skeleton's genotype only names the placeholders the mixed ops replace.
        self.network = MSINet(
            num_classes, genotype=(ops[0],) * NUM_INTERACTIONS, loss='triplet',
            channels=channels, interaction=lambda _, width: MixedInteraction(width, ops),
        )
        self.ops = tuple(ops)
        self.feature_dim = self.network.feature_dim

    def forward(self, x: Tensor):
        return self.network(x)

    def mixed_interactions(self) -> List[MixedInteraction]:
        """The 12 mixed ops in genotype order."""
        return [m for m in self.network.modules() if isinstance(m, MixedInteraction)]

    def arch_parameters(self) -> List[nn.Parameter]:
        """The architecture parameters alpha, one ``(len(ops),)`` vector per module."""
        return [m.alpha for m in self.mixed_interactions()]

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter but alpha: what the model-weight optimiser updates."""
        arch = {id(p) for p in self.arch_parameters()}
        return (p for p in self.parameters() if id(p) not in arch)

    @torch.no_grad()
    def arch_weights(self) -> Tensor:
        """``(12, len(ops))`` softmax of alpha, one row per interaction module."""
        return torch.stack([m.weights() for m in self.mixed_interactions()])

    def genotype(self) -> Genotype:
        """The argmax op of each interaction module."""
        return tuple(m.chosen for m in self.mixed_interactions())


__all__ = ['MSINetSupernet']
