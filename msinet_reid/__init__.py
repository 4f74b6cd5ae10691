"""msinet-reid: the MSINet family (CVPR 2023) as a torchreid plug-in.

Importing this package registers the models, and the vehicle datasets ``'veri'`` and
``'vehicleid'``, with torchreid, and the models with timm when timm is installed::

    import torchreid
    import msinet_reid

    model = torchreid.models.build_model('msinet', num_classes=751, loss='triplet',
                                         pretrained=False)
"""
import sys
import warnings
from importlib.util import find_spec


def _run_as_the_command() -> bool:
    """Whether this process is ``python -m msinet_reid``, the command: it owns the
    process, as the ``msinet-reid`` launcher (``msinet_reid_cli``) does, and hides
    torchreid's import-time warning that its Cython evaluation is not compiled."""
    argv = list(getattr(sys, 'orig_argv', ()))
    return '-m' in argv and argv[argv.index('-m') + 1:][:1] == ['msinet_reid']


if _run_as_the_command():  # before torchreid is imported, which warns
    warnings.filterwarnings('ignore', message='Cython evaluation', category=UserWarning)

# _torchreid makes torchreid.models etc. importable in both layouts
from . import _torchreid  # noqa: F401,E402
from .data import VehicleID, VeRi  # noqa: F401,E402  (registers 'veri' and 'vehicleid' too)
from .genotypes import GENOTYPES, parse_genotype  # noqa: E402
from .models import MSINet, list_models, register_genotype  # noqa: E402
from .weights import PretrainedWeightsError  # noqa: E402

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
