"""Unsupervised ReID with MSINet: pseudo labels by clustering, a cluster memory, an engine."""
from .clustering import camera_centred, cluster_pseudo_labels, jaccard_distance
from .engine import ClusterContrastEngine
from .memory import ClusterMemory

__all__ = ['ClusterContrastEngine', 'ClusterMemory', 'camera_centred', 'cluster_pseudo_labels',
           'jaccard_distance']
