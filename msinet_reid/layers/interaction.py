"""The four interaction operations of the Multi-Scale Interaction space (paper sec. 3.2).

Each takes the features of a cell's two branches, ``(x1, x2)``, and returns the pair
after interaction. The names are the genotype tokens of the reference implementation.
"""
from typing import Dict, Tuple, Type

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Pair = Tuple[Tensor, Tensor]


class NoInteraction(nn.Module):
    """``none``: the branches pass unchanged."""

    def __init__(self, channels: int) -> None:
        super().__init__()

    def forward(self, x1: Tensor, x2: Tensor) -> Pair:
        return x1, x2


class Exchange(nn.Module):
    """``exc``: the branches swap their features."""

    def __init__(self, channels: int) -> None:
        super().__init__()

    def forward(self, x1: Tensor, x2: Tensor) -> Pair:
        return x2, x1


class ChannelGate(nn.Module):
    """``ag``: each branch is scaled by a channel gate from one MLP shared by both (eq. 4)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def gate(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.fc2(self.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))

    def forward(self, x1: Tensor, x2: Tensor) -> Pair:
        return x1 * self.gate(x1), x2 * self.gate(x2)


class CrossAttention(nn.Module):
    """``cross_att``: channel attention whose keys come from the other branch.

    For a branch with features ``q`` (C x HW) and the other branch's ``k``, the
    channel correlation ``q k^T`` becomes a mask ``softmax(max(e) - e)`` (DANet's
    channel attention), which re-weights ``q`` and is added back with the learnable
    proportion ``gamma`` (zero at initialisation).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x1: Tensor, x2: Tensor) -> Pair:
        b, c, h, w = x1.shape
        # Both branches in one batch: queries (x1, x2) against keys (x2, x1).
        query = torch.cat((x1, x2)).flatten(2)
        key = torch.cat((x2, x1)).flatten(2)
        energy = torch.bmm(query, key.transpose(1, 2))
        # softmax is shift invariant, so softmax(max(e) - e) == softmax(-e).
        attention = torch.softmax(-energy, dim=-1)
        out = query + self.gamma * torch.bmm(attention, query)
        return tuple(out.view(2 * b, c, h, w).chunk(2))


INTERACTIONS: Dict[str, Type[nn.Module]] = {
    'none': NoInteraction,
    'exc': Exchange,
    'ag': ChannelGate,
    'cross_att': CrossAttention,
}
"""Genotype token -> interaction module class; every class is built as ``cls(channels)``."""
