"""The MSINet family, registered as torchreid models on import."""
from .msinet import (
    GENOTYPES, MSINET_IMAGENET, MSICell, MSINet, msinet, msinet_s, msinet_sam, msinet_vr,
    register_genotype,
)
from .registry import list_models, register_model

__all__ = [
    'GENOTYPES', 'MSICell', 'MSINET_IMAGENET', 'MSINet', 'list_models', 'msinet', 'msinet_s',
    'msinet_sam', 'msinet_vr', 'register_genotype', 'register_model',
]
