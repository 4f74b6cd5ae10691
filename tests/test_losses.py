"""The recipe's losses: batch-hard triplet and the spatial alignment loss (SAM, eq. 7/8)."""
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import msinet_reid
from msinet_reid.layers import SpatialAlignModule
from msinet_reid.losses import SpatialAlignLoss, TripletLoss, mutual_correlation

from helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
# The full-tensor computation that mirrors the authors' code, shared with the benchmark.
reference_loss = load_script('benchmarks/sam_memory.py').reference_spatial_align_loss

# One channel, maps of 2x1 positions (hand-computed cases below).
X0, X1, X2 = [1., 2.], [3., 0.], [0., 1.]


def one_channel_maps(*rows):
    return torch.tensor(rows, dtype=torch.float64).view(len(rows), 1, 2, 1)


def test_mutual_correlation_by_hand():
    # A[i, j, s] = max_t x_i(t) * x_j(s); e.g. A[1, 0] = [max(3, 0) * 1, max(3, 0) * 2].
    expected = torch.tensor([[[2., 4.], [6., 0.]], [[3., 6.], [9., 0.]]], dtype=torch.float64)
    assert torch.equal(mutual_correlation(one_channel_maps(X0, X1)), expected)


def test_positive_term_by_hand():
    # Singletons: each anchor is its own only positive. A[0,0] = [2, 4], A[1,1] = [9, 0].
    self_activation = torch.tensor([[1., 0.], [0., 1.]], dtype=torch.float64)
    loss = SpatialAlignLoss('pos')(one_channel_maps(X0, X1), self_activation,
                                   torch.tensor([0, 1]))
    expected = ((1 - 2 / math.sqrt(20)) + (1 - 0)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_negative_term_by_hand():
    # Anchor 0: A[0,1] = [6, 0], A[0,2] = [0, 2], orthogonal: mean of (0, 1, 1, 0) = 1/2.
    # Anchor 1: A[1,0] = [3, 6], A[1,2] = [0, 3]; anchor 2: A[2,0] = [1, 2], A[2,1] = [3, 0].
    loss = SpatialAlignLoss('neg')(one_channel_maps(X0, X1, X2), None, torch.tensor([0, 1, 2]))
    expected = (0.5 + (1 - 6 / math.sqrt(45)) / 2 + (1 - 1 / math.sqrt(5)) / 2) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize('mode', ['pos', 'neg', 'pos_neg'])
@pytest.mark.parametrize('chunk_elements', [1, 1 << 22])  # one anchor per chunk; one chunk
def test_equals_full_tensor_reference(mode, chunk_elements):
    maps = torch.randn(8, 16, 4, 2, dtype=torch.float64).relu().requires_grad_()
    activation = torch.randn(8, 8, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([3, 1, 3, 0, 1, 2, 0, 2])  # 4 identities x 2, shuffled
    expected = reference_loss(maps, activation, labels, mode)
    grads = torch.autograd.grad(expected, (maps, activation), allow_unused=True)
    loss = SpatialAlignLoss(mode, chunk_elements)(maps, activation, labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    for grad, want in zip(torch.autograd.grad(loss, (maps, activation), allow_unused=True),
                          grads):
        assert (grad is None) == (want is None)
        if want is not None:
            torch.testing.assert_close(grad, want, rtol=1e-9, atol=1e-12)


def test_every_pair_counts_once_in_unbalanced_batches():
    maps = torch.randn(5, 4, 2, 2, dtype=torch.float64).relu()
    activation = torch.randn(5, 4, dtype=torch.float64)
    labels = [0, 0, 0, 1, 2]
    corr = mutual_correlation(maps)

    def distance(a, b):
        return 1 - F.cosine_similarity(a, b, dim=0)

    pos = [distance(activation[i], corr[i, p]) for i in range(5) for p in range(5)
           if labels[p] == labels[i]]
    neg = [distance(corr[i, m], corr[i, n]) for i in range(5) for m in range(5)
           for n in range(5) if labels[m] != labels[i] != labels[n]]
    loss = SpatialAlignLoss('pos_neg')(maps, activation, torch.tensor(labels))
    assert loss.item() == pytest.approx((sum(pos) / len(pos) + sum(neg) / len(neg)).item())


def test_self_activation_is_the_reference_pam():
    module = SpatialAlignModule(16).double()
    maps = torch.randn(2, 16, 4, 2, dtype=torch.float64)
    query = module.pos_pam.query_conv(maps).flatten(2)
    key = module.pos_pam.key_conv(maps).flatten(2)
    # PAM energy[b, i, j] = q_i . k_j, maximised over the keys j.
    expected = torch.einsum('bci,bcj->bij', query, key).max(dim=2).values
    torch.testing.assert_close(module(maps), expected)


@pytest.mark.parametrize('labels', [[5, 5, 5, 5], [0, 1, 2, 3]],
                         ids=['single identity', 'single-image identities'])
@pytest.mark.parametrize('maps', ['random', 'zeros'])
def test_degenerate_batches_are_finite(labels, maps):
    maps = (torch.zeros(4, 8, 2, 2) if maps == 'zeros' else torch.rand(4, 8, 2, 2))
    maps.requires_grad_()
    activation = torch.randn(4, 4, requires_grad=True)
    loss = SpatialAlignLoss('pos_neg')(maps, activation, torch.tensor(labels))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(maps.grad).all() and torch.isfinite(activation.grad).all()


def test_misuse_is_explained():
    with pytest.raises(ValueError, match='unknown SAM mode'):
        SpatialAlignLoss('both')
    with pytest.raises(ValueError, match='align_module'):
        SpatialAlignLoss('pos')(torch.rand(2, 4, 2, 2), None, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match='B labels'):
        SpatialAlignLoss('neg')(torch.rand(2, 4, 2, 2), None, torch.tensor([0, 1, 2]))


def test_sam_benchmark_quick_mode():
    done = subprocess.run([sys.executable, 'benchmarks/sam_memory.py', '--quick'], cwd=ROOT,
                          env={'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1', 'PATH': ''},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 'ratio msinet-reid / full tensor: peak memory' in done.stdout


def test_triplet_by_hand():
    # Unit vectors at angles 0, 60 (same identity) and 90, 180 degrees (another identity).
    angles = torch.tensor([0., 60., 90., 180.]) * math.pi / 180
    features = torch.stack((angles.cos(), angles.sin()), 1) * 3  # scale: normalised away
    labels = torch.tensor([0, 0, 1, 1])
    chord = lambda degrees: 2 * math.sin(math.radians(degrees) / 2)  # noqa: E731
    # anchor: (hardest positive, hardest negative) distances
    pairs = [(chord(60), chord(90)), (chord(60), chord(30)),
             (chord(90), chord(30)), (chord(90), chord(120))]
    expected = sum(max(0., ap - an + 0.3) for ap, an in pairs) / 4
    assert TripletLoss(0.3)(features, labels).item() == pytest.approx(expected, rel=1e-5)


def test_triplet_matches_torchreid_on_normalised_features():
    features, labels = torch.randn(8, 16), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    expected = msinet_reid._torchreid.losses.TripletLoss(0.3)(F.normalize(features), labels)
    assert TripletLoss(0.3)(features, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_triplet_single_identity_is_zero_and_finite():
    features = torch.randn(4, 8, requires_grad=True)
    loss = TripletLoss(0.3)(features, torch.zeros(4, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(features.grad).all()
