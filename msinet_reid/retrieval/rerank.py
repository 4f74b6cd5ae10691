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


def reranked_distances(queries: Tensor, gallery: Tensor, k1: int = 20, k2: int = 6,
                       lambda_value: float = 0.3, knn: str = 'torch',
                       budget: int = BLOCK_BYTES) -> Iterator[Tuple[slice, Tensor]]:
    """Blocks of the re-ranked ``(len(queries), len(gallery))`` distances: yields
    ``(query rows, distances of those rows to every gallery image)``.

    ``queries`` and ``gallery`` are L2-normalised features (float32, or float64 for
    rounding near 1e-16). Each block's temporaries stay within ``budget`` bytes; what is
    kept is the nearest-neighbour table and the sparse encodings, a few hundred bytes per
    image.

    Example::

        >>> for rows, distance in reranked_distances(qf, gf):
        ...     ranked = distance.argsort(dim=1)
    """
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
    gallery_rows = slice(q, n)
    for rows, local_rows, cols, shared in overlaps(encoding, n, slice(0, q), gallery_rows,
                                                   budget // 3):
        distance = squared_distances(features[rows], features[gallery_rows], norms[rows],
                                     norms[gallery_rows])
        final = distance.pow_(2).div_(scale[rows, None]).mul_(lambda_value).add_(
            1 - lambda_value)
        final[local_rows, cols] -= (1 - lambda_value) * (1 - jaccard(shared))
        yield rows, final
