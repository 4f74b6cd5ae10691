"""Retrieval at dataset scale: distances, exact nearest neighbours, k-reciprocal encodings,
re-ranking and ranking metrics, in blocks under a memory budget.

- :func:`rank_metrics`: CMC, mAP and mINP of queries against a gallery, with or without
  k-reciprocal re-ranking, equal to torchreid's ``evaluate_rank`` (and ``re_ranking``) on
  L2-normalised features, without the ``queries x gallery`` matrix;
- :func:`reranked_distances`: torchreid's re-ranked distances, sparse, block by block;
- :func:`jaccard_distance`: the k-reciprocal Jaccard distance within one set, the
  clustering of unsupervised training;
- :func:`draw_ranked_lists`: pictures of each query's top-ranked gallery images;
- :func:`nearest_neighbours`, :func:`squared_distances`: the building blocks.
"""
from .distance import nearest_neighbours, squared_distances, unit_rows
from .metrics import rank_metrics
from .ranked_lists import MATCH_COLOUR, OTHER_COLOUR, draw_ranked_lists
from .reciprocal import jaccard_distance
from .rerank import reranked_distances

__all__ = ['MATCH_COLOUR', 'OTHER_COLOUR', 'draw_ranked_lists', 'jaccard_distance',
           'nearest_neighbours', 'rank_metrics', 'reranked_distances', 'squared_distances',
           'unit_rows']
