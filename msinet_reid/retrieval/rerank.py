"""k-reciprocal re-ranking of a query set against a gallery, sparse and in blocks.

The final distances of torchreid's ``re_ranking(q_g, q_q, g_g, k1, k2, lambda_value)``
given the squared Euclidean distances of L2-normalised features (what torchreid's engine
passes it), computed without any ``(q + g)^2`` matrix: torchreid builds several, 35 GB
each at MSMT17's 93,820 test images. Its steps, kept as they are:

- the distance ``D`` it re-ranks is the square of what it is given, each row divided by
  its maximum over all query and gallery images;
- every image (query or gallery) is k-reciprocally encoded among all of them, with
  weights ``exp(-D)``, then expanded over its ``k2`` nearest (:mod:`.reciprocal`);
- the final distance of a query and a gallery image is
  ``(1 - lambda) * Jaccard + lambda * D``, the Jaccard distance 1 where encodings share
  nothing.
"""
from typing import Iterator, Tuple

import torch
from torch import Tensor

from .blocks import BLOCK_BYTES
from .distance import (nearest_neighbours, pair_squared_distances, squared_distances,
                       squared_norms)
from .reciprocal import encode, jaccard, overlaps


class RerankedBlock:
    """The re-ranked distances of a block of queries to the gallery, on demand."""

    def __init__(self, rows: slice, features: Tensor, norms: Tensor, scale: Tensor,
                 num_queries: int, overlap: Tuple[Tensor, Tensor, Tensor],
                 lambda_value: float, budget: int) -> None:
        self.rows, self._features, self._norms, self._scale = rows, features, norms, scale
        self._q, self._lambda, self._budget = num_queries, lambda_value, budget
        local_rows, cols, shared = overlap  # sorted by row, then column
        self._width = len(features) - num_queries
        self._keys = local_rows * self._width + cols
        self._jaccard = jaccard(shared)

    def _final(self, local: Tensor, gallery: Tensor, squared: Tensor) -> Tensor:
        """``(1 - lambda) * Jaccard + lambda * D`` for pairs given by their squared distance."""
        wanted = local * self._width + gallery
        jaccard_distance = torch.ones_like(squared)  # encodings that share nothing: 1
        if len(self._keys):
            found = torch.searchsorted(self._keys, wanted).clamp_max_(len(self._keys) - 1)
            shared = self._keys[found] == wanted
            jaccard_distance[shared] = self._jaccard[found[shared]]
        normalised = squared ** 2 / self._scale[self.rows][local]
        return self._lambda * normalised + (1 - self._lambda) * jaccard_distance

    def pairs(self, local: Tensor, gallery: Tensor) -> Tensor:
        """Distances of the pairs (query ``rows.start + local``, gallery image ``gallery``)."""
        squared = pair_squared_distances(self._features, self._norms, self.rows.start + local,
                                         self._q + gallery, self._budget)
        return self._final(local, gallery, squared)

    def columns(self, gallery: slice) -> Tensor:
        """``(len(rows), len(gallery))`` distances to the gallery images ``gallery``."""
        targets = slice(self._q + gallery.start, self._q + gallery.stop)
        distance = squared_distances(self._features[self.rows], self._features[targets],
                                     self._norms[self.rows], self._norms[targets])
        final = distance.pow_(2).div_(self._scale[self.rows, None]).mul_(self._lambda).add_(
            1 - self._lambda)
        inside = (self._keys % self._width >= gallery.start) & (
            self._keys % self._width < gallery.stop)
        keys = self._keys[inside]
        final[keys // self._width, keys % self._width - gallery.start] -= (
            (1 - self._lambda) * (1 - self._jaccard[inside]))
        return final


def reranked_blocks(queries: Tensor, gallery: Tensor, k1: int = 20, k2: int = 6,
                    lambda_value: float = 0.3, knn: str = 'torch',
                    budget: int = BLOCK_BYTES) -> Iterator[RerankedBlock]:
    """:class:`RerankedBlock` of consecutive blocks of queries: the nearest neighbours of
    every image, their encodings and each block's overlaps are computed here, the final
    distances when asked, in any slice of the gallery."""
    q, n = len(queries), len(queries) + len(gallery)
    features = torch.cat((queries, gallery))
    norms = squared_norms(features)
    rank, farthest = nearest_neighbours(features, min(max(k1 + 1, k2), n), knn, budget)
    # D = (squared distance)^2 / its row maximum; the maximum of the square is the square
    # of the largest distance, as distances are non-negative up to rounding.
    scale = (farthest ** 2).clamp_min(torch.finfo(features.dtype).tiny)

    def normalised(rows: Tensor, cols: Tensor) -> Tensor:
        return pair_squared_distances(features, norms, rows, cols, budget) ** 2 / scale[rows]

    encoding = encode(features, min(k1, n - 1), k2, rank, normalised, budget)
    for rows, local_rows, cols, shared in overlaps(encoding, n, slice(0, q), slice(q, n),
                                                   budget // 3):
        yield RerankedBlock(rows, features, norms, scale, q, (local_rows, cols, shared),
                            lambda_value, budget)


def reranked_distances(queries: Tensor, gallery: Tensor, k1: int = 20, k2: int = 6,
                       lambda_value: float = 0.3, knn: str = 'torch',
                       budget: int = BLOCK_BYTES) -> Iterator[Tuple[slice, Tensor]]:
    """Blocks of the re-ranked ``(len(queries), len(gallery))`` distances: yields
    ``(query rows, distances of those rows to every gallery image)``.

    ``queries`` and ``gallery`` are L2-normalised features (float32, or float64 for
    rounding near 1e-16). Each block's temporaries stay within ``budget`` bytes; what is
    kept is the nearest-neighbour table and the sparse encodings, a few hundred bytes per
    image. (:func:`~msinet_reid.retrieval.rank_metrics` ranks with
    :func:`reranked_blocks`, a slice of the gallery at a time.)

    Example::

        >>> for rows, distance in reranked_distances(qf, gf):
        ...     ranked = distance.argsort(dim=1)
    """
    for block in reranked_blocks(queries, gallery, k1, k2, lambda_value, knn, budget):
        yield block.rows, block.columns(slice(0, len(gallery)))
