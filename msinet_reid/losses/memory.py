"""The contrastive identity memory: the Twins Contrastive Mechanism's ``C_tr`` and ``C_val``
(paper eqs. 2 and 3), and Cluster Contrast's cluster memory."""
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def identity_centroids(features: Tensor, labels: Tensor, num_ids: int) -> Tensor:
    """``(num_ids, dim)`` unit-length means of the L2-normalised features of each identity.

    The one definition of a centroid: the search's memories and Cluster Contrast's clusters
    both start from it. ``labels`` must be ``0..num_ids - 1``, each present.

    >>> identity_centroids(torch.tensor([[3., 4.], [1., 0.]]), torch.tensor([0, 0]), 1)
    tensor([[0.8944, 0.4472]])
    """
    counts = torch.bincount(labels, minlength=num_ids)
    if len(counts) > num_ids or not bool(counts.all()):
        missing = (counts[:num_ids] == 0).nonzero().flatten().tolist()
        raise ValueError(f'labels must cover 0..{num_ids - 1} exactly; identities without '
                         f'features: {missing}, labels out of range: {len(counts) > num_ids}')
    sums = torch.zeros(num_ids, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, F.normalize(features, dim=1))
    return F.normalize(sums / counts.unsqueeze(1), dim=1)


class IdentityMemory(nn.Module):
    """One unit-length feature per identity (or cluster): the search's ``C_tr``/``C_val``.

    ``forward`` is the contrastive classification loss of eq. 2: cross-entropy over the
    cosine similarities to every memorised identity, divided by ``temperature``.
    ``update`` is the momentum update of eq. 3, ``c <- momentum * c + (1 - momentum) * f``,
    applied sample by sample and re-normalised so that the memory stays on the unit sphere.

    Example::

        >>> memory = IdentityMemory(num_ids=625, dim=768)
        >>> memory.initialise(features, labels)  # features of the whole set, before search
        >>> loss = memory(batch_features, batch_labels)
        >>> loss.backward(); optimizer.step(); memory.update(batch_features, batch_labels)
    """

    def __init__(self, num_ids: int, dim: int, temperature: float = 0.05,
                 momentum: float = 0.2) -> None:
        super().__init__()
        self.temperature = temperature
        self.momentum = momentum
        self.register_buffer('features', torch.zeros(num_ids, dim))

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        # A copy: backward must not see the in-place momentum updates of the memory.
        logits = F.normalize(features, dim=1) @ self.features.clone().t() / self.temperature
        return F.cross_entropy(logits, labels)

    @torch.no_grad()
    def initialise(self, features: Tensor, labels: Tensor) -> None:
        """Set every identity's entry to its centroid over ``features`` (all its images)."""
        self.features.copy_(identity_centroids(features, labels, len(self.features)))

    @torch.no_grad()
    def update(self, features: Tensor, labels: Tensor) -> None:
        # Sequential, as eq. 3 is written: an identity seen K times in a batch is
        # moved K times.
        for feature, label in zip(F.normalize(features.detach(), dim=1), labels.tolist()):
            entry = self.momentum * self.features[label] + (1 - self.momentum) * feature
            self.features[label] = F.normalize(entry, dim=0)
