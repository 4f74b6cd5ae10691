"""Eval-mode BatchNorm folded into the convolution on the fly: same values and gradients."""
import pytest
import torch
from torch import nn

from msinet_reid.layers import ConvBnAct, LightConv3x3

from helpers import deterministic_state_dict


@pytest.mark.parametrize('block', [
    lambda: ConvBnAct(8, 16, 3, stride=2, padding=1),
    lambda: ConvBnAct(8, 16, act=False),
    lambda: LightConv3x3(8),
], ids=['conv_bn_relu', 'conv_bn', 'light_conv'])
def test_eval_folding_matches_unfolded_computation(block):
    block = block().double()
    block.load_state_dict(deterministic_state_dict(block))
    block.eval()
    images = torch.randn(2, 8, 9, 7, dtype=torch.float64)
    unfolded = nn.Sequential(*block.children())  # plain Sequential: conv, then BatchNorm
    ours, expected = block(images), unfolded(images)
    torch.testing.assert_close(ours, expected)
    # Frozen-BatchNorm fine-tuning gets the same gradients.
    grads = torch.autograd.grad(ours.square().sum(), list(block.parameters()))
    expected_grads = torch.autograd.grad(expected.square().sum(), list(unfolded.parameters()))
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)
