"""Twins Contrastive architecture search: identity split, memories, schemes, supernet.

The engine that runs the search is ``msinet_reid.engine.TCMSearchEngine``.
"""
from ..layers.mixed import MixedInteraction
from ..models.supernet import MSINetSupernet
from .memory import IdentityMemory, identity_centroids
from .scheme import SCHEMES, SearchScheme, get_scheme
from .split import TABLE9_RATIOS, IdentitySplit, check_ratios, split_identities

__all__ = [
    'IdentityMemory', 'IdentitySplit', 'MSINetSupernet', 'MixedInteraction', 'SCHEMES',
    'SearchScheme', 'TABLE9_RATIOS', 'check_ratios', 'get_scheme', 'identity_centroids',
    'split_identities',
]
