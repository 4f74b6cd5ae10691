"""Data sets for the demo and the tests: a synthetic Market-1501."""
from .synthetic import make_market1501

__all__ = ['make_market1501']
