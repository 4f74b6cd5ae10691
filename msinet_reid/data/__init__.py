"""Data sets: the vehicle datasets VeRi-776 and VehicleID for torchreid (importing this
package registers them as ``'veri'`` and ``'vehicleid'``), and synthetic Market-1501,
VeRi-776 and VehicleID layouts for the demo and the tests; ``IdentitySampler``, the
seeded P x K batches the engines draw."""
from .samplers import IdentitySampler
from .synthetic import make_market1501, make_vehicleid, make_veri
from .vehicles import VehicleID, VeRi, register_datasets

__all__ = ['IdentitySampler', 'VeRi', 'VehicleID', 'make_market1501', 'make_vehicleid', 'make_veri',
           'register_datasets']
