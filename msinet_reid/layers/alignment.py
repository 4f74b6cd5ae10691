"""Parameters of the Spatial Alignment Module (paper sec. 3.3)."""
import torch
from torch import Tensor, nn


class PositionAttention(nn.Module):
    """Position attention (PAM of DANet) reduced to its query/key energy.

    Returns ``energy[b, i, j] = q_i . k_j`` between the ``H*W`` positions of each map,
    with ``q`` and ``k`` 1x1 projections to ``channels // reduction`` channels.
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.query_conv = nn.Conv2d(channels, channels // reduction, 1)
        self.key_conv = nn.Conv2d(channels, channels // reduction, 1)

    def forward(self, x: Tensor) -> Tensor:
        query = self.query_conv(x).flatten(2)
        key = self.key_conv(x).flatten(2)
        return torch.bmm(query.transpose(1, 2), key)


class SpatialAlignModule(nn.Module):
    """Learned self-activation of SAM, the target that positive pairs are aligned to.

    Training-only: the model's outputs never depend on it, so it adds nothing at
    inference.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pos_pam = PositionAttention(channels)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` final feature maps -> ``(B, H*W)`` self-activation."""
        return self.pos_pam(x).amax(dim=2)
