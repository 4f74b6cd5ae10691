"""Reusable building blocks of the MSINet family."""
from .alignment import PositionAttention, SpatialAlignModule
from .conv import ConvBnAct, LightConv3x3, light_conv_stack
from .interaction import (
    INTERACTIONS, ChannelGate, CrossAttention, Exchange, NoInteraction,
)

__all__ = [
    'INTERACTIONS', 'ChannelGate', 'ConvBnAct', 'CrossAttention', 'Exchange', 'LightConv3x3',
    'NoInteraction', 'PositionAttention', 'SpatialAlignModule', 'light_conv_stack',
]
