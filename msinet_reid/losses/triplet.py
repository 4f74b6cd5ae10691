"""Batch-hard triplet loss on L2-normalised features (paper eq. 6)."""
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def euclidean_distances(features: Tensor) -> Tensor:
    """``(B, B)`` Euclidean distances, clamped away from 0 so that ``sqrt`` stays differentiable."""
    squared = features.pow(2).sum(1)
    gram = features @ features.t()
    return (squared[:, None] + squared[None, :] - 2 * gram).clamp_min(1e-12).sqrt()


class TripletLoss(nn.Module):
    """Batch-hard triplet loss: for each anchor, its farthest positive and closest negative.

    As the authors train MSINet: features are L2-normalised first, the anchor counts as
    its own positive, and anchors without a negative in the batch contribute 0 (torchreid's
    ``TripletLoss`` neither normalises nor accepts a batch of one identity).

    Example::

        >>> criterion = TripletLoss(margin=0.3)
        >>> loss = criterion(torch.randn(8, 512), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    """

    def __init__(self, margin: float = 0.3, normalize: bool = True) -> None:
        super().__init__()
        self.margin = margin
        self.normalize = normalize

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        if self.normalize:
            features = F.normalize(features, dim=1)
        dist = euclidean_distances(features)
        same = labels[:, None] == labels[None, :]
        hardest_positive = dist.masked_fill(~same, float('-inf')).max(dim=1).values
        hardest_negative = dist.masked_fill(same, float('inf')).min(dim=1).values
        return F.margin_ranking_loss(hardest_negative, hardest_positive,
                                     torch.ones_like(hardest_positive), margin=self.margin)
