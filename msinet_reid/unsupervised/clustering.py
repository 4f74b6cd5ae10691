"""Pseudo labels for unsupervised ReID: k-reciprocal Jaccard distance, then DBSCAN.

torchreid ships k-reciprocal re-ranking (``torchreid.utils.re_ranking``), but for a query
set against a gallery: it returns the query x gallery block only, blended with the
original distance. Clustering needs the Jaccard distance among one set of images, which
:func:`jaccard_distance` computes directly.

Everything is sparse, so a whole MSMT17 training set (32,621 images) clusters in a few
hundred MB: each image's encoding has a few dozen non-zeros, two images overlap only when
they share one, and pairs that do not overlap (Jaccard distance 1) are never stored. The
work is done in blocks of rows on the device of the features (CPU or CUDA), in torch;
only the final graph goes to scipy for scikit-learn's DBSCAN.
"""
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse
from torch import Tensor

# Bytes of temporary tensors one block of rows may take.
BLOCK_BYTES = 64 * 2 ** 20
KNN_BACKENDS = ('torch', 'faiss')

# A sparse matrix as three aligned 1-d tensors sorted by row: (rows, cols, values).
Entries = Tuple[Tensor, Tensor, Tensor]


def jaccard_distance(features: Tensor, k1: int = 20, k2: int = 6, knn: str = 'torch',
                     max_distance: float = 1.0) -> sparse.csr_matrix:
    """Jaccard distance between the k-reciprocal encodings of every pair of features.

    Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding",
    CVPR 2017, over one set of ``N`` features: each image is encoded by its k1-reciprocal
    neighbours (expanded with its neighbours' k1/2-reciprocal sets that mostly overlap it),
    weighted by ``exp(-squared distance)``, averaged over its ``k2`` nearest neighbours
    (local query expansion); two images are close when their encodings overlap.

    Returns an ``(N, N)`` float32 CSR graph of the distances in ``[0, 1]`` of the pairs
    whose encodings overlap (the diagonal included, each row sorted by distance); every
    absent pair is at distance 1. ``max_distance < 1`` also leaves out the pairs farther
    than it, for a smaller graph when only near pairs matter (DBSCAN's ``eps``).
    scikit-learn's ``DBSCAN(metric='precomputed')`` reads it as it is (absent pairs are
    not neighbours). Memory grows with ``N`` times the neighbours of neighbours, not
    ``N^2``. The nearest neighbours are exact, found by ``knn``: ``'torch'`` (blocks of
    matrix products on the features' device) or ``'faiss'`` (``IndexFlatIP``, on the GPU
    for CUDA features when faiss has GPU support).

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
    if knn not in KNN_BACKENDS:
        raise ValueError(f'knn must be one of {KNN_BACKENDS}, got {knn!r}')
    n = len(features)
    k1 = min(k1, n - 1)
    features = F.normalize(features.detach().float(), dim=1)
    search = _faiss_neighbours if knn == 'faiss' else _torch_neighbours
    rank = search(features, k1 + 1)
    encoding = _reciprocal_encoding(features, rank, k1)
    if k2 > 1:
        encoding = _query_expansion(encoding, rank[:, :min(k2, k1 + 1)], n)
    return _jaccard_graph(encoding, n, max_distance)


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


# ----------------------------------------------------------------------------------------
# Nearest neighbours: (N, k) indices, nearest first, each image first in its own row


def _torch_neighbours(features: Tensor, k: int) -> Tensor:
    n = len(features)
    rank = torch.empty(n, k, dtype=torch.long, device=features.device)
    for block in _row_blocks(n, 4 * n):
        # The most similar unit-length features are the nearest.
        rank[block] = (features[block] @ features.t()).topk(k, dim=1).indices
    return rank


def _faiss_neighbours(features: Tensor, k: int) -> Tensor:
    try:
        import faiss
    except ImportError as error:
        raise ImportError("knn='faiss' needs faiss: pip install faiss-cpu (or faiss-gpu "
                          "for CUDA), or use knn='torch'") from error
    points = np.ascontiguousarray(features.cpu().numpy())
    index = faiss.IndexFlatIP(points.shape[1])  # inner product = cosine on unit vectors
    if features.is_cuda and hasattr(faiss, 'StandardGpuResources'):
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(),
                                       features.device.index or 0, index)
    index.add(points)
    _, rank = index.search(points, k)
    return torch.from_numpy(rank).to(features.device)


# ----------------------------------------------------------------------------------------
# Encodings


def _reciprocal(rank: Tensor, k: int) -> Tensor:
    """``(N, k + 1)`` mask over ``rank[:, :k + 1]``: the neighbours that have the image
    among their own ``k + 1`` nearest, i.e. its k-reciprocal neighbours."""
    nearest = rank[:, :k + 1]
    mask = torch.empty(nearest.shape, dtype=torch.bool, device=rank.device)
    for block in _row_blocks(len(rank), 8 * (k + 1) ** 2):
        rows = torch.arange(block.start, block.stop, device=rank.device)
        mask[block] = (nearest[nearest[block]] == rows[:, None, None]).any(dim=2)
    return mask


def _reciprocal_encoding(features: Tensor, rank: Tensor, k1: int) -> Entries:
    """Each image's k1-reciprocal set, expanded with each of its members' k1/2-reciprocal
    set that has more than two thirds of its images in it, weighted by ``exp(-squared
    distance)`` and normalised to sum to one."""
    n, half = len(rank), int(round(k1 / 2))
    mine, halves = _reciprocal(rank, k1), _reciprocal(rank, half)
    width, narrow = k1 + 1, half + 1
    rows, cols = [], []
    for block in _row_blocks(n, width * narrow * (width + 24)):
        candidates, own = rank[block, :width], mine[block]  # (B, K)
        theirs, valid = rank[candidates, :narrow], halves[candidates]  # (B, K, H)
        inside = (theirs[..., None] == candidates[:, None, None, :]) & own[:, None, None, :]
        inside = inside.any(dim=3) & valid
        accept = own & (3 * inside.sum(dim=2) > 2 * valid.sum(dim=2))
        taken = valid & accept[..., None]
        ids = torch.arange(block.start, block.stop, device=rank.device)
        keys = torch.cat((ids[:, None].expand_as(own)[own] * n + candidates[own],
                          ids[:, None, None].expand_as(taken)[taken] * n + theirs[taken]))
        keys = keys.unique()  # sorted: by row, then column
        rows.append(keys // n)
        cols.append(keys % n)
    rows, cols = torch.cat(rows), torch.cat(cols)
    weights = torch.exp(-_pair_distance(features, rows, cols))
    totals = weights.new_zeros(n).index_add_(0, rows, weights)
    return rows, cols, weights / totals[rows]


def _pair_distance(features: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Squared Euclidean distances of the unit-length features of the pairs (rows, cols)."""
    chunk = max(1, BLOCK_BYTES // (8 * features.shape[1]))
    similarity = torch.cat([
        (features[rows[i:i + chunk]] * features[cols[i:i + chunk]]).sum(dim=1)
        for i in range(0, len(rows), chunk)])
    return (2 - 2 * similarity).clamp_min_(0)


def _query_expansion(encoding: Entries, nearest: Tensor, n: int) -> Entries:
    """Each image's encoding replaced by the mean encoding of its ``nearest`` images."""
    rows, cols, values = encoding
    pointers = _pointers(rows, n)
    count = nearest.shape[1]
    out_rows, out_cols, out_values = [], [], []
    for block in _blocks(_row_sizes(pointers)[nearest].sum(dim=1) * 32):
        sources = nearest[block].flatten()
        lengths = pointers[sources + 1] - pointers[sources]
        taken = _ragged_arange(pointers[sources], lengths)
        owners = torch.arange(block.start, block.stop, device=rows.device)
        owners = owners.repeat_interleave(count).repeat_interleave(lengths)
        keys, slots = (owners * n + cols[taken]).unique(return_inverse=True)
        summed = values.new_zeros(len(keys)).index_add_(0, slots, values[taken])
        out_rows.append(keys // n)
        out_cols.append(keys % n)
        out_values.append(summed / count)
    return torch.cat(out_rows), torch.cat(out_cols), torch.cat(out_values)


# ----------------------------------------------------------------------------------------
# Overlaps through an inverted index


def _jaccard_graph(encoding: Entries, n: int, max_distance: float) -> sparse.csr_matrix:
    """``1 - sum(min) / sum(max)`` of the pairs of rows that share a column, as CSR, where
    at most ``max_distance``.

    Rows sum to one, so ``sum(max(a, b)) = 2 - sum(min(a, b))``. For a block of rows,
    every non-zero ``(i, c)`` meets the non-zeros ``(j, c)`` of its column (the inverted
    index), and ``min`` of the two is added to the overlap of ``(i, j)``.
    """
    rows, cols, values = encoding
    by_column = torch.argsort(cols, stable=True)
    column_rows, column_values = rows[by_column], values[by_column]
    column_pointers = _pointers(cols[by_column], n)
    column_sizes = _row_sizes(column_pointers)
    row_pointers = _pointers(rows, n)
    # A block's cost: its dense (B, N) overlaps and the (i, c, j) meetings of its rows.
    meetings = torch.zeros(n, dtype=torch.long, device=rows.device).index_add_(
        0, rows, column_sizes[cols])
    data, indices, lengths = [], [], []
    for block in _blocks(4 * n + 24 * meetings):
        start, stop = row_pointers[block.start], row_pointers[block.stop]
        own_rows, own_cols, own_values = rows[start:stop], cols[start:stop], values[start:stop]
        sizes = column_sizes[own_cols]
        met = _ragged_arange(column_pointers[own_cols], sizes)
        overlap = values.new_zeros((block.stop - block.start) * n)
        overlap.index_add_(0, ((own_rows - block.start) * n).repeat_interleave(sizes)
                           + column_rows[met],
                           torch.minimum(own_values.repeat_interleave(sizes), column_values[met]))
        met = overlap.nonzero().squeeze(1)
        shared = overlap[met]
        distance = (1 - shared / (2 - shared)).clamp_(0, 1)
        kept = distance <= max_distance
        met, distance = met[kept], distance[kept]
        local = met // n
        # Each row sorted by distance, as DBSCAN wants: one sort by (row, distance).
        order = torch.argsort(local.double() * 2 + distance.double())
        data.append(distance[order].cpu())
        indices.append((met[order] % n).cpu())
        lengths.append(torch.bincount(local, minlength=block.stop - block.start).cpu())
    indptr = np.concatenate(([0], torch.cat(lengths).cumsum(0).numpy()))
    return sparse.csr_matrix((torch.cat(data).numpy(), torch.cat(indices).numpy(), indptr),
                             shape=(n, n))


# ----------------------------------------------------------------------------------------
# Ragged arrays and blocks of rows


def _pointers(sorted_rows: Tensor, n: int) -> Tensor:
    """CSR row pointers (``n + 1``) of entries sorted by row."""
    counts = torch.bincount(sorted_rows, minlength=n)
    return torch.cat((counts.new_zeros(1), counts.cumsum(0)))


def _row_sizes(pointers: Tensor) -> Tensor:
    return pointers[1:] - pointers[:-1]


def _ragged_arange(starts: Tensor, lengths: Tensor) -> Tensor:
    """``cat([arange(s, s + l) for s, l in zip(starts, lengths)])``, without the loop."""
    ends = lengths.cumsum(0)
    offsets = (starts - ends + lengths).repeat_interleave(lengths)
    return offsets + torch.arange(len(offsets), device=starts.device)


def _row_blocks(n: int, bytes_per_row: int) -> Iterator[slice]:
    """Consecutive rows, as many per block as ``BLOCK_BYTES`` allows (at least one)."""
    rows = max(1, BLOCK_BYTES // bytes_per_row)
    for start in range(0, n, rows):
        yield slice(start, min(start + rows, n))


def _blocks(bytes_per_row: Tensor) -> Iterator[slice]:
    """Like :func:`_row_blocks`, for rows of different costs."""
    ends = bytes_per_row.cumsum(0).cpu()
    start, n = 0, len(ends)
    while start < n:
        spent = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(torch.searchsorted(ends, spent + BLOCK_BYTES, right=True)))
        yield slice(start, min(stop, n))
        start = stop
