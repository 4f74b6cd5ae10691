"""Pseudo labels for unsupervised ReID: k-reciprocal Jaccard distance, then DBSCAN.

torchreid ships k-reciprocal re-ranking (``torchreid.utils.re_ranking``), but for a query
set against a gallery: it returns the query x gallery block only, blended with the
original distance. Clustering needs the Jaccard distance among one set of images, which
:func:`jaccard_distance` computes directly.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def _reciprocal_neighbours(rank: np.ndarray, i: int, k: int) -> np.ndarray:
    """The k nearest neighbours of ``i`` that have ``i`` among their own k nearest."""
    forward = rank[i, :k + 1]
    return forward[(rank[forward, :k + 1] == i).any(axis=1)]


def jaccard_distance(features: Tensor, k1: int = 20, k2: int = 6) -> np.ndarray:
    """Jaccard distance between the k-reciprocal encodings of every pair of features.

    Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding",
    CVPR 2017, over one set of ``N`` features: each image is encoded by its k1-reciprocal
    neighbours (expanded with its neighbours' k1/2-reciprocal sets that mostly overlap it),
    weighted by ``exp(-distance)``, averaged over its ``k2`` nearest neighbours (local
    query expansion); two images are close when their encodings overlap. Returns an
    ``(N, N)`` float32 array in ``[0, 1]`` with a zero diagonal. Memory is ``O(N^2)``.

    ``k1`` counts neighbours besides the image itself, as the paper and torchreid's
    ``re_ranking`` do (SpCL's faiss version searches ``k1`` images including the image
    itself: one neighbour fewer).

    Example::

        >>> distance = jaccard_distance(torch.randn(100, 768), k1=20, k2=6)
        >>> distance.shape
        (100, 100)
    """
    if features.dim() != 2 or len(features) < 2:
        raise ValueError(f'expected (N, D) features of at least 2 images, got shape '
                         f'{tuple(features.shape)}')
    n = len(features)
    k1 = min(k1, n - 1)
    features = F.normalize(features.detach().float().cpu(), dim=1)
    distance = (2 - 2 * features @ features.t()).clamp_min_(0)  # squared Euclidean
    rank = torch.topk(distance, k1 + 1, dim=1, largest=False).indices.numpy()
    distance = distance.numpy()

    encoding = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        neighbours = _reciprocal_neighbours(rank, i, k1)
        expanded = [neighbours]
        for candidate in neighbours:
            theirs = _reciprocal_neighbours(rank, candidate, int(round(k1 / 2)))
            if len(np.intersect1d(theirs, neighbours)) > 2 / 3 * len(theirs):
                expanded.append(theirs)
        expanded = np.unique(np.concatenate(expanded))
        weights = np.exp(-distance[i, expanded])
        encoding[i, expanded] = weights / weights.sum()
    if k2 > 1:
        encoding = encoding[rank[:, :min(k2, k1 + 1)]].mean(axis=1)

    # Rows sum to one, so sum(max(a, b)) = 2 - sum(min(a, b)).
    columns = np.ascontiguousarray(encoding.T)
    overlap = np.empty((n, n), dtype=np.float32)
    for i in range(n):
        nonzero = np.flatnonzero(encoding[i])
        overlap[i] = np.minimum(encoding[i, nonzero, None], columns[nonzero]).sum(axis=0)
    return np.clip(1 - overlap / (2 - overlap), 0, 1)


def cluster_pseudo_labels(features: Tensor, eps: float = 0.6, min_samples: int = 4,
                          k1: int = 30, k2: int = 6) -> np.ndarray:
    """DBSCAN over :func:`jaccard_distance`: a cluster id per image, ``-1`` for outliers.

    The defaults are Cluster Contrast's (Dai et al., 2021) for Market-1501.

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
    distance = jaccard_distance(features, k1, k2)
    return DBSCAN(eps=eps, min_samples=min_samples, metric='precomputed').fit_predict(distance)
