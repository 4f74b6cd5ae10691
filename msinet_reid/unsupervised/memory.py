"""The cluster memory of Cluster Contrast (Dai et al., "Cluster Contrast for Unsupervised
Person Re-Identification", 2021)."""
import torch
import torch.nn.functional as F
from torch import Tensor

from ..losses.memory import IdentityMemory


class ClusterMemory(IdentityMemory):
    """The TCM identity memory with clusters for identities, and Cluster Contrast's update.

    The loss is :class:`~msinet_reid.losses.IdentityMemory`'s (InfoNCE of the features
    against every unit-length centroid); in training, ``forward`` then moves each centroid
    of the batch towards the mean of its features, once per batch:
    ``c <- normalise(momentum * c + (1 - momentum) * mean)``.

    Example::

        >>> memory = ClusterMemory(centroids)  # (num_clusters, D)
        >>> loss = memory(model(images), pseudo_labels)
    """

    def __init__(self, centroids: Tensor, temperature: float = 0.05,
                 momentum: float = 0.2) -> None:
        if not 0 <= momentum < 1:
            raise ValueError(f'momentum must be in [0, 1), got {momentum}')
        super().__init__(*centroids.shape, temperature, momentum)
        self.features.copy_(F.normalize(centroids.detach().float(), dim=1))

    @property
    def centroids(self) -> Tensor:
        return self.features

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        loss = super().forward(features, labels)
        if self.training:
            self.update(features.detach(), labels)
        return loss

    @torch.no_grad()
    def update(self, features: Tensor, labels: Tensor) -> None:
        features = F.normalize(features, dim=1)
        sums = torch.zeros_like(self.features).index_add_(0, labels, features)
        counts = torch.bincount(labels, minlength=len(self.features))
        seen = counts > 0
        means = sums[seen] / counts[seen, None]
        moved = self.momentum * self.features[seen] + (1 - self.momentum) * means
        self.features[seen] = F.normalize(moved, dim=1)
