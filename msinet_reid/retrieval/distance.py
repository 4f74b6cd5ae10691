"""Distances between L2-normalised features, and exact nearest neighbours, in blocks.

The protocol of every figure this package reports: features are L2-normalised and ranked
by Euclidean distance, computed as torchreid's ``compute_distance_matrix(..., 'euclidean')``
computes it (the squared distance ``|a|^2 + |b|^2 - 2 a.b``), so that rankings and
re-ranking equal torchreid's.
"""
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .blocks import BLOCK_BYTES, row_blocks

KNN_BACKENDS = ('torch', 'faiss')


def full_precision(features: Tensor) -> Tensor:
    """``features`` in float32 at least (float64 stays float64)."""
    features = features.detach()
    return features.to(torch.promote_types(features.dtype, torch.float32))


def unit_rows(features: Tensor) -> Tensor:
    """``features`` L2-normalised per row, in float32 (float64 stays float64)."""
    return F.normalize(full_precision(features), dim=1)


def squared_norms(features: Tensor) -> Tensor:
    """``|f|^2`` of each row, as torchreid sums it."""
    return torch.pow(features, 2).sum(dim=1)


def squared_distances(a: Tensor, b: Tensor, a_norms: Optional[Tensor] = None,
                      b_norms: Optional[Tensor] = None) -> Tensor:
    """``(len(a), len(b))`` squared Euclidean distances, by torchreid's formula
    (``euclidean_squared_distance``); the norms may be given, computed once for many
    blocks."""
    a_norms = squared_norms(a) if a_norms is None else a_norms
    b_norms = squared_norms(b) if b_norms is None else b_norms
    distance = a_norms[:, None] + b_norms[None, :]
    return distance.addmm_(a, b.t(), beta=1, alpha=-2)


def pair_dots(a: Tensor, b: Tensor, rows: Tensor, cols: Tensor,
              budget: int = BLOCK_BYTES) -> Tensor:
    """``a[rows[i]] . b[cols[i]]`` for every ``i``, in chunks within ``budget``."""
    chunk = max(1, budget // (2 * a.element_size() * a.shape[1]))
    # Written into one tensor: small results kept between large temporaries would pin
    # glibc's heap, which then holds gigabytes it cannot give back (seen with two threads).
    dots = a.new_empty(len(rows))
    for start in range(0, len(rows), chunk):
        pairs = slice(start, start + chunk)
        dots[pairs] = (a[rows[pairs]] * b[cols[pairs]]).sum(dim=1)
    return dots


def pair_squared_distances(features: Tensor, norms: Tensor, rows: Tensor, cols: Tensor,
                           budget: int = BLOCK_BYTES) -> Tensor:
    """Squared Euclidean distances of the pairs ``(rows[i], cols[i])`` of ``features``,
    by torchreid's formula (clamped at 0: rounding can make an image's distance to itself
    slightly negative)."""
    dots = pair_dots(features, features, rows, cols, budget)
    return (norms[rows] + norms[cols] - 2 * dots).clamp_min_(0)


class EuclideanBlock:
    """The squared Euclidean distances of a block of queries to the gallery, on demand:
    ``pairs`` of given images, or ``columns``, a slice of the gallery."""

    def __init__(self, rows: slice, queries: Tensor, query_norms: Tensor, gallery: Tensor,
                 scale: Tensor, gallery_norms: Tensor, budget: int) -> None:
        self.rows = rows
        self._queries, self._query_norms = queries[rows], query_norms[rows]
        self._gallery, self._scale, self._gallery_norms = gallery, scale, gallery_norms
        self._budget = budget

    def pairs(self, local: Tensor, gallery: Tensor) -> Tensor:
        dots = pair_dots(self._queries, self._gallery, local, gallery, self._budget)
        return (self._query_norms[local] + self._gallery_norms[gallery]
                - 2 * dots * self._scale[gallery])

    def columns(self, gallery: slice) -> Tensor:
        distance = (self._queries @ self._gallery[gallery].t()).mul_(self._scale[gallery])
        return distance.mul_(-2).add_(self._query_norms[:, None]).add_(
            self._gallery_norms[gallery])


def euclidean_blocks(qf: Tensor, gf: Tensor, normalize: bool = True, rows: int = 1024,
                     budget: int = BLOCK_BYTES) -> Iterator[EuclideanBlock]:
    """:class:`EuclideanBlock` of ``rows`` queries at a time, between ``qf`` and ``gf``
    L2-normalised with ``normalize``, without a normalised copy of the gallery (which may
    be the largest array in memory): ``q.g / |g|`` is the dot product with the unit
    gallery feature."""
    queries = unit_rows(qf) if normalize else full_precision(qf)
    gallery = gf.to(queries.dtype)
    scale = (gallery.norm(dim=1).clamp_min(1e-12).reciprocal() if normalize  # F.normalize's
             else gallery.new_ones(len(gallery)))  # eps
    # Written into one tensor, not concatenated: see blocks.Filling (a list of small
    # results between the blocks' temporaries held 1.5 GB at Market-1501+500k).
    gallery_norms = gallery.new_empty(len(gallery))
    for block in row_blocks(len(gallery), 2 * gallery.shape[1] * gallery.element_size(),
                            budget):
        gallery_norms[block] = squared_norms(gallery[block] * scale[block, None])
    query_norms = squared_norms(queries)
    for start in range(0, len(queries), rows):
        yield EuclideanBlock(slice(start, min(start + rows, len(queries))), queries,
                             query_norms, gallery, scale, gallery_norms, budget)


def nearest_neighbours(features: Tensor, k: int, knn: str = 'torch',
                       budget: int = BLOCK_BYTES) -> Tuple[Tensor, Tensor]:
    """The ``k`` nearest of every row of ``features`` (unit rows) among all rows, and each
    row's largest squared distance.

    Returns ``(rank, farthest)``: ``(N, k)`` indices, nearest first (each row itself
    first, at distance 0), and ``(N,)`` maxima of the squared distance, which
    re-ranking normalises by. Exact: ``knn='torch'`` computes blocks of rows against all
    rows on the features' device within ``budget`` bytes; ``knn='faiss'`` uses faiss's
    ``IndexFlatIP`` (on the GPU for CUDA features when faiss has GPU support).
    """
    if knn not in KNN_BACKENDS:
        raise ValueError(f'knn must be one of {KNN_BACKENDS}, got {knn!r}')
    n = len(features)
    norms = squared_norms(features)
    if knn == 'faiss':
        rank = _faiss_neighbours(features, k)
        farthest = torch.empty(n, dtype=features.dtype, device=features.device)
        for block in row_blocks(n, 2 * n * features.element_size(), budget):
            farthest[block] = squared_distances(features[block], features, norms[block],
                                                norms).amax(dim=1)
        return rank, farthest
    rank = torch.empty(n, k, dtype=torch.long, device=features.device)
    farthest = torch.empty(n, dtype=features.dtype, device=features.device)
    for block in row_blocks(n, 3 * n * features.element_size(), budget):
        distance = squared_distances(features[block], features, norms[block], norms)
        rank[block] = distance.topk(k, dim=1, largest=False).indices
        farthest[block] = distance.amax(dim=1)
    return rank, farthest


def _faiss_neighbours(features: Tensor, k: int) -> Tensor:
    try:
        import faiss
    except ImportError as error:
        raise ImportError("knn='faiss' needs faiss: pip install faiss-cpu (or faiss-gpu "
                          "for CUDA), or use knn='torch'") from error
    points = np.ascontiguousarray(features.float().cpu().numpy())
    index = faiss.IndexFlatIP(points.shape[1])  # inner product = cosine on unit vectors
    if features.is_cuda and hasattr(faiss, 'StandardGpuResources'):
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(),
                                       features.device.index or 0, index)
    index.add(points)
    _, rank = index.search(points, k)
    return torch.from_numpy(rank).to(features.device)
