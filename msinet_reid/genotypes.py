"""Genotypes: the interaction operation chosen for each of MSINet's 12 interaction modules.

Cell ``k`` (0-based) uses entries ``2k`` (after the first light convolutions) and
``2k + 1`` (after the second).
"""
from typing import Sequence, Tuple, Union

from .layers.interaction import INTERACTIONS

NUM_INTERACTIONS = 12

Genotype = Tuple[str, ...]

GENOTYPES = {
    # Paper Table 1: searched on MSMT17 with TCM, train/valid identities 60%-80%.
    'msinet': ('ag', 'ag', 'exc', 'ag', 'cross_att', 'ag',
               'ag', 'none', 'ag', 'cross_att', 'exc', 'cross_att'),
    # Table 7: searched on VeRi-776.
    'msinet_vr': ('ag', 'ag', 'exc', 'cross_att', 'ag', 'cross_att',
                  'ag', 'cross_att', 'cross_att', 'cross_att', 'exc', 'cross_att'),
    # Table 7: searched with softmax loss and one classifier (classic DARTS scheme).
    'msinet_s': ('exc', 'cross_att', 'ag', 'cross_att', 'cross_att', 'cross_att',
                 'ag', 'cross_att', 'exc', 'cross_att', 'exc', 'cross_att'),
}


def parse_genotype(genotype: Union[str, Sequence[str]]) -> Genotype:
    """Validate a genotype and return it as a tuple of 12 operation names.

    Accepts a list of 12 names from ``none, exc, ag, cross_att``, the same as one
    space-separated string, or the name of a published genotype (``GENOTYPES``).

    >>> parse_genotype('ag ag exc ag cross_att ag ag none ag cross_att exc cross_att')[:3]
    ('ag', 'ag', 'exc')
    """
    if isinstance(genotype, str):
        ops = GENOTYPES.get(genotype, genotype.split())
    else:
        ops = genotype
    allowed = ', '.join(INTERACTIONS)
    if not isinstance(ops, Sequence) or len(ops) != NUM_INTERACTIONS:
        raise ValueError(
            f'a genotype has {NUM_INTERACTIONS} interaction operations (one per interaction '
            f'module), got {genotype!r}; give a list or a space-separated string of '
            f'{NUM_INTERACTIONS} names from: {allowed}, or one of the named genotypes '
            f'{", ".join(GENOTYPES)}'
        )
    for index, op in enumerate(ops):
        if op not in INTERACTIONS:
            raise ValueError(
                f'genotype entry {index} is {op!r}, which is not an interaction operation; '
                f'allowed values: {allowed}'
            )
    return tuple(ops)
