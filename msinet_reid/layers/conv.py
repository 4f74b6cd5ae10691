"""Convolution blocks of the MSINet cell, OSNet style."""
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv_bn(conv: nn.Conv2d, bn: nn.Module, x: Tensor) -> Tensor:
    """``bn(conv(x))``; an eval-mode BatchNorm runs folded into the convolution.

    In eval mode BatchNorm is a per-channel affine map, so scaling the convolution's
    weights and adding a shift gives the same result in one pass over the output instead
    of two. The fold is recomputed at every call: weights stay trainable (e.g. with frozen
    BatchNorm) and state_dicts unchanged.
    """
    if bn.training or not isinstance(bn, nn.BatchNorm2d):
        return bn(conv(x))
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    return F.conv2d(x, weight, shift, conv.stride, conv.padding, conv.dilation, conv.groups)


class ConvBnAct(nn.Sequential):
    """Convolution (no bias) + BatchNorm, followed by ReLU unless ``act=False``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 1,
        stride: int = 1, padding: int = 0, act: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)
        if act:
            self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = conv_bn(self.conv, self.bn, x)
        return self.relu(x) if hasattr(self, 'relu') else x


class LightConv3x3(nn.Sequential):
    """Lightweight 3x3 convolution: linear 1x1, depthwise 3x3, BatchNorm, ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False, groups=channels)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(conv_bn(self.conv2, self.bn, self.conv1(x)))


def light_conv_stack(channels: int, depth: int) -> nn.Module:
    """``depth`` stacked light convolutions; receptive field 1 + 2 * depth.

    A single one is returned bare, as the reference names it (``conv2a.conv1``
    rather than ``conv2a.0.conv1``), to keep state_dicts interchangeable.
    """
    if depth == 1:
        return LightConv3x3(channels)
    return nn.Sequential(*(LightConv3x3(channels) for _ in range(depth)))
