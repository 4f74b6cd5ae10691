"""The pieces of the architecture search: identity split, memories, mixed op, supernet."""
import json
import math
from pathlib import Path

import pytest
import torch

from torch import nn

from msinet_reid import MSINet, parse_genotype
from msinet_reid.search import (
    SEARCH_OPS, TABLE9_RATIOS, IdentityMemory, MixedInteraction, MSINetSupernet,
    identity_centroids, load_genotype, save_genotype, split_identities,
)

DATA = Path(__file__).parent / 'data'

NUM_IDS = 100


def _items(num_ids=NUM_IDS, images=6):
    return [(f'{pid}_{i}.jpg', pid, i % 2, 0) for pid in range(num_ids) for i in range(images)]


@pytest.mark.parametrize('ratios', TABLE9_RATIOS)
def test_split_sizes_and_overlap_follow_table9(ratios):
    train_pct, valid_pct = ratios
    split = split_identities(_items(), ratios, seed=3)
    assert len(split.train_pids) == train_pct
    assert len(split.valid_pids) == valid_pct
    assert len(split.overlap) == max(0, train_pct + valid_pct - 100)
    train_paths = {item[0] for item in split.train}
    valid_paths = {item[0] for item in split.valid}
    assert not train_paths & valid_paths  # no image is in both sets
    for pid in split.overlap:  # overlapping identities: images divided evenly
        assert sum(p.startswith(f'{pid}_') for p in train_paths) == 3
        assert sum(p.startswith(f'{pid}_') for p in valid_paths) == 3
    for pid in set(split.train_pids) - set(split.overlap):
        assert sum(p.startswith(f'{pid}_') for p in train_paths) == 6
    # Labels are 0..n-1 per set and map back to the original identities.
    for items, pids in ((split.train, split.train_pids), (split.valid, split.valid_pids)):
        assert sorted({item[1] for item in items}) == list(range(len(pids)))
        assert all(item[0].startswith(f'{pids[item[1]]}_') for item in items)


def test_split_is_deterministic_per_seed():
    first, again = split_identities(_items(), (60, 80), 0), split_identities(_items(), (60, 80), 0)
    other = split_identities(_items(), (60, 80), 1)
    assert first == again
    assert first.train_pids != other.train_pids


def test_paper_split_of_msmt17_identity_count():
    split = split_identities(_items(num_ids=1041, images=2), (60, 80))
    assert (len(split.train_pids), len(split.valid_pids), len(split.overlap)) == (625, 833, 417)


@pytest.mark.parametrize('ratios, message', [
    ((0, 50), 'in \\(0, 100\\]'), ((60, 120), 'in \\(0, 100\\]'), ((-5, 50), 'in \\(0, 100\\]'),
    ((60,), 'two percentages'), ((1, 1), 'both sets need identities'),
])
def test_split_rejects_invalid_ratios(ratios, message):
    with pytest.raises(ValueError, match=message):
        split_identities(_items(num_ids=10), ratios)


def test_split_refuses_to_divide_a_single_image():
    with pytest.raises(ValueError, match='one image'):
        split_identities(_items(num_ids=10, images=1), (100, 100))


def test_memory_initialises_to_identity_centroids():
    features = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0], [0.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    memory = IdentityMemory(num_ids=2, dim=2)
    memory.initialise(features, labels)
    # id 0: mean of (0.6, 0.8) and (1, 0) = (0.8, 0.4), normalised; id 1: (0, 1) and (0, -1).
    expected0 = torch.tensor([0.8, 0.4]) / math.hypot(0.8, 0.4)
    assert torch.allclose(memory.features[0], expected0)
    assert torch.allclose(memory.features[1], torch.zeros(2))  # opposite unit vectors cancel
    with pytest.raises(ValueError, match='identities without features'):
        identity_centroids(features, torch.tensor([0, 0, 2, 2]), 3)


def test_memory_loss_matches_eq2_by_hand():
    memory = IdentityMemory(num_ids=3, dim=2, temperature=0.05)
    memory.features.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-0.6, 0.8]]))
    feature = torch.tensor([[2.0, 2.0]])  # normalised: (1, 1) / sqrt(2)
    dots = [1 / math.sqrt(2), 1 / math.sqrt(2), 0.2 / math.sqrt(2)]
    logits = [d / 0.05 for d in dots]
    expected = -(logits[2] - math.log(sum(math.exp(x) for x in logits)))
    assert memory(feature, torch.tensor([2])).item() == pytest.approx(expected, rel=1e-5)


def test_memory_momentum_update_matches_eq3_by_hand():
    memory = IdentityMemory(num_ids=2, dim=2, momentum=0.2)
    memory.features.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    # Identity 0 twice: the update is applied sample by sample, re-normalised each time.
    memory.update(torch.tensor([[0.0, 5.0], [0.0, -1.0], [3.0, 0.0]]), torch.tensor([0, 0, 1]))
    c = torch.tensor([0.2, 0.8]) / math.hypot(0.2, 0.8)
    c = 0.2 * c + 0.8 * torch.tensor([0.0, -1.0])
    c = c / c.norm()
    c1 = torch.tensor([0.8, 0.2]) / math.hypot(0.8, 0.2)
    assert torch.allclose(memory.features, torch.stack([c, c1]), atol=1e-6)


def test_mixed_interaction_is_the_softmax_weighted_sum_of_eq1():
    arch = nn.Module()
    arch.alpha = nn.Parameter(torch.zeros(3, 4))
    mixed = MixedInteraction(32, arch, row=1)
    mixed.ops['cross_att'].gamma.data.fill_(0.5)  # zero at init would hide the op
    x1, x2 = torch.randn(2, 32, 4, 2), torch.randn(2, 32, 4, 2)
    with torch.no_grad():
        arch.alpha[1] = torch.tensor([0.1, -0.3, 0.7, 0.2])
    weights = torch.softmax(arch.alpha[1].detach(), 0)
    outputs = [op(x1, x2) for op in mixed.ops.values()]
    y1, y2 = mixed(x1, x2)
    assert torch.allclose(y1, sum(w * o[0] for w, o in zip(weights, outputs)), atol=1e-6)
    assert torch.allclose(y2, sum(w * o[1] for w, o in zip(weights, outputs)), atol=1e-6)
    assert mixed.chosen == 'cross_att' == SEARCH_OPS[2]
    assert not list(mixed.parameters(recurse=False))  # alpha belongs to arch alone
    with pytest.raises(ValueError, match='search ops'):
        MixedInteraction(32, arch, 0, ('ag', 'conv'))


def _reference_key(key: str, ops) -> str:
    """Our supernet's state_dict key under the reference's names: no ``network.`` prefix,
    and each mixed op's ops in a list (``_op2s.<index>``) rather than by name."""
    key = key.removeprefix('network.')
    for position in ('2', '3'):
        for index, op in enumerate(ops):
            key = key.replace(f'._op{position}.ops.{op}.', f'._op{position}s.{index}.')
    return key


def test_default_supernet_has_the_reference_shapes_and_feature_width():
    # supernet_reference.json: recorded from the authors' search_cnn.py by
    # tests/data/make_supernet_reference.py.
    reference = json.loads((DATA / 'supernet_reference.json').read_text())
    supernet = MSINetSupernet(reference['num_classes'])
    assert supernet.ops == tuple(reference['ops'])
    state = {key: list(value.shape) for key, value in supernet.state_dict().items()
             if key != 'alpha'}
    assert {_reference_key(k, supernet.ops): v for k, v in state.items()} == \
        reference['state_dict']
    assert [list(a.shape) for a in supernet.arch_parameters()] == reference['arch_parameters']
    with torch.no_grad():
        features = supernet.eval()(torch.randn(2, 3, 64, 32))
    assert features.shape[1] == supernet.feature_dim == reference['feature_dim'] == 512
    logits, features = supernet.train()(torch.randn(4, 3, 64, 32))
    assert [f.shape for f in features] == [(4, 512)] and [y.shape for y in logits] == [(4, 10)]
    assert supernet.network.classifier.bias is None
    assert not supernet.network.head.bias.requires_grad


def test_alpha_starts_near_uniform_as_one_tensor():
    torch.manual_seed(0)
    alpha = MSINetSupernet(num_classes=10).alpha.detach()
    assert alpha.shape == (12, 4)
    assert 0 < alpha.abs().max() < 5e-3 and 5e-4 < alpha.std() < 2e-3


def test_msinet_space_has_the_final_networks_widths_and_heads():
    supernet = MSINetSupernet(num_classes=10, space='msinet')
    state = supernet.network.state_dict()
    fixed = MSINet(10, genotype=['ag'] * 6 + ['cross_att'] * 6).state_dict()
    for key, value in fixed.items():
        if '._op' in key:  # an interaction module: inside the mixed op, under its name
            cell, rest = key.split('._op')
            position, name = rest.split('.', 1)
            kind = 'cross_att' if name == 'gamma' else 'ag'
            key = f'{cell}._op{position}.ops.{kind}.{name}'
        assert state[key].shape == value.shape, key
    outside_mixed_ops = {key for key in state if '._op' not in key}
    assert outside_mixed_ops == {key for key in fixed if '._op' not in key}
    assert supernet.feature_dim == 768
    with pytest.raises(ValueError, match='unknown search space'):
        MSINetSupernet(10, space='final')


@pytest.mark.parametrize('space', ['reference', 'msinet'])
def test_supernet_parameters_genotype_and_state(space):
    supernet = MSINetSupernet(num_classes=10, space=space)
    arch, weights = supernet.arch_parameters(), list(supernet.weight_parameters())
    assert len(arch) == 1 and arch[0].shape == (12, len(SEARCH_OPS))
    arch_ids, weight_ids = {id(p) for p in arch}, {id(p) for p in weights}
    assert arch_ids | weight_ids == {id(p) for p in supernet.parameters()}
    assert not arch_ids & weight_ids
    assert [key for key in supernet.state_dict() if key.endswith('alpha')] == ['alpha']
    with torch.no_grad():
        supernet.alpha.zero_()
        for index in range(12):
            supernet.alpha[index, index % 4] = 1.0
    genotype = supernet.genotype()
    assert parse_genotype(genotype) == genotype
    assert genotype[:4] == SEARCH_OPS
    assert [m.chosen for m in supernet.mixed_interactions()] == list(genotype)
    assert torch.allclose(supernet.arch_weights().sum(1), torch.ones(12))
    # alpha moves with the module, the mixed ops follow, and it comes back with
    # load_state_dict.
    supernet.double()
    assert supernet.mixed_interactions()[0].weights().dtype == torch.float64
    copy = MSINetSupernet(num_classes=10, space=space).double()
    copy.load_state_dict(supernet.state_dict())
    assert copy.genotype() == genotype
    assert [m.chosen for m in copy.mixed_interactions()] == list(genotype)


def test_genotype_file_round_trip(tmp_path):
    path = save_genotype(tmp_path / 'genotype.json', 'msinet_vr', epoch=3)
    assert load_genotype(path) == parse_genotype('msinet_vr')
    (tmp_path / 'bad.json').write_text('{"ops": []}')
    with pytest.raises(ValueError, match='no "genotype" entry'):
        load_genotype(tmp_path / 'bad.json')
