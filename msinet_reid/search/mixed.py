"""The mixed interaction operation of the architecture search (paper eq. 1)."""
from typing import Sequence, Tuple

import torch
from torch import Tensor, nn

from ..layers.interaction import INTERACTIONS

SEARCH_OPS = ('none', 'ag', 'cross_att', 'exc')
"""The search space's operations, in the reference implementation's order (alpha's columns)."""


class MixedInteraction(nn.Module):
    """All interaction operations in parallel, summed with weights ``softmax(alpha[row])``.

    ``alpha`` is the ``(12, len(ops))`` architecture parameter that ``arch`` (the supernet)
    owns: it is registered, saved and moved there once, and every mixed op reads its own
    row at each call. ``chosen`` is the operation the search currently prefers: the one
    with the largest weight.

    Example::

        >>> arch = nn.Module()
        >>> arch.alpha = nn.Parameter(1e-3 * torch.randn(12, 4))
        >>> mixed = MixedInteraction(64, arch, row=0)
        >>> a, b = mixed(torch.randn(2, 64, 8, 4), torch.randn(2, 64, 8, 4))
        >>> mixed.chosen in SEARCH_OPS
        True
    """

    def __init__(self, channels: int, arch: nn.Module, row: int,
                 ops: Sequence[str] = SEARCH_OPS) -> None:
        super().__init__()
        unknown = [op for op in ops if op not in INTERACTIONS]
        if unknown or not ops:
            raise ValueError(f'search ops must be a non-empty selection of '
                             f'{", ".join(INTERACTIONS)}; got {list(ops)}')
        self.ops = nn.ModuleDict({op: INTERACTIONS[op](channels) for op in ops})
        # In a tuple, so that ``arch`` is not registered as a submodule of its own child.
        self._arch = (arch,)
        self.row = row

    @property
    def alpha(self) -> Tensor:
        return self._arch[0].alpha[self.row]

    def weights(self) -> Tensor:
        """``softmax(alpha[row])``: the weight of each op, in the order of ``self.ops``."""
        return torch.softmax(self.alpha, dim=0)

    @property
    def chosen(self) -> str:
        return list(self.ops)[int(self.alpha.argmax())]

    def forward(self, x1: Tensor, x2: Tensor) -> Tuple[Tensor, Tensor]:
        out1 = out2 = 0
        for weight, op in zip(self.weights(), self.ops.values()):
            y1, y2 = op(x1, x2)
            out1 = out1 + weight * y1
            out2 = out2 + weight * y2
        return out1, out2
