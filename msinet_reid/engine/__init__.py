"""Training engines: torchreid ``Engine`` subclasses for the paper's recipe."""
from .train import ImageMSINetEngine

__all__ = ['ImageMSINetEngine']
