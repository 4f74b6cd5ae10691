"""CMC, mAP and mINP of a query set against a gallery, a block of queries at a time.

torchreid's ``evaluate_rank`` argsorts the whole ``(queries, gallery)`` distance matrix
and builds a match matrix of the same size: 20 GB and more at MSMT17's 11,659 x 82,161.
Here a block of queries is scored against a slice of the gallery at a time, so memory is
a budget whatever the sizes, and the ranks of a query's matches are counted without
sorting its gallery: the matches' distances are computed first and sorted; a gallery image
comes before the k-th match when its distance is smaller, which a binary search among
them tells, and the counts of each slice of the gallery add up.

The protocol is torchreid's (Market-1501's): gallery images of the query's identity seen
by the query's camera are left out, queries with no match left are skipped. Images at
equal distances rank by gallery index (a stable sort).
"""
from typing import Dict, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from .blocks import ragged_arange, row_blocks
from .distance import euclidean_blocks, full_precision, unit_rows
from .rerank import reranked_blocks

# Temporary bytes of one block of queries against one slice of the gallery.
DEFAULT_BUDGET = 64 * 2 ** 20
# Bytes per (query, gallery image) of a slice: distances, two searches, the counts.
_PAIR_BYTES = 32
ArrayLike = Union[Tensor, np.ndarray, Sequence]


def rank_metrics(
    qf: ArrayLike, gf: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike,
    q_camids: ArrayLike, g_camids: ArrayLike, *, rerank: bool = False, k1: int = 20,
    k2: int = 6, lambda_value: float = 0.3, max_rank: int = 50, normalize: bool = True,
    topk: int = 0, knn: str = 'torch', budget: int = DEFAULT_BUDGET, progress: bool = False,
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
    'num_valid_queries': int}``, and with ``topk > 0`` ``'ranked'``: each query's
    ``topk`` nearest gallery images (indices, best first, the left-out ones excluded), for
    :func:`~msinet_reid.retrieval.draw_ranked_lists`. mINP is fast-reid's mean inverse
    negative penalty: per query, its number of matches over the rank of its last match.

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
    if rerank:
        scaled = unit_rows if normalize else full_precision
        blocks = reranked_blocks(scaled(qf), scaled(gf), k1, k2, lambda_value, knn, budget)
    else:
        blocks = euclidean_blocks(qf, gf, normalize,
                                  max(1, budget // (_PAIR_BYTES * min(len(gf), 8192))), budget)
    q_pids, g_pids, q_camids, g_camids = labels
    identities = _Identities(g_pids)
    counts = _RankCounts(max_rank)
    ranked = np.zeros((len(qf), min(topk, len(gf))), dtype=np.int64)
    for block in tqdm(blocks, desc='Ranking', unit='block', disable=not progress):
        rows = block.rows
        scores = _score(block, q_pids[rows], q_camids[rows], g_camids, identities, budget,
                        ranked.shape[1])
        counts.add(*scores[:2])
        if ranked.shape[1]:
            ranked[rows] = scores[2].cpu().numpy()
    results = counts.result()
    if topk:
        results['ranked'] = ranked
    return results


def _features(features: ArrayLike, name: str) -> Tensor:
    features = torch.as_tensor(features)
    if features.dim() != 2 or len(features) == 0:
        raise ValueError(f'{name} must be (N, D) features of at least one image, got shape '
                         f'{tuple(features.shape)}')
    if not features.is_floating_point():
        raise ValueError(f'{name} must be floating-point features, got {features.dtype}')
    bad = torch.zeros(len(features), dtype=torch.bool, device=features.device)
    for rows in row_blocks(len(features), 16 * features.shape[1]):  # no full-size temporary
        bad[rows] = ~torch.isfinite(features[rows]).all(dim=1)
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


class _Identities:
    """The gallery images of each identity: a sorted index of the gallery's identities."""

    def __init__(self, g_pids: Tensor) -> None:
        self.order = torch.argsort(g_pids, stable=True)  # by identity, then gallery index
        self.sorted_pids = g_pids[self.order]

    def of(self, q_pids: Tensor) -> Tuple[Tensor, Tensor]:
        """``(owner, image)``: for each query (its position in ``q_pids``), the gallery
        images of its identity, in gallery order."""
        first = torch.searchsorted(self.sorted_pids, q_pids)
        lengths = torch.searchsorted(self.sorted_pids, q_pids, right=True) - first
        owners = torch.arange(len(q_pids), device=q_pids.device).repeat_interleave(lengths)
        return owners, self.order[ragged_arange(first, lengths)]


def _score(block, q_pids: Tensor, q_camids: Tensor, g_camids: Tensor,
           identities: _Identities, budget: int, topk: int) -> Tuple[Tensor, Tensor, Tensor]:
    """``(ranks, matches, ranked)`` of a block of queries: the 0-based rank of each
    query's matches, in order (``(B, most matches)``, padded), their number, and the
    ``topk`` best-ranked gallery images."""
    size, width = block.rows.stop - block.rows.start, len(g_camids)
    owners, images = identities.of(q_pids)
    left_out = g_camids[images] == q_camids[owners]
    owners_left, images_left = owners[left_out], images[left_out]
    owners, images = owners[~left_out], images[~left_out]  # the matches
    matches = torch.bincount(owners, minlength=size)
    values = block.pairs(owners, images)
    # Each query's matches by distance, then gallery index (images come in gallery order).
    order = torch.argsort(values, stable=True)
    order = order[torch.argsort(owners[order], stable=True)]
    slot = torch.arange(len(order), device=owners.device) - (matches.cumsum(0) - matches)[
        owners[order]]
    most = max(int(matches.max()) if size else 0, 1)
    sorted_matches = values.new_full((size, most), float('inf'))
    sorted_matches[owners[order], slot] = values[order]
    sorted_images = torch.full((size, most), width, dtype=torch.long, device=owners.device)
    sorted_images[owners[order], slot] = images[order]

    before = torch.zeros(size, most + 1, dtype=torch.long, device=owners.device)
    best = (values.new_zeros(size, 0), torch.zeros(size, 0, dtype=torch.long,
                                                   device=owners.device))
    step = max(1, budget // (_PAIR_BYTES * max(size, 1)))
    offsets = torch.arange(size, device=owners.device)[:, None] * (most + 1)
    for start in range(0, width, step):
        part = slice(start, min(start + step, width))
        distance = block.columns(part)
        inside = (images_left >= part.start) & (images_left < part.stop)
        distance[owners_left[inside], images_left[inside] - part.start] = float('inf')
        if topk:
            best = _merge_best(best, distance, part.start, topk)
        inside = (images >= part.start) & (images < part.stop)
        distance[owners[inside], images[inside] - part.start] = float('inf')  # counted apart
        # How many of its query's matches precede each gallery image.
        preceding = torch.searchsorted(sorted_matches, distance, right=True, out_int32=True)
        _break_ties(preceding, distance, sorted_matches, sorted_images, part.start)
        before += torch.bincount((preceding + offsets).flatten(),
                                 minlength=size * (most + 1)).view(size, most + 1)
    # A match's rank: the other images before it, and the matches before it.
    ranks = before.cumsum(dim=1)[:, :most] + torch.arange(most, device=owners.device)
    return ranks, matches, best[1]


def _break_ties(preceding: Tensor, distance: Tensor, sorted_matches: Tensor,
                sorted_images: Tensor, offset: int) -> None:
    """Where an image's distance equals matches' (float32 makes that common at scale),
    only the matches of lower gallery index precede it: a stable sort's order."""
    below = torch.searchsorted(sorted_matches, distance, out_int32=True)
    rows, cols = ((preceding != below) & distance.isfinite()).nonzero(as_tuple=True)
    if not len(rows):
        return
    first, count = below[rows, cols].long(), (preceding - below)[rows, cols].long()
    owner = torch.arange(len(rows), device=rows.device).repeat_interleave(count)
    earlier = sorted_images[rows[owner], ragged_arange(first, count)] < cols[owner] + offset
    preceding[rows, cols] = (first + torch.zeros_like(first).index_add_(
        0, owner, earlier.long())).int()


def _merge_best(best: Tuple[Tensor, Tensor], distance: Tensor, offset: int,
                topk: int) -> Tuple[Tensor, Tensor]:
    """The ``topk`` smallest distances (and gallery indices) of ``best`` and a slice
    starting at ``offset``, ties by gallery index."""
    part = torch.sort(distance, dim=1, stable=True)
    values = torch.cat((best[0], part.values[:, :topk]), dim=1)
    indices = torch.cat((best[1], part.indices[:, :topk] + offset), dim=1)
    order = torch.sort(values, dim=1, stable=True).indices[:, :topk]
    return values.gather(1, order), indices.gather(1, order)


class _RankCounts:
    """Sums of the per-query figures over blocks of queries."""

    def __init__(self, max_rank: int) -> None:
        self.first_hits = np.zeros(max_rank, dtype=np.int64)
        self.average_precision = self.inverse_penalty = 0.0
        self.valid = 0

    def add(self, ranks: Tensor, matches: Tensor) -> None:
        """Add the queries of a block: their matches' ranks (padded) and counts."""
        valid = matches > 0
        ranks, matches = ranks[valid], matches[valid]
        if not len(matches):
            return
        slots = torch.arange(ranks.shape[1], device=ranks.device)
        real = slots[None] < matches[:, None]
        precision = (slots[None] + 1) / (ranks + 1).to(torch.float64)
        self.average_precision += float(((precision * real).sum(dim=1) / matches).sum())
        last = ranks.gather(1, (matches - 1)[:, None]).squeeze(1)
        self.inverse_penalty += float((matches / (last + 1).to(torch.float64)).sum())
        first = ranks[:, 0].cpu().numpy()
        np.add.at(self.first_hits, first[first < len(self.first_hits)], 1)
        self.valid += len(matches)

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
