"""timm integration: every registered MSINet through timm's own API.

Pretrained loading reads checkpoints the tests write (conftest's ``imagenet_checkpoint``);
nothing is downloaded.
"""
import importlib
import sys
import warnings

import pytest
import timm
import timm.data
import torch
import torchreid
from PIL import Image

import msinet_reid
from msinet_reid import PretrainedWeightsError
from msinet_reid.integrations.timm import TimmMSINet
from msinet_reid.weights import ENV_VAR

GENOTYPE = 'ag ag exc ag cross_att ag ag none ag cross_att exc cross_att'
LATE = 'msinet_timm_test_late'
SMALL = (2, 3, 64, 32)  # sides multiples of 16: stage maps 32x16 ... 4x2


@pytest.fixture(scope='module')
def late_genotype() -> str:
    """A genotype registered after ``import msinet_reid`` (and so after timm's import)."""
    msinet_reid.register_genotype(LATE, GENOTYPE)
    return LATE


def torchreid_twin(timm_model: TimmMSINet, name: str):
    """The torchreid model of ``name`` with the timm model's weights."""
    model = torchreid.models.build_model(name, timm_model.num_classes, pretrained=False)
    model.load_state_dict(timm_model.state_dict())
    return model


def test_timm_lists_every_registered_model(late_genotype):
    assert set(msinet_reid.list_models()) <= set(timm.list_models('msinet*'))
    assert late_genotype in timm.list_models()
    assert timm.list_models(pretrained=True, filter='msinet*') == [
        'msinet', 'msinet_sam', 'msinet_x1_0']


@pytest.mark.parametrize('name', [*msinet_reid.list_models(), LATE])
def test_create_forward_features_and_data_config(name, late_genotype):
    model = timm.create_model(name, pretrained=False, num_classes=5)
    assert isinstance(model, TimmMSINet) and model.num_classes == 5
    x = torch.randn(SMALL)
    assert model(x).shape == (2, 5)  # train mode: timm's logits too
    model.eval()
    features = model.forward_features(x)
    assert features.shape == (2, 896, 4, 2)
    # The embedding is the torchreid model's eval-mode feature.
    embedding = model.forward_head(features, pre_logits=True)
    torch.testing.assert_close(embedding, torchreid_twin(model, name).eval()(x))

    config = timm.data.resolve_data_config({}, model=model)
    assert config['input_size'] == (3, 256, 128)
    assert config['mean'] == timm.data.IMAGENET_DEFAULT_MEAN
    assert config['std'] == timm.data.IMAGENET_DEFAULT_STD
    transform = timm.data.create_transform(**config)
    assert transform(Image.new('RGB', (50, 170))).shape == (3, 256, 128)

    backbone = timm.create_model(name, features_only=True)
    maps = backbone(x)
    assert [m.shape[1] for m in maps] == backbone.feature_info.channels() == [64, 256, 384, 512]
    assert [64 // m.shape[2] for m in maps] == backbone.feature_info.reduction() == [2, 4, 8, 16]


def test_logits_are_the_mean_of_both_heads():
    model = timm.create_model('msinet', num_classes=7)
    twin = torchreid_twin(model, 'msinet')
    x = torch.randn(SMALL)
    global_logits, part_logits = twin.train()(x)  # train mode: batch statistics in both
    torch.testing.assert_close(model.train()(x), (global_logits + part_logits) / 2)


def test_headless_and_reset_classifier():
    x = torch.randn(SMALL)
    model = timm.create_model('msinet_vr', num_classes=0).eval()
    assert model(x).shape == (2, 768) == (2, model.head_hidden_size)
    assert model.num_features == 896
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    assert [c.out_features for c in model.get_classifier()] == [3, 3]
    model.reset_classifier(0)
    assert model(x).shape == (2, 768)
    with pytest.raises(ValueError, match='global_pool'):
        model.reset_classifier(0, global_pool='')


def test_features_only_out_indices_are_the_stage_maps():
    backbone = timm.create_model('msinet', features_only=True, out_indices=(1, -1)).eval()
    assert backbone.feature_info.channels() == [256, 512]
    assert not any('classifier' in key or 'f_conv' in key for key in backbone.state_dict())
    # The same maps, read with forward hooks from the torchreid model with its weights.
    twin = msinet_reid.models.msinet(1, pretrained=False).eval()
    twin.load_state_dict({key.removeprefix('model.'): value
                          for key, value in backbone.state_dict().items()}, strict=False)
    seen = {}
    for index in (1, 7):
        twin.cells[index].register_forward_hook(
            lambda module, inputs, output, index=index: seen.__setitem__(index, output))
    x = torch.randn(SMALL)
    twin(x)
    maps = backbone(x)
    torch.testing.assert_close(maps[0], seen[1])
    torch.testing.assert_close(maps[1], seen[7])


def test_intermediates_stop_after_the_last_map_requested():
    model = timm.create_model('msinet_vr', num_classes=0).eval()
    ran = []
    for index, cell in enumerate(model.cells):
        cell.register_forward_hook(lambda *_, index=index: ran.append(index))
    x = torch.randn(SMALL)
    stem, stage1 = model.forward_intermediates(x, indices=(0, 1), intermediates_only=True)
    assert ran == [0, 1] and stem.shape[1:] == (64, 32, 16) and stage1.shape[1:] == (256, 16, 8)
    features, maps = model.forward_intermediates(x, indices=1)
    torch.testing.assert_close(features, model.forward_features(x))
    assert len(maps) == 1 and maps[0].shape[1:] == (512, 4, 2)


def test_pretrained_loads_the_authors_checkpoint(imagenet_checkpoint, hub_dir, monkeypatch, capsys):
    monkeypatch.setenv(ENV_VAR, str(imagenet_checkpoint))
    saved = torch.load(imagenet_checkpoint, weights_only=False)['state_dict']
    model = timm.create_model('msinet', pretrained=True)
    assert model.num_classes == 1000
    for key, value in model.state_dict().items():  # classifiers included: 1000 classes
        torch.testing.assert_close(value, saved[key], msg=key)
    assert 'Loaded 561/561 tensors' in capsys.readouterr().out
    embedder = timm.create_model('msinet', pretrained=True, num_classes=0)
    torch.testing.assert_close(embedder.state_dict()['fc.weight'], saved['fc.weight'])

    monkeypatch.delenv(ENV_VAR)
    backbone = timm.create_model('msinet_sam', pretrained=True, features_only=True,
                                 pretrained_cfg_overlay=dict(file=str(imagenet_checkpoint)))
    torch.testing.assert_close(backbone.state_dict()['model.cells.7.conv4b.conv.weight'],
                               saved['cells.7.conv4b.conv.weight'])


def test_pretrained_errors_are_the_torchreid_ones(hub_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / 'nowhere.pth.tar'))
    with pytest.raises(PretrainedWeightsError, match='No pretrained weights at .*nowhere'):
        timm.create_model('msinet', pretrained=True)
    with pytest.raises(PretrainedWeightsError, match='no pretrained weights are published'):
        timm.create_model('msinet_s', pretrained=True)


def test_names_timm_has_are_refused_everywhere():
    with pytest.raises(ValueError, match="timm already has a model named 'resnet10t'"):
        msinet_reid.register_genotype('resnet10t', GENOTYPE)
    assert 'resnet10t' not in msinet_reid.list_models()
    assert 'resnet10t' not in msinet_reid._torchreid.model_factory()
    assert timm.models.model_entrypoint('resnet10t').__module__ == 'timm.models.resnet'
    # The integration's module holds the timm entrypoints: its own names stay its own.
    with pytest.raises(ValueError, match="'TimmMSINet' is taken"):
        msinet_reid.register_genotype('TimmMSINet', GENOTYPE)
    assert msinet_reid.integrations.timm.TimmMSINet is TimmMSINet
    assert msinet_reid.integrations.timm.msinet_vr().genotype == msinet_reid.GENOTYPES['msinet_vr']


@pytest.fixture
def reimport(monkeypatch):
    """Run ``msinet_reid/__init__.py`` again, with its timm integration not yet imported."""
    monkeypatch.delitem(sys.modules, 'msinet_reid.integrations.timm')
    monkeypatch.delattr(msinet_reid.integrations, 'timm')
    return lambda: importlib.reload(msinet_reid)


def test_msinet_reid_imports_without_timm(monkeypatch, reimport):
    for name in [name for name in sys.modules if name.startswith('timm.')]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, 'timm', None)  # `import timm` fails as if not installed
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        reimport()
    with pytest.raises(ImportError, match=r'needs timm: pip install "msinet-reid\[timm\]"'):
        importlib.import_module('msinet_reid.integrations.timm')


def test_a_broken_timm_does_not_break_msinet_reid(monkeypatch, reimport):
    monkeypatch.setitem(sys.modules, 'msinet_reid.integrations.timm', None)  # fails to import
    with pytest.warns(UserWarning, match='the MSINet models are not registered with timm'):
        reimport()
