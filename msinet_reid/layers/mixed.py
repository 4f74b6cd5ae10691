"""The mixed interaction operation of the architecture search (paper eq. 1)."""
from typing import Sequence, Tuple

import torch
from torch import Tensor, nn

from .interaction import INTERACTIONS


class MixedInteraction(nn.Module):
    """All interaction operations in parallel, summed with weights ``softmax(alpha)``.

    ``alpha`` is a registered parameter (it moves with ``.to()`` and is saved in the
    state_dict), to be optimised apart from the weights. ``chosen`` is the operation the
    search currently prefers: the one with the largest ``alpha``.

    Example::

        >>> mixed = MixedInteraction(64)
        >>> a, b = mixed(torch.randn(2, 64, 8, 4), torch.randn(2, 64, 8, 4))
        >>> mixed.chosen in ('none', 'exc', 'ag', 'cross_att')
        True
    """

    def __init__(self, channels: int, ops: Sequence[str] = tuple(INTERACTIONS)) -> None:
        super().__init__()
        unknown = [op for op in ops if op not in INTERACTIONS]
        if unknown or not ops:
            raise ValueError(f'search ops must be a non-empty selection of '
                             f'{", ".join(INTERACTIONS)}; got {list(ops)}')
        self.ops = nn.ModuleDict({op: INTERACTIONS[op](channels) for op in ops})
        # Near-uniform start, as in DARTS: every op begins with the same say.
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(ops)))

    def weights(self) -> Tensor:
        """``softmax(alpha)``: the weight of each op, in the order of ``self.ops``."""
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
