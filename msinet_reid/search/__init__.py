"""Twins Contrastive architecture search, the whole mechanism in one package.

- :mod:`.supernet`: ``MSINetSupernet`` (the reference search space by default) and
  :mod:`.mixed`: its ``MixedInteraction`` ops (eq. 1);
- :mod:`.split`: the search-train/search-valid identity split (Table 9);
- :mod:`.scheme`: the schemes compared in Fig. 5(a) and Table 9;
- :mod:`.engine`: ``TCMSearchEngine``, the search as a torchreid engine, with
  ``IdentityMemory`` (``msinet_reid.losses``, shared with Cluster Contrast) as ``C_tr``
  and ``C_val``;
- :mod:`.genotype_file`: the genotype file the search writes, and its reader.
"""
from ..losses.memory import IdentityMemory, identity_centroids
from .engine import TCMSearchEngine, build_search_optimizers
from .genotype_file import load_genotype, save_genotype
from .mixed import SEARCH_OPS, MixedInteraction
from .scheme import SCHEMES, SearchScheme, get_scheme
from .split import TABLE9_RATIOS, IdentitySplit, check_ratios, split_identities
from .supernet import SEARCH_SPACES, MSINetSupernet, ReferenceSearchNetwork

__all__ = [
    'IdentityMemory', 'IdentitySplit', 'MSINetSupernet', 'MixedInteraction',
    'ReferenceSearchNetwork', 'SCHEMES', 'SEARCH_OPS', 'SEARCH_SPACES', 'SearchScheme',
    'TABLE9_RATIOS', 'TCMSearchEngine', 'build_search_optimizers', 'check_ratios',
    'get_scheme', 'identity_centroids', 'load_genotype', 'save_genotype', 'split_identities',
]
