"""Every registered MSINet model: outputs, gradients, weights layout, reference parity."""
import re

import pytest
import torch
import torchreid

import msinet_reid
from msinet_reid.genotypes import GENOTYPES
from msinet_reid.models import MSINet

from helpers import deterministic_images, deterministic_state_dict

MODELS = msinet_reid.list_models()
NUM_CLASSES = 7
BATCH, HEIGHT, WIDTH = 4, 64, 32


def build(name: str, loss: str = 'softmax') -> MSINet:
    return torchreid.models.build_model(name, NUM_CLASSES, loss=loss, pretrained=False)


def test_expected_models_are_registered():
    assert {'msinet', 'msinet_x1_0', 'msinet_vr', 'msinet_s', 'msinet_sam'} <= set(MODELS)


@pytest.mark.parametrize('name', MODELS)
def test_eval_features(name):
    model = build(name).eval()
    with torch.no_grad():
        features = model(torch.randn(BATCH, 3, HEIGHT, WIDTH))
    assert features.shape == (BATCH, 768) == (BATCH, model.feature_dim)
    assert torch.isfinite(features).all()


@pytest.mark.parametrize('name', MODELS)
def test_train_outputs_softmax(name):
    logits = build(name, 'softmax').train()(torch.randn(BATCH, 3, HEIGHT, WIDTH))
    assert isinstance(logits, list)
    assert [tuple(y.shape) for y in logits] == [(BATCH, NUM_CLASSES)] * 2


@pytest.mark.parametrize('name', MODELS)
def test_train_outputs_triplet(name):
    logits, features = build(name, 'triplet').train()(torch.randn(BATCH, 3, HEIGHT, WIDTH))
    assert [tuple(y.shape) for y in logits] == [(BATCH, NUM_CLASSES)] * 2
    assert [tuple(f.shape) for f in features] == [(BATCH, 512), (BATCH, 256)]


@pytest.mark.parametrize('name', MODELS)
def test_backward_reaches_every_trainable_parameter(name):
    model = build(name, 'triplet').train()
    images = torch.randn(BATCH, 3, HEIGHT, WIDTH)
    logits, features = model(images)
    loss = sum(t.pow(2).mean() for t in logits + features)
    if model.align_module is not None:  # trained by the SAM loss, from the final maps
        loss = loss + model.align_module(model(images, return_featuremaps=True)).mean()
    loss.backward()
    for key, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, f'{key} received no gradient'
            assert torch.isfinite(param.grad).all(), key
            assert param.grad.abs().sum() > 0, f'{key} has an all-zero gradient'
    frozen = {key for key, param in model.named_parameters() if not param.requires_grad}
    assert frozen == {'head.bias', 'f_head.bias'}  # BNNeck shifts


@pytest.mark.parametrize('name', MODELS)
@pytest.mark.parametrize('training', [False, True])
def test_return_featuremaps(name, training):
    model = build(name).train(training)
    maps = model(torch.randn(BATCH, 3, HEIGHT, WIDTH), return_featuremaps=True)
    assert maps.shape == (BATCH, 512, HEIGHT // 16, WIDTH // 16)


def _interaction_keys(genotype):
    """state_dict keys the interaction modules of ``genotype`` own."""
    cell_indices = [0, 1, 3, 4, 6, 7]  # cells 2 and 5 are the transitions
    params = {'none': [], 'exc': [], 'cross_att': ['gamma'],
              'ag': ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']}
    keys = set()
    for position, op in enumerate(genotype):
        prefix = f'cells.{cell_indices[position // 2]}._op{2 + position % 2}.'
        keys |= {prefix + p for p in params[op]}
    return keys


@pytest.mark.parametrize('name', MODELS)
def test_state_dict_matches_reference_layout(name, reference_facts):
    """Keys and shapes equal the reference's, up to the genotype's own interaction ops."""
    model = torchreid.models.build_model(name, 751, pretrained=False)
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    reference = reference_facts['models']['msinet_sam_person' if name == 'msinet_sam' else 'msinet']
    expected = dict(map(tuple, reference['state_dict']))
    if model.genotype != GENOTYPES['msinet']:
        is_op = re.compile(r'cells\.\d+\._op\d\.')
        expected = {key: shape for key, shape in expected.items() if not is_op.match(key)}
        for key in _interaction_keys(model.genotype):
            expected[key] = ours[key]
    assert ours == expected
    if name in ('msinet', 'msinet_x1_0', 'msinet_sam'):
        assert list(ours) == [key for key, _ in reference['state_dict']]  # same order too


@pytest.mark.parametrize('name, facts', [('msinet', 'msinet'), ('msinet_sam', 'msinet_sam_person')])
def test_parameter_counts(name, facts, reference_facts):
    model = torchreid.models.build_model(name, 751, pretrained=False)
    expected = reference_facts['models'][facts]
    without_classifiers = sum(
        p.numel() for key, p in model.named_parameters() if 'classifier' not in key
    )
    assert without_classifiers == expected['params_excluding_classifiers']
    assert sum(p.numel() for p in model.parameters()) == expected['params_total']


def test_genotypes_match_reference(reference_facts):
    assert {k: list(v) for k, v in GENOTYPES.items()} == reference_facts['genotypes']


def _reference_model(genotype: str, dtype: torch.dtype) -> MSINet:
    model = MSINet(10, genotype, loss='triplet').to(dtype)
    model.load_state_dict(deterministic_state_dict(model))
    return model


def _assert_close_to_reference(ours, expected, tolerance=1e-5):
    scale = expected.abs().max()
    torch.testing.assert_close(ours.double(), expected, rtol=tolerance, atol=tolerance * scale)


@pytest.mark.parametrize('genotype', sorted(GENOTYPES))
def test_outputs_equal_reference_implementation(genotype, reference_outputs):
    """Same weights and input as recorded from the authors' code (float64) -> same outputs."""
    model = _reference_model(genotype, torch.float64)
    images = deterministic_images(4, 64, 32)
    with torch.no_grad():
        _assert_close_to_reference(model.eval()(images), reference_outputs[f'{genotype}/eval'])
        (y, f_y), (v, f_v) = model.train()(images)
    for ours, key in [(v, 'v'), (f_v, 'f_v'), (y, 'y'), (f_y, 'f_y')]:
        _assert_close_to_reference(ours, reference_outputs[f'{genotype}/train/{key}'])


@pytest.mark.numerics
@pytest.mark.parametrize('genotype', sorted(GENOTYPES))
def test_float32_eval_features_equal_reference(genotype, reference_outputs, record_property):
    """float32 eval features within 1e-5 of the reference (train-mode BN over 4 tiny maps is
    too ill-conditioned for float32 to match float64 at that precision, also in the
    reference code itself)."""
    model = _reference_model(genotype, torch.float32).eval()
    with torch.no_grad():
        features = model(deterministic_images(4, 64, 32).float())
    expected = reference_outputs[f'{genotype}/eval']
    record_property('max error / max feature',
                    ((features.double() - expected).abs().max() / expected.abs().max()).item())
    _assert_close_to_reference(features, expected)


@pytest.mark.parametrize('height, width', [(256, 128), (256, 256), (96, 48)])
def test_input_sizes(height, width):
    model = build('msinet').eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, height, width)).shape == (1, 768)


def test_too_small_input_names_the_problem():
    with pytest.raises(ValueError, match='at least 32 pixels high'):
        build('msinet').eval()(torch.randn(1, 3, 16, 16))


def test_sam_adds_no_inference_cost():
    plain, sam = build('msinet'), build('msinet_sam')
    sam.load_state_dict(plain.state_dict(), strict=False)
    images = torch.randn(2, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(images), sam.eval()(images))
    assert sam.align_module(torch.randn(2, 512, 4, 2)).shape == (2, 8)


def test_unknown_loss_raises():
    with pytest.raises(ValueError, match="unsupported loss 'arcface'.*softmax, triplet"):
        build('msinet', loss='arcface')


def test_register_genotype_builds_through_torchreid(unique_name):
    name = unique_name()
    ops = 'ag ag exc ag cross_att ag ag none ag cross_att exc cross_att'
    msinet_reid.register_genotype(name, ops)
    assert name in msinet_reid.list_models()
    model = torchreid.models.build_model(name, NUM_CLASSES, loss='triplet', pretrained=False)
    assert model.genotype == tuple(ops.split())
    other = unique_name()
    msinet_reid.register_genotype(other, ['none'] * 12)
    assert build(other).genotype == ('none',) * 12


def test_register_genotype_rejects_taken_names(unique_name):
    with pytest.raises(ValueError, match="already has a model named 'resnet50'"):
        msinet_reid.register_genotype('resnet50', 'msinet')
    with pytest.raises(ValueError, match="already has a model named 'msinet'"):
        msinet_reid.register_genotype('msinet', 'msinet_vr')
    name = unique_name()
    msinet_reid.register_genotype(name, 'msinet_s')
    with pytest.raises(ValueError, match=name):
        msinet_reid.register_genotype(name, 'msinet_s')


@pytest.mark.parametrize('genotype, message', [
    (['ag'] * 11 + ['conv'], r"entry 11 is 'conv'.*allowed values: none, exc, ag, cross_att"),
    ('ag ag exc', r'has 12 interaction operations.*none, exc, ag, cross_att'),
    ('msinet_xl', r'has 12 interaction operations'),
    (['ag'] * 13, r'has 12 interaction operations'),
    (None, r'has 12 interaction operations'),
])
def test_bad_genotypes_raise(genotype, message, unique_name):
    with pytest.raises(ValueError, match=message):
        msinet_reid.register_genotype(unique_name(), genotype)
    with pytest.raises(ValueError, match=message):
        MSINet(NUM_CLASSES, genotype)


def test_unknown_model_name_is_torchreid_error():
    with pytest.raises(KeyError, match='Unknown model'):
        torchreid.models.build_model('msinet_xl', NUM_CLASSES, pretrained=False)
