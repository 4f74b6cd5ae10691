"""torchreid engines for MSINet: the paper's training recipe and its architecture search.

Both run unchanged in one process and under ``torchrun`` (see :mod:`.base`)."""
from .base import DistributedEngine
from .search import TCMSearchEngine, build_search_optimizers
from .train import ImageMSINetEngine

__all__ = ['DistributedEngine', 'ImageMSINetEngine', 'TCMSearchEngine', 'build_search_optimizers']
