"""The checks every export passes before it is written: its features, on its own runtime,
against PyTorch's, exactly (max abs) or in direction (cosine similarity).

Example::

    >>> check_features(OnnxModel('msinet.onnx'), InferenceModel(model), images, atol=1e-4)
    >>> check_cosine(OnnxModel('msinet.fp16.onnx'), InferenceModel(model), images, 0.999)
"""
from typing import Iterable

import torch
from torch import nn


class ExportCheckError(RuntimeError):
    """An exported model computes other features than the PyTorch model it came from."""


def _name(model: nn.Module) -> str:
    return str(getattr(model, 'path', type(model).__name__))


@torch.no_grad()
def feature_cosine(model: nn.Module, reference: nn.Module,
                   batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """Cosine similarity of ``model``'s and ``reference``'s features, one per image."""
    return torch.cat([nn.functional.cosine_similarity(model(batch).float(), reference(batch))
                      for batch in batches])


@torch.no_grad()
def check_features(model: nn.Module, reference: nn.Module, images: torch.Tensor,
                   atol: float = 1e-4) -> float:
    """Largest difference between ``model``'s and ``reference``'s features; raises
    :class:`ExportCheckError` above ``atol``."""
    error = float((model(images) - reference.eval()(images)).abs().max())
    if not error <= atol:
        raise ExportCheckError(
            f'the exported model {_name(model)} computes features {error:.2e} away from '
            f'PyTorch (tolerance {atol:.0e}); nothing was written. Please report this with '
            f'your torch and runtime versions')
    return error


@torch.no_grad()
def check_cosine(model: nn.Module, reference: nn.Module, images: torch.Tensor,
                 min_cosine: float) -> float:
    """Smallest cosine similarity of ``model``'s features to ``reference``'s; raises
    :class:`ExportCheckError` below ``min_cosine``."""
    similarity = float(feature_cosine(model, reference.eval(), [images]).min())
    if not similarity >= min_cosine:
        raise ExportCheckError(
            f'the exported model {_name(model)} computes features with a cosine similarity '
            f'of {similarity:.4f} to PyTorch\'s (at least {min_cosine} needed); nothing was '
            f'written. Please report this with your torch and runtime versions')
    return similarity
