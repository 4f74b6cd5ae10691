"""msinet-reid: the MSINet family (CVPR 2023) as a torchreid plug-in.

Importing this package registers the models, and the vehicle datasets ``'veri'`` and
``'vehicleid'``, with torchreid, and the models with timm when timm is installed::

    import torchreid
    import msinet_reid

    model = torchreid.models.build_model('msinet', num_classes=751, loss='triplet',
                                         pretrained=False)
"""
import warnings
from importlib.util import find_spec

from . import _torchreid  # noqa: F401  (makes torchreid.models etc. importable in both layouts)
from .data import VehicleID, VeRi  # noqa: F401  (registers 'veri' and 'vehicleid' too)
from .genotypes import GENOTYPES, parse_genotype
from .models import MSINet, list_models, register_genotype
from .weights import PretrainedWeightsError

__version__ = '0.1.0'

if find_spec('timm') is not None:
    try:
        from .integrations import timm as _timm  # noqa: F401  (registers the models with timm)
    except (ImportError, ValueError) as error:  # a broken timm must not break msinet_reid
        warnings.warn(f'the MSINet models are not registered with timm: {error}')

__all__ = [
    'GENOTYPES', 'MSINet', 'PretrainedWeightsError', 'list_models', 'parse_genotype',
    'register_genotype',
]
