"""Losses of the paper's training recipe.

Cross-entropy with label smoothing is torchreid's ``CrossEntropyLoss`` unchanged: it
computes exactly what the authors' ``CrossEntropyLabelSmooth`` does.
"""
from .._torchreid import losses as _torchreid_losses
from .alignment import SAM_MODES, SpatialAlignLoss, mutual_correlation
from .memory import IdentityMemory, identity_centroids
from .triplet import TripletLoss

CrossEntropyLoss = _torchreid_losses.CrossEntropyLoss

__all__ = ['CrossEntropyLoss', 'IdentityMemory', 'SAM_MODES', 'SpatialAlignLoss', 'TripletLoss',
           'identity_centroids', 'mutual_correlation']
