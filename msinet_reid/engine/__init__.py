"""torchreid engines for MSINet: the paper's training recipe, and (from
:mod:`msinet_reid.search`) its architecture search.

Both run unchanged in one process and under ``torchrun``, and survive preemption (see
:mod:`.base` and :mod:`.preemption`)."""
from .base import DistributedEngine
from .preemption import TrainingInterrupted, add_checkpoint_flags, checkpoint_options
from .train import ImageMSINetEngine

_SEARCH = ('TCMSearchEngine', 'build_search_optimizers')


def __getattr__(name: str):
    # The search engine lives with the rest of the search; imported on first use, since
    # msinet_reid.search itself builds on this package.
    if name in _SEARCH:
        from .. import search
        return getattr(search, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = ['DistributedEngine', 'ImageMSINetEngine', 'TrainingInterrupted',
           'add_checkpoint_flags', 'checkpoint_options', *_SEARCH]
