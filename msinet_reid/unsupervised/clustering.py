"""Pseudo labels for unsupervised ReID: k-reciprocal Jaccard distance, then DBSCAN.

The Jaccard distance is :mod:`msinet_reid.retrieval`'s (sparse, in blocks: a whole
MSMT17 training set of 32,621 images clusters in a few hundred MB), the same k-reciprocal
machinery test-time re-ranking uses; only the final graph goes to scikit-learn's DBSCAN.
"""
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..retrieval import jaccard_distance


def cluster_pseudo_labels(features: Tensor, eps: float = 0.6, min_samples: int = 4,
                          k1: int = 30, k2: int = 6, knn: str = 'torch',
                          cameras: Optional[Tensor] = None) -> np.ndarray:
    """DBSCAN over :func:`jaccard_distance`: a cluster id per image, ``-1`` for outliers.

    The defaults are Cluster Contrast's (Dai et al., 2021) for Market-1501. ``eps`` must
    be below 1: DBSCAN sees the graph of the pairs within ``eps`` only. With ``cameras``
    (one camera id per image) the features are clustered camera-aware
    (:func:`camera_centred`): on a new domain, features group by camera before they group
    by person, and removing each camera's mean undoes most of that.

    Example::

        >>> labels = cluster_pseudo_labels(features)  # (N,) ints, -1 = not clustered
    """
    try:
        from sklearn.cluster import DBSCAN
    except ImportError as error:
        raise ImportError(
            'clustering needs scikit-learn: pip install "msinet-reid[unsupervised]" '
            '(or pip install scikit-learn)'
        ) from error
    if not 0 < eps < 1:
        raise ValueError(f'eps must be in (0, 1) on the Jaccard distance, got {eps}')
    if cameras is not None:
        features = camera_centred(features, cameras)
    distance = jaccard_distance(features, k1, k2, knn, max_distance=eps)
    return DBSCAN(eps=eps, min_samples=min_samples, metric='precomputed').fit_predict(distance)


def camera_centred(features: Tensor, cameras: Tensor) -> Tensor:
    """Unit-length ``features`` less the mean of their camera's unit-length features.

    What a camera adds to every image it takes (background, light, colour cast) is shared
    by its images and cancels out; what tells people apart stays.

    Example::

        >>> centred = camera_centred(torch.randn(6, 4), torch.tensor([1, 1, 1, 2, 2, 2]))
        >>> torch.allclose(centred[:3].sum(0), torch.zeros(4), atol=1e-6)
        True
    """
    if cameras.shape != features.shape[:1]:
        raise ValueError(f'expected one camera id per feature ({len(features)}), got '
                         f'shape {tuple(cameras.shape)}')
    features = F.normalize(features.detach().float(), dim=1)
    _, cameras = torch.unique(cameras.to(features.device), return_inverse=True)
    count = int(cameras.max()) + 1
    sums = features.new_zeros(count, features.shape[1]).index_add_(0, cameras, features)
    sizes = torch.bincount(cameras, minlength=count).clamp_min(1).to(features.dtype)
    return features - (sums / sizes[:, None])[cameras]
