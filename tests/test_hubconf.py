"""torch.hub: the repository's hubconf.py builds every MSINet model from a checkout."""
from pathlib import Path

import pytest
import torch

import msinet_reid
from msinet_reid import MSINet
from msinet_reid.weights import ENV_VAR

REPO = Path(__file__).resolve().parents[1]


def hub_load(name: str, **kwargs):
    return torch.hub.load(str(REPO), name, source='local', **kwargs)


@pytest.mark.parametrize('name', msinet_reid.list_models())
def test_every_model_loads_from_a_checkout(name):
    model = hub_load(name, pretrained=False).eval()
    assert isinstance(model, MSINet) and model.classifier.out_features == 1000
    assert model(torch.randn(1, 3, 64, 32)).shape == (1, 768)


def test_factory_arguments_and_registered_genotypes(unique_name):
    name = unique_name()
    msinet_reid.register_genotype(name, 'exc ' * 12)
    model = hub_load(name, pretrained=False, num_classes=751, loss='triplet')
    assert model.genotype == ('exc',) * 12 and model.loss == 'triplet'
    assert model.classifier.out_features == 751


def test_pretrained_loads_the_authors_checkpoint(imagenet_checkpoint, hub_dir, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(imagenet_checkpoint))
    saved = torch.load(imagenet_checkpoint, weights_only=False)['state_dict']
    model = hub_load('msinet', pretrained=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, saved[key], msg=key)
