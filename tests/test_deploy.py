"""The inference model: same features as the eval model, without BatchNorm or training parts."""
import numpy as np
import pytest
import torch
import torchreid
from torch import nn

from msinet_reid.deploy import InferenceModel, fold_batchnorm, load_trained
from msinet_reid.models.msinet import TRAINING_HEADS as TRAINING_ONLY
from msinet_reid.weights import PretrainedWeightsError

from helpers import deterministic_images, deterministic_state_dict


def trained_like(name: str) -> nn.Module:
    """A model with non-trivial BatchNorm statistics and Cross Attention weights."""
    model = torchreid.models.build_model(name, 7, pretrained=False)
    model.load_state_dict(deterministic_state_dict(model))
    return model


def assert_same_features(ours, expected, tolerance=1e-4):
    torch.testing.assert_close(ours, expected, rtol=tolerance,
                               atol=tolerance * expected.abs().max().item())


@pytest.mark.numerics
@pytest.mark.parametrize('name', ['msinet', 'msinet_sam', 'msinet_s'])
@pytest.mark.parametrize('channels_last', [True, False])
def test_features_equal_eval_model(name, channels_last):
    model = trained_like(name)
    images = deterministic_images(4, 64, 32).float()
    inference = InferenceModel(model, channels_last=channels_last)
    with torch.no_grad():
        assert_same_features(inference(images), model.eval()(images))


def test_batchnorm_and_training_parts_are_gone():
    model = trained_like('msinet_sam').train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    inference = InferenceModel(model)
    modules = list(inference.modules())
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in modules)
    assert not any(key.split('.')[1] in TRAINING_ONLY for key in inference.state_dict())
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for p in inference.parameters() if p.dim() == 4)
    # The original model is untouched and still trains.
    assert model.training and model.align_module is not None
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_inference_model_cannot_be_trained():
    inference = InferenceModel(trained_like('msinet'))
    with pytest.raises(RuntimeError, match='train the original model and convert it again'):
        inference.train()
    assert not inference.eval().training


def test_only_msinet_converts():
    with pytest.raises(TypeError, match='converts MSINet models, got OSNet'):
        InferenceModel(torchreid.models.build_model('osnet_x1_0', 7, pretrained=False))


def test_fold_batchnorm_generic_sequential():
    block = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4))
    block.load_state_dict(deterministic_state_dict(block))
    block.eval()
    images = torch.randn(2, 3, 9, 9)
    expected = block(images)
    assert fold_batchnorm(block) == 2
    # the BatchNorm after the ReLU has no convolution to fold into and stays
    assert [type(m).__name__ for m in block] == [
        'Conv2d', 'Identity', 'ReLU', 'BatchNorm2d', 'Conv2d', 'Identity']
    assert_same_features(block(images), expected, 1e-5)


def test_load_trained_reads_torchreid_checkpoints(tmp_path):
    model = trained_like('msinet')
    torchreid.utils.save_checkpoint(
        {'state_dict': model.state_dict(), 'epoch': 3, 'rank1': np.float64(0.5)}, str(tmp_path))
    loaded = load_trained('msinet', tmp_path / 'model.pth.tar-3')
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model.eval()(images))
    assert loaded.classifier.out_features == 7


def test_load_trained_names_a_wrong_model(tmp_path):
    torch.save(trained_like('msinet').state_dict(), tmp_path / 'msinet.pth')
    # Both architectures named: the one asked for, and the one the checkpoint holds.
    # (Other tests may have registered more names for these genotypes.)
    with pytest.raises(PretrainedWeightsError,
                       match=r'does not hold msinet_s weights \(\d+ tensors missing, '
                             r'e\.g\. cells\.0\._op3\.gamma.*\); it holds (.* / )?msinet / '
                             r'(.* / )?msinet_sam / .*weights: pass --model'):
        load_trained('msinet_s', tmp_path / 'msinet.pth')
    vehicle = tmp_path / 'msinet_vr.pth'
    torch.save(trained_like('msinet_vr').state_dict(), vehicle)
    with pytest.raises(PretrainedWeightsError, match=r'it holds (.* / )?msinet_vr( / .*)? '
                                                     r'weights: pass --model'):
        load_trained('msinet', vehicle)
    osnet = tmp_path / 'osnet.pth'
    torch.save(torchreid.models.build_model('osnet_x1_0', 7, pretrained=False).state_dict(),
               osnet)
    with pytest.raises(PretrainedWeightsError, match='it matches no registered MSINet model'):
        load_trained('msinet', osnet)
    with pytest.raises(ValueError, match="'osnet_x1_0' is not an MSINet model"):
        load_trained('osnet_x1_0', tmp_path / 'msinet.pth')
