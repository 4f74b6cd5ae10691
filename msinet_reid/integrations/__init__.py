"""MSINet as the backbone of SpCL-family unsupervised ReID code (SpCL, IDM and their kin).

One line in their training script makes ``models.create('msinet', ...)`` work::

    from spcl import models  # or: from idm import models
    from msinet_reid.integrations import register_models
    register_models(models.__factory)
"""
from .idm import MSINetIDM, find_mixing_module, idm_bn_names
from .registry import ARCHS, CONSTRUCTORS, register_models
from .spcl import MSINetEncoder, build_body

__all__ = [
    'ARCHS', 'CONSTRUCTORS', 'MSINetEncoder', 'MSINetIDM', 'build_body', 'find_mixing_module',
    'idm_bn_names', 'register_models',
]
