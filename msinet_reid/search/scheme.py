"""Search schemes compared in the paper (Fig. 5(a), Table 9)."""
from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class SearchScheme:
    """How the two search sets are supervised, and their default identity ratios.

    ``contrastive``: each set is classified against its own identity memory (TCM);
    otherwise one linear classifier (the network's heads) and cross-entropy serve both
    sets, as in classic DARTS.
    """

    contrastive: bool
    ratios: Tuple[float, float]
    description: str


SCHEMES = {
    'tcm': SearchScheme(True, (60, 80), 'Twins Contrastive Mechanism (the paper\'s MSINet)'),
    'tcm_overlap': SearchScheme(True, (100, 100), '"TCM overlap": both memories over every '
                                'identity'),
    'ce_overlap': SearchScheme(False, (100, 100), '"CE overlap": one classifier, cross-entropy '
                               'over every identity (classic DARTS, MSINet-S)'),
}


def get_scheme(name: str) -> SearchScheme:
    if name not in SCHEMES:
        raise ValueError(f'unknown search scheme {name!r}; choose one of {", ".join(SCHEMES)}')
    return SCHEMES[name]
