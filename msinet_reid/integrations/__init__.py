"""MSINet as the backbone of SpCL-family unsupervised ReID code (SpCL, IDM and their kin).

One line in their training script makes ``models.create('msinet', ...)`` work::

    from spcl import models  # or: from idm import models
    from msinet_reid.integrations import register_models
    register_models(models.__factory)
"""
from ..models import MSINetEncoder, build_body
from .idm import MSINetIDM, MSINetIDMEncoder, find_mixing_module, idm_bn_names
from .registry import ARCHS, ENCODERS, constructors, find_host, register_models

__all__ = [
    'ARCHS', 'ENCODERS', 'MSINetEncoder', 'MSINetIDM', 'MSINetIDMEncoder', 'build_body',
    'constructors', 'find_host', 'find_mixing_module', 'idm_bn_names', 'register_models',
]
