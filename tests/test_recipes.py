"""The paper's presets and the optimiser/schedule built from them."""
import pytest
import torch
import torchreid

from msinet_reid.recipes import RECIPES, build_optimizer, get_recipe


def lr_per_epoch(recipe):
    """The lr of each epoch, stepping the scheduler after each epoch as torchreid does."""
    model = torch.nn.Linear(2, 2)
    optimizer, scheduler = build_optimizer(model, recipe)
    lrs = []
    for _ in range(recipe.max_epoch):
        lrs.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize('name', ['scratch', 'pretrained'])
def test_schedule_at_the_papers_epochs(name):
    lrs = lr_per_epoch(get_recipe(name))
    assert len(lrs) == 350
    expected = {0: 0.00065, 5: 0.065 * (0.01 * 0.5 + 0.5), 9: 0.065 * (0.01 * 0.1 + 0.9),
                10: 0.065, 149: 0.065, 150: 0.0065, 224: 0.0065, 225: 0.00065,
                299: 0.00065, 300: 0.000065, 349: 0.000065}
    for epoch, lr in expected.items():
        assert lrs[epoch] == pytest.approx(lr, rel=1e-9), epoch
    assert lrs[:11] == sorted(lrs[:11])  # linear warm-up


def test_cross_domain_preset():
    recipe = get_recipe('cross_domain')
    assert recipe.pretrained and recipe.max_epoch == 250
    assert recipe.transforms == ('random_flip', 'random_crop', 'color_jitter')
    lrs = lr_per_epoch(recipe)
    assert len(lrs) == 250 and lrs[10] == pytest.approx(0.065)
    assert lrs[249] == pytest.approx(0.00065)  # decayed at 150 and 225


def test_in_domain_presets():
    assert not RECIPES['scratch'].pretrained and RECIPES['pretrained'].pretrained
    for recipe in (RECIPES['scratch'], RECIPES['pretrained']):
        assert 'random_erase' in recipe.transforms and recipe.max_epoch == 350


def test_sgd_settings():
    model = torchreid.models.build_model('msinet', 5, loss='triplet', pretrained=False)
    optimizer, _ = build_optimizer(model, get_recipe('scratch'))
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group['momentum'], group['weight_decay'], group['initial_lr']) == (0.9, 5e-4, 0.065)


def test_overrides_and_errors():
    recipe = get_recipe('scratch', max_epoch=3, lr=0.01, height=64, width=32)
    assert (recipe.max_epoch, recipe.lr, recipe.height) == (3, 0.01, 64)
    assert recipe.datamanager_kwargs()['height'] == 64
    assert RECIPES['scratch'].max_epoch == 350  # presets are not modified
    with pytest.raises(ValueError, match='unknown recipe .scratch2.; choose one of'):
        get_recipe('scratch2')
    with pytest.raises(ValueError, match=r"unknown recipe fields \['epochs'\]"):
        get_recipe('scratch', epochs=3)
