"""k-reciprocal encodings and their Jaccard overlaps (Zhong et al., "Re-ranking Person
Re-identification with k-reciprocal Encoding", CVPR 2017), sparse.

Each image is encoded by its k1-reciprocal neighbours (the k1 nearest that have it among
their own k1 nearest), expanded with each member's k1/2-reciprocal set that has more than
two thirds of its images in it, weighted by ``exp(-distance)`` and normalised to sum to
one; local query expansion averages the encodings of its k2 nearest. Two images are close
when their encodings overlap: Jaccard distance ``1 - sum(min) / sum(max)``.

Everything is sparse: an encoding has a few dozen non-zeros, overlaps are found through
an inverted index (the images holding each non-zero), and pairs that share none (distance
1) are never stored. Memory grows with the number of images times the neighbours of
neighbours, never with its square; each step runs in blocks of rows under a budget.

Test-time re-ranking (:mod:`.rerank`) and the clustering of unsupervised training
(:func:`jaccard_distance`) both use these functions.
"""
from typing import Callable, Iterator, Tuple

import numpy as np
import torch
from scipy import sparse
from torch import Tensor

from .blocks import (BLOCK_BYTES, Filling, cost_blocks, pointers, ragged_arange, row_blocks,
                     row_sizes)
from .distance import nearest_neighbours, pair_squared_distances, squared_norms, unit_rows

# A sparse matrix as three aligned 1-d tensors sorted by row: (rows, cols, values).
Entries = Tuple[Tensor, Tensor, Tensor]
# The distance of the pairs (rows, cols) whose exp(-distance) weighs them in an encoding.
PairDistance = Callable[[Tensor, Tensor], Tensor]


def reciprocal_mask(rank: Tensor, k: int, budget: int = BLOCK_BYTES) -> Tensor:
    """``(N, k + 1)`` mask over ``rank[:, :k + 1]``: the neighbours that have the image
    among their own ``k + 1`` nearest, i.e. its k-reciprocal neighbours."""
    nearest = rank[:, :k + 1]
    mask = torch.empty(nearest.shape, dtype=torch.bool, device=rank.device)
    for block in row_blocks(len(rank), 8 * (k + 1) ** 2, budget):
        rows = torch.arange(block.start, block.stop, device=rank.device)
        mask[block] = (nearest[nearest[block]] == rows[:, None, None]).any(dim=2)
    return mask


def reciprocal_encoding(rank: Tensor, k1: int, pair_distance: PairDistance,
                        budget: int = BLOCK_BYTES) -> Entries:
    """Each image's expanded k1-reciprocal set, weighted by ``exp(-pair_distance)`` and
    normalised to sum to one, as sparse entries sorted by row then column."""
    n, half = len(rank), int(round(k1 / 2))  # round half to even, as numpy.around
    mine, halves = reciprocal_mask(rank, k1, budget), reciprocal_mask(rank, half, budget)
    width, narrow = k1 + 1, half + 1
    found = Filling(n * width * (narrow + 1), torch.long, device=rank.device)
    for block in row_blocks(n, width * narrow * (width + 24), budget):
        candidates, own = rank[block, :width], mine[block]  # (B, K)
        theirs, valid = rank[candidates, :narrow], halves[candidates]  # (B, K, H)
        inside = (theirs[..., None] == candidates[:, None, None, :]) & own[:, None, None, :]
        inside = inside.any(dim=3) & valid
        accept = own & (3 * inside.sum(dim=2) > 2 * valid.sum(dim=2))
        taken = valid & accept[..., None]
        ids = torch.arange(block.start, block.stop, device=rank.device)
        keys = torch.cat((ids[:, None].expand_as(own)[own] * n + candidates[own],
                          ids[:, None, None].expand_as(taken)[taken] * n + theirs[taken]))
        found.add(keys.unique())  # sorted: by row, then column
    keys, = found.tensors()
    rows, cols = keys // n, keys % n
    del keys, found
    weights = torch.exp(-pair_distance(rows, cols))
    totals = weights.new_zeros(n).index_add_(0, rows, weights)
    return rows, cols, weights / totals[rows]


def query_expansion(encoding: Entries, nearest: Tensor, n: int,
                    budget: int = BLOCK_BYTES) -> Entries:
    """Each image's encoding replaced by the mean encoding of its ``nearest`` images."""
    rows, cols, values = encoding
    row_pointers = pointers(rows, n)
    count = nearest.shape[1]
    sources_sizes = row_sizes(row_pointers)[nearest].sum(dim=1)  # bounds each row's union
    expanded = Filling(int(sources_sizes.sum()), torch.long, values.dtype, device=rows.device)
    for block in cost_blocks(sources_sizes * 32, budget):
        sources = nearest[block].flatten()
        lengths = row_pointers[sources + 1] - row_pointers[sources]
        taken = ragged_arange(row_pointers[sources], lengths)
        owners = torch.arange(block.start, block.stop, device=rows.device)
        owners = owners.repeat_interleave(count).repeat_interleave(lengths)
        keys, slots = (owners * n + cols[taken]).unique(return_inverse=True)
        summed = values.new_zeros(len(keys)).index_add_(0, slots, values[taken])
        expanded.add(keys, summed / count)
    keys, means = expanded.tensors()
    return keys // n, keys % n, means.clone()


def encode(features: Tensor, k1: int, k2: int, rank: Tensor, pair_distance: PairDistance,
           budget: int = BLOCK_BYTES) -> Entries:
    """The k-reciprocal encodings of ``features`` (with query expansion over ``k2``
    neighbours when ``k2 > 1``), from their nearest-neighbour table ``rank``."""
    encoding = reciprocal_encoding(rank, k1, pair_distance, budget)
    if k2 > 1:
        encoding = query_expansion(encoding, rank[:, :k2], len(features), budget)
    return encoding


def overlaps(encoding: Entries, n: int, queries: slice, targets: slice,
             budget: int = BLOCK_BYTES) -> Iterator[Tuple[slice, Tensor, Tensor, Tensor]]:
    """``sum(min)`` of the encodings of every pair (query row, target row) that shares a
    non-zero, for blocks of the rows ``queries`` against the rows ``targets``.

    Yields ``(block, rows, cols, shared)``: rows within the block and columns within
    ``targets``, sorted by row then column. For a block, every non-zero ``(i, c)`` meets
    the non-zeros ``(j, c)`` of the target rows (the inverted index), and the smaller of
    the two is added to the overlap of ``(i, j)``; the block's dense ``(B, targets)``
    overlaps and its meetings stay within ``budget``.
    """
    rows, cols, values = encoding
    row_pointers = pointers(rows, n)
    aimed = (rows >= targets.start) & (rows < targets.stop)
    by_column = torch.argsort(cols[aimed], stable=True)
    column_rows = rows[aimed][by_column] - targets.start
    column_values = values[aimed][by_column]
    column_pointers = pointers(cols[aimed][by_column], n)
    column_sizes = row_sizes(column_pointers)
    width = targets.stop - targets.start
    meetings = torch.zeros(n, dtype=torch.long, device=rows.device).index_add_(
        0, rows, column_sizes[cols])[queries]
    for local in cost_blocks(values.element_size() * width + 24 * meetings, budget):
        block = slice(queries.start + local.start, queries.start + local.stop)
        start, stop = row_pointers[block.start], row_pointers[block.stop]
        own_rows, own_cols, own_values = rows[start:stop], cols[start:stop], values[start:stop]
        sizes = column_sizes[own_cols]
        met = ragged_arange(column_pointers[own_cols], sizes)
        shared = values.new_zeros((block.stop - block.start) * width)
        shared.index_add_(0, ((own_rows - block.start) * width).repeat_interleave(sizes)
                          + column_rows[met],
                          torch.minimum(own_values.repeat_interleave(sizes), column_values[met]))
        met = shared.nonzero().squeeze(1)
        yield block, met // width, met % width, shared[met]


def jaccard(shared: Tensor) -> Tensor:
    """Jaccard distance from ``sum(min)`` of two encodings that each sum to one:
    ``sum(max) = 2 - sum(min)``."""
    return (1 - shared / (2 - shared)).clamp_(0, 1)


def jaccard_distance(features: Tensor, k1: int = 20, k2: int = 6, knn: str = 'torch',
                     max_distance: float = 1.0,
                     budget: int = BLOCK_BYTES) -> sparse.csr_matrix:
    """Jaccard distance between the k-reciprocal encodings of every pair of ``features``.

    One set of ``N`` images (the clustering of unsupervised training), weights
    ``exp(-squared distance)`` of the L2-normalised features, as SpCL and Cluster Contrast
    compute it. Returns an ``(N, N)`` float32 CSR graph of the distances in ``[0, 1]`` of
    the pairs whose encodings overlap (the diagonal included, each row sorted by distance);
    every absent pair is at distance 1. ``max_distance < 1`` also leaves out the pairs
    farther than it, for a smaller graph when only near pairs matter (DBSCAN's ``eps``):
    on noisy features (an early epoch of unsupervised training) nearly every pair of
    encodings overlaps a little, and the whole graph took 16 GB at N = 32,621 where
    ``max_distance=0.6`` keeps it within 1 GB.
    scikit-learn's ``DBSCAN(metric='precomputed')`` reads it as it is (absent pairs are
    not neighbours). The nearest neighbours are exact, found by ``knn``: ``'torch'``
    (blocks of matrix products on the features' device) or ``'faiss'``.

    ``k1`` counts neighbours besides the image itself, as the paper and torchreid's
    ``re_ranking`` do (SpCL's faiss version searches ``k1`` images including the image
    itself: one neighbour fewer).

    Example::

        >>> distance = jaccard_distance(torch.randn(100, 768), k1=20, k2=6)
        >>> distance.shape, distance.getrow(0).toarray().max() <= 1
        ((100, 100), True)
    """
    if features.dim() != 2 or len(features) < 2:
        raise ValueError(f'expected (N, D) features of at least 2 images, got shape '
                         f'{tuple(features.shape)}')
    n = len(features)
    k1 = min(k1, n - 1)
    features = unit_rows(features).float()
    rank, _ = nearest_neighbours(features, max(k1 + 1, min(k2, n)), knn, budget)
    norms = squared_norms(features)

    def squared_distance(rows: Tensor, cols: Tensor) -> Tensor:
        return pair_squared_distances(features, norms, rows, cols, budget)

    encoding = encode(features, k1, min(k2, k1 + 1), rank, squared_distance, budget)
    graph = Filling(n * max(k1, 1), torch.float32, torch.long)
    lengths = torch.zeros(n, dtype=torch.long)
    everyone = slice(0, n)
    for block, rows, cols, shared in overlaps(encoding, n, everyone, everyone, budget):
        distance = jaccard(shared)
        kept = distance <= max_distance
        rows, cols, distance = rows[kept], cols[kept], distance[kept]
        # Each row sorted by distance, as DBSCAN wants: one sort by (row, distance).
        order = torch.argsort(rows.double() * 2 + distance.double())
        graph.add(distance[order].cpu(), cols[order].cpu())
        lengths[block] = torch.bincount(rows, minlength=block.stop - block.start).cpu()
    data, indices = graph.tensors()
    indptr = np.concatenate(([0], lengths.cumsum(0).numpy()))
    return sparse.csr_matrix((data.numpy(), indices.numpy(), indptr), shape=(n, n))
