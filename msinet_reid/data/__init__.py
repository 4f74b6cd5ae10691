"""Data sets for the demo and the tests: synthetic Market-1501, VeRi-776 and VehicleID."""
from .synthetic import make_market1501, make_vehicleid, make_veri

__all__ = ['make_market1501', 'make_vehicleid', 'make_veri']
