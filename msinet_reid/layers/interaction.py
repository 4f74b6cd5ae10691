"""The four interaction operations of the Multi-Scale Interaction space (paper sec. 3.2).

Each takes the features of a cell's two branches, ``(x1, x2)``, and returns the pair
after interaction. The names are the genotype tokens of the reference implementation.
"""
from typing import Dict, Tuple, Type

import torch
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

    def forward(self, x1: Tensor, x2: Tensor) -> Pair:
        # Both branches through the shared MLP at once: one pass instead of two.
        pooled = torch.cat((x1.mean((2, 3), keepdim=True), x2.mean((2, 3), keepdim=True)))
        gate1, gate2 = torch.sigmoid(self.fc2(self.relu(self.fc1(pooled)))).chunk(2)
        return x1 * gate1, x2 * gate2


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
        q1, q2 = x1.flatten(2), x2.flatten(2)
        # Branch 2's energy (q2 q1^T) is the transpose of branch 1's: one product serves
        # both. softmax is shift invariant, so softmax(max(e) - e) == softmax(-e).
        energy = torch.bmm(q1, q2.transpose(1, 2)).neg_()
        attended1 = torch.bmm(torch.softmax(energy, dim=2), q1).view_as(x1)
        attended2 = torch.bmm(torch.softmax(energy, dim=1).transpose(1, 2), q2).view_as(x2)
        # Added to x1/x2 (not to q1/q2), so the outputs keep the inputs' memory format.
        return x1 + self.gamma * attended1, x2 + self.gamma * attended2


INTERACTIONS: Dict[str, Type[nn.Module]] = {
    'none': NoInteraction,
    'exc': Exchange,
    'ag': ChannelGate,
    'cross_att': CrossAttention,
}
"""Genotype token -> interaction module class; every class is built as ``cls(channels)``."""
