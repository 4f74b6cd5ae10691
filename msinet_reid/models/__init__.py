"""The MSINet family, registered as torchreid models on import."""
from .encoder import MSINetEncoder, build_body
from .msinet import (
    GENOTYPES, MSINET_IMAGENET, MSICell, MSINet, msinet, msinet_s, msinet_sam, msinet_vr,
    register_genotype,
)
from .registry import list_models, model_entrypoint, published_weights, register_model

__all__ = [
    'GENOTYPES', 'MSICell', 'MSINET_IMAGENET', 'MSINet', 'MSINetEncoder', 'build_body',
    'list_models', 'model_entrypoint', 'msinet', 'msinet_s', 'msinet_sam', 'msinet_vr',
    'published_weights', 'register_genotype', 'register_model',
]
