"""CMC, mAP and mINP of a query set against a gallery, a block of queries at a time.

torchreid's ``evaluate_rank`` argsorts the whole ``(queries, gallery)`` distance matrix
and builds a match matrix of the same size: 20 GB and more at MSMT17's 11,659 x 82,161.
Here each block of queries is scored as it is computed, so memory is the block (sized
from a budget) whatever the sizes, and the ranks of a query's matches are counted without
sorting its gallery: a gallery image comes before the k-th match when its distance is
smaller, which a binary search among the matches' sorted distances tells.

The protocol is torchreid's (Market-1501's): gallery images of the query's identity seen
by the query's camera are left out, queries with no match left are skipped. Images at
equal distances rank by gallery index (a stable sort).
"""
from typing import Dict, Iterator, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from .blocks import row_blocks
from .distance import squared_norms, unit_rows
from .rerank import reranked_distances

# Temporary bytes of one block of queries: its distances, masks and ranks.
DEFAULT_BUDGET = 256 * 2 ** 20
ArrayLike = Union[Tensor, np.ndarray, Sequence]


def rank_metrics(
    qf: ArrayLike, gf: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike,
    q_camids: ArrayLike, g_camids: ArrayLike, *, rerank: bool = False, k1: int = 20,
    k2: int = 6, lambda_value: float = 0.3, max_rank: int = 50, normalize: bool = True,
    knn: str = 'torch', budget: int = DEFAULT_BUDGET, progress: bool = False,
) -> Dict[str, object]:
    """Rank-k (CMC), mAP and mINP of queries ``qf`` against gallery ``gf``.

    Features are L2-normalised (unless ``normalize=False``) and ranked by Euclidean
    distance, as torchreid's engine ranks them with ``normalize_feature=True``; the figures
    equal torchreid's ``evaluate_rank`` on that distance matrix. ``rerank=True`` ranks by
    k-reciprocal re-ranking instead, with the final distances of torchreid's
    ``re_ranking(q_g, q_q, g_g, k1, k2, lambda_value)``, computed sparsely
    (:func:`~msinet_reid.retrieval.reranked_distances`). Memory is a block of queries
    against the gallery (``budget`` bytes) plus, with re-ranking, a few hundred bytes
    per image; never the whole distance matrix. Runs on the features' device.

    Returns ``{'cmc': (max_rank,) array, 'mAP': float, 'mINP': float,
    'num_valid_queries': int}``. mINP is fast-reid's mean inverse negative penalty: per
    query, its number of matches over the rank of its last match.

    Example::

        >>> results = rank_metrics(qf, gf, q_pids, g_pids, q_camids, g_camids, rerank=True)
        >>> results['cmc'][0], results['mAP'], results['mINP']
    """
    qf, gf = _features(qf, 'qf'), _features(gf, 'gf')
    labels = [_labels(values, name, len(features), qf.device) for values, name, features in (
        (q_pids, 'q_pids', qf), (g_pids, 'g_pids', gf), (q_camids, 'q_camids', qf),
        (g_camids, 'g_camids', gf))]
    if qf.shape[1] != gf.shape[1]:
        raise ValueError(f'qf has {qf.shape[1]}-d features and gf {gf.shape[1]}-d ones')
    if max_rank < 1:
        raise ValueError(f'max_rank must be at least 1, got {max_rank}')
    counts = _RankCounts(max_rank)
    if rerank:
        scaled = unit_rows if normalize else _full_precision
        blocks = reranked_distances(scaled(qf), scaled(gf), k1, k2, lambda_value, knn,
                                    budget // 4)
    else:
        blocks = _euclidean_distances(qf, gf, normalize, budget)
    for rows, distance in tqdm(blocks, desc='Ranking', unit='block', disable=not progress):
        counts.add(distance, labels[0][rows], labels[1], labels[2][rows], labels[3])
    return counts.result()


def _features(features: ArrayLike, name: str) -> Tensor:
    features = torch.as_tensor(features)
    if features.dim() != 2 or len(features) == 0:
        raise ValueError(f'{name} must be (N, D) features of at least one image, got shape '
                         f'{tuple(features.shape)}')
    if not features.is_floating_point():
        raise ValueError(f'{name} must be floating-point features, got {features.dtype}')
    bad = ~torch.isfinite(features).all(dim=1)
    if bad.any():
        rows = bad.nonzero().flatten()
        raise ValueError(f'{name} holds NaN or infinite values in {len(rows)} rows (first: '
                         f'{rows[:5].tolist()}); check the model and its input images')
    return features


def _labels(values: ArrayLike, name: str, count: int, device: torch.device) -> Tensor:
    values = torch.as_tensor(np.asarray(values), device=device).long().flatten()
    if len(values) != count:
        raise ValueError(f'{name} has {len(values)} entries for {count} features')
    return values


def _full_precision(features: Tensor) -> Tensor:
    return features.to(torch.promote_types(features.dtype, torch.float32))


def _euclidean_distances(qf: Tensor, gf: Tensor, normalize: bool,
                         budget: int) -> Iterator[Tuple[slice, Tensor]]:
    """Blocks of squared Euclidean distances between ``qf`` and ``gf``, L2-normalised with
    ``normalize``, without a normalised copy of the gallery (which may be the largest
    array in memory): ``q.g / |g|`` is the dot product with the unit gallery feature."""
    queries = unit_rows(qf) if normalize else _full_precision(qf)
    gallery = gf.to(queries.dtype)
    scale = (gallery.norm(dim=1).clamp_min(1e-12).reciprocal() if normalize  # F.normalize's
             else gallery.new_ones(len(gallery)))  # eps
    gallery_norms = torch.cat([squared_norms(gallery[block] * scale[block, None])
                               for block in row_blocks(len(gallery), 2 * gallery.shape[1]
                                                       * gallery.element_size(), budget)])
    query_norms = squared_norms(queries)
    for rows in row_blocks(len(queries), _ROW_BYTES * len(gallery), budget):
        distance = (queries[rows] @ gallery.t()).mul_(scale).mul_(-2)
        yield rows, distance.add_(query_norms[rows, None]).add_(gallery_norms)


# Bytes per gallery image of a block row: distances, masks, two searches, counts.
_ROW_BYTES = 48


class _RankCounts:
    """Sums of the per-query figures over blocks of queries."""

    def __init__(self, max_rank: int) -> None:
        self.first_hits = np.zeros(max_rank, dtype=np.int64)
        self.average_precision = self.inverse_penalty = 0.0
        self.valid = 0

    def add(self, distance: Tensor, q_pids: Tensor, g_pids: Tensor, q_camids: Tensor,
            g_camids: Tensor) -> None:
        same = q_pids[:, None] == g_pids[None]
        junk = same & (q_camids[:, None] == g_camids[None])
        positive = same & ~junk
        matches = positive.sum(dim=1)
        valid = matches > 0
        if not valid.any():
            return
        distance, positive, matches = (distance[valid].masked_fill(junk[valid], float('inf')),
                                       positive[valid], matches[valid])
        ranks = _match_ranks(distance, positive, matches)  # (B, P): 0-based, padded
        slots = torch.arange(ranks.shape[1], device=ranks.device)
        real = slots[None] < matches[:, None]
        precision = (slots[None] + 1) / (ranks + 1).to(torch.float64)
        self.average_precision += float(((precision * real).sum(dim=1) / matches).sum())
        last = ranks.gather(1, (matches - 1)[:, None]).squeeze(1)
        self.inverse_penalty += float((matches / (last + 1).to(torch.float64)).sum())
        first = ranks[:, 0].cpu().numpy()
        np.add.at(self.first_hits, first[first < len(self.first_hits)], 1)
        self.valid += int(valid.sum())

    def result(self) -> Dict[str, object]:
        if not self.valid:
            raise ValueError(
                'no query has a match in the gallery: each query identity is absent from it, '
                'or seen there only by the query\'s own camera (torchreid: "all query '
                'identities do not appear in gallery"); check the query and gallery sets')
        return {'cmc': (self.first_hits.cumsum() / self.valid).astype(np.float64),
                'mAP': self.average_precision / self.valid,
                'mINP': self.inverse_penalty / self.valid,
                'num_valid_queries': self.valid}


def _match_ranks(distance: Tensor, positive: Tensor, matches: Tensor) -> Tensor:
    """The 0-based rank of each query's matches among its gallery (left-out images last),
    in order: ``(B, max matches)``, padded past each row's own count.

    A gallery image precedes the k-th match when its distance is smaller: its count of
    matches at or below its distance (a binary search among the sorted match distances)
    is at most k. Rows where an image's distance equals a match's (rare with float
    features) are ranked by a stable sort instead.
    """
    rows, cols = positive.nonzero(as_tuple=True)
    values = distance[rows, cols]
    order = torch.argsort(values, stable=True)  # by distance, then gallery index ...
    order = order[torch.argsort(rows[order], stable=True)]  # ... within each row
    width = int(matches.max())
    slot = torch.arange(len(order), device=rows.device) - (matches.cumsum(0) - matches)[
        rows[order]]
    sorted_matches = distance.new_full((len(distance), width), float('inf'))
    sorted_matches[rows[order], slot] = values[order]

    above = torch.searchsorted(sorted_matches, distance, right=True)
    at_or_above = torch.searchsorted(sorted_matches, distance, right=False)
    ties = (((above - at_or_above) > positive.long()) & distance.isfinite()).any(dim=1)
    before = torch.zeros(len(distance), width + 1, dtype=torch.int32, device=distance.device)
    before.scatter_add_(1, above, torch.ones_like(above, dtype=torch.int32))
    ranks = before.cumsum(dim=1)[:, :width].long()
    for row in ties.nonzero().flatten().tolist():
        ranked = positive[row][torch.sort(distance[row], stable=True).indices]
        found = ranked.nonzero().flatten()
        ranks[row, :len(found)] = found
    return ranks
