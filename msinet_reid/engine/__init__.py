"""torchreid engines for MSINet."""
from .search import TCMSearchEngine, build_search_optimizers

__all__ = ['TCMSearchEngine', 'build_search_optimizers']
