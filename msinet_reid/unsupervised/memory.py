"""The cluster memory of Cluster Contrast (Dai et al., "Cluster Contrast for Unsupervised
Person Re-Identification", 2021)."""
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ClusterMemory(nn.Module):
    """One unit-length centroid per cluster; InfoNCE loss of features against them.

    ``forward(features, labels)`` returns the cross-entropy of the features' cosine
    similarities to every centroid (over ``temperature``) against their cluster, and, in
    training, moves each centroid of the batch towards the mean of its features:
    ``c <- normalise(momentum * c + (1 - momentum) * mean)``.

    Example::

        >>> memory = ClusterMemory(centroids)  # (num_clusters, D)
        >>> loss = memory(model(images), pseudo_labels)
    """

    def __init__(self, centroids: Tensor, temperature: float = 0.05,
                 momentum: float = 0.2) -> None:
        super().__init__()
        if not 0 <= momentum < 1:
            raise ValueError(f'momentum must be in [0, 1), got {momentum}')
        self.temperature = temperature
        self.momentum = momentum
        self.register_buffer('centroids', F.normalize(centroids.detach().float(), dim=1))

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        features = F.normalize(features, dim=1)
        # A copy: the momentum update below changes the centroids in place.
        logits = features @ self.centroids.clone().t() / self.temperature
        loss = F.cross_entropy(logits, labels)
        if self.training:
            self.update(features.detach(), labels)
        return loss

    @torch.no_grad()
    def update(self, features: Tensor, labels: Tensor) -> None:
        sums = torch.zeros_like(self.centroids).index_add_(0, labels, features)
        counts = torch.bincount(labels, minlength=len(self.centroids))
        seen = counts > 0
        means = sums[seen] / counts[seen, None]
        moved = self.momentum * self.centroids[seen] + (1 - self.momentum) * means
        self.centroids[seen] = F.normalize(moved, dim=1)
