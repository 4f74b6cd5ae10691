"""Pretrained weights: lookup order, download into the cache, and every failure mode.

No test touches the network: gdown's download is replaced by one that copies files the
tests write.
"""
import random
from pathlib import Path

import gdown
import pytest
import torch

import msinet_reid
from msinet_reid import PretrainedWeightsError
from msinet_reid.models import MSINET_IMAGENET, MSINet
from msinet_reid.weights import ENV_VAR, cache_path, load_state_dict_file


def build(name='msinet', **kwargs):
    return getattr(msinet_reid.models, name)(num_classes=751, **kwargs)


def assert_backbone_loaded(model, checkpoint_path):
    saved = torch.load(checkpoint_path, weights_only=False)['state_dict']
    for key, value in model.state_dict().items():
        if 'classifier' in key or key.startswith('align_module'):
            continue
        torch.testing.assert_close(value, saved[key], msg=key)


def test_explicit_path_loads_and_reports_skipped_classifiers(imagenet_checkpoint, hub_dir,
                                                             capsys):
    model = build(pretrained=True, pretrained_path=imagenet_checkpoint)
    assert_backbone_loaded(model, imagenet_checkpoint)
    report = capsys.readouterr().out
    assert 'Loaded 557/561 tensors' in report
    assert ('skipped classifier.weight: checkpoint shape (1000, 512), model shape (751, 512)'
            in report)
    assert 'skipped f_classifier.bias' in report
    assert not (hub_dir / 'checkpoints').exists()  # nothing downloaded


def test_environment_variable_file_or_folder(imagenet_checkpoint, hub_dir, monkeypatch):
    for value in (imagenet_checkpoint, imagenet_checkpoint.parent):
        monkeypatch.setenv(ENV_VAR, str(value))
        assert_backbone_loaded(build(pretrained=True), imagenet_checkpoint)


def test_environment_variable_pointing_nowhere(hub_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / 'nowhere.pth.tar'))
    with pytest.raises(PretrainedWeightsError, match='No pretrained weights at .*nowhere'):
        build(pretrained=True)


def test_download_once_into_torch_hub_cache(imagenet_checkpoint, hub_dir, monkeypatch):
    calls = []

    def fake_download(id, output, quiet):
        calls.append(id)
        Path(output).write_bytes(imagenet_checkpoint.read_bytes())
        return output

    monkeypatch.setattr(gdown, 'download', fake_download)
    assert_backbone_loaded(build(pretrained=True), imagenet_checkpoint)
    assert calls == ['1ZNLDbtpsraiF149htbyhbh3UjCwREi9p']
    assert cache_path(MSINET_IMAGENET) == hub_dir / 'checkpoints' / 'msinet_msmt.pth.tar'
    assert cache_path(MSINET_IMAGENET).is_file()
    assert_backbone_loaded(build('msinet_sam', pretrained=True), imagenet_checkpoint)
    assert calls == ['1ZNLDbtpsraiF149htbyhbh3UjCwREi9p']  # served from the cache


def _expect_fix_instructions(error: Exception):
    message = str(error)
    assert 'pretrained=False' in message
    assert str(cache_path(MSINET_IMAGENET)) in message
    assert ENV_VAR in message


@pytest.mark.parametrize('failure', ['offline', 'nothing', 'html page'])
def test_failed_download_says_how_to_fix_and_caches_nothing(failure, hub_dir, monkeypatch):
    def fake_download(id, output, quiet):
        if failure == 'offline':
            raise ConnectionError('Failed to resolve drive.google.com')
        if failure == 'html page':
            Path(output).write_text('<html>Google Drive - quota exceeded</html>')
            return output
        return None

    monkeypatch.setattr(gdown, 'download', fake_download)
    with pytest.raises(PretrainedWeightsError) as caught:
        build(pretrained=True)
    if failure != 'html page':
        _expect_fix_instructions(caught.value)
    else:
        assert 'corrupt' in str(caught.value)
    checkpoints = hub_dir / 'checkpoints'
    assert not checkpoints.exists() or not any(checkpoints.iterdir())


def test_missing_explicit_file(tmp_path, hub_dir):
    with pytest.raises(PretrainedWeightsError) as caught:
        build(pretrained=True, pretrained_path=tmp_path / 'missing.pth.tar')
    assert 'No pretrained weights at' in str(caught.value)
    _expect_fix_instructions(caught.value)


def test_corrupt_file(tmp_path, hub_dir, imagenet_checkpoint):
    corrupt = tmp_path / 'corrupt.pth.tar'
    corrupt.write_bytes(imagenet_checkpoint.read_bytes()[:5000])
    with pytest.raises(PretrainedWeightsError, match='corrupt.*pretrained=False'):
        build(pretrained=True, pretrained_path=corrupt)


@pytest.mark.parametrize('seed', range(16))
def test_corrupt_file_in_cache(hub_dir, seed):
    # Random bytes make the unpickler fail in many ways (IndexError, KeyError, ...).
    cached = cache_path(MSINET_IMAGENET)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(random.Random(seed).randbytes(1000))
    with pytest.raises(PretrainedWeightsError, match='corrupt.*Delete it'):
        build(pretrained=True)


def test_not_a_checkpoint(tmp_path, hub_dir):
    path = tmp_path / 'list.pth'
    torch.save([1, 2, 3], path)
    with pytest.raises(PretrainedWeightsError, match='not a model checkpoint'):
        build(pretrained=True, pretrained_path=path)


class Opaque:
    """A class torch.load(weights_only=True) refuses."""


def test_unsafe_checkpoint_explains_weights_only(tmp_path, hub_dir):
    path = tmp_path / 'pickled.pth'
    torch.save({'state_dict': MSINet(3).state_dict(), 'args': Opaque()}, path)
    with pytest.raises(PretrainedWeightsError, match='weights_only=False'):
        build(pretrained=True, pretrained_path=path)


def test_dataparallel_prefix_is_stripped(tmp_path):
    model = MSINet(5)
    path = tmp_path / 'dp.pth'
    torch.save({'state_dict': {f'module.{k}': v for k, v in model.state_dict().items()}}, path)
    assert set(load_state_dict_file(path)) == set(model.state_dict())


def test_sam_reports_alignment_parameters_missing(imagenet_checkpoint, hub_dir, capsys):
    model = build('msinet_sam', pretrained=True, pretrained_path=imagenet_checkpoint)
    assert_backbone_loaded(model, imagenet_checkpoint)
    assert 'not in the checkpoint, left as initialised: align_module.pos_pam' in \
        capsys.readouterr().out


@pytest.mark.parametrize('name', ['msinet_vr', 'msinet_s'])
def test_genotypes_without_published_weights(name, imagenet_checkpoint, hub_dir, capsys):
    with pytest.raises(PretrainedWeightsError, match='no pretrained weights are published'):
        build(name, pretrained=True)
    build(name, pretrained=True, pretrained_path=imagenet_checkpoint)
    assert 'in the checkpoint but not in the model' in capsys.readouterr().out
