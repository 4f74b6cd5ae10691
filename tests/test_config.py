"""The train command's config: YAML files, KEY VALUE overrides, flags, and the errors
that stop a wrong key or type before any work."""
import pytest

from msinet_reid.config import ConfigError, default_config, load_config
from msinet_reid.recipes import RECIPES


def test_defaults_follow_the_experiment_or_recipe():
    assert default_config().recipe == RECIPES['scratch']
    config = default_config('veri_to_vehicleid_sam')
    assert (config.model.name, config.data.source, config.data.target) == (
        'msinet_sam', 'veri', 'vehicleid')
    assert (config.recipe.name, config.recipe.height, config.recipe.width) == (
        'cross_domain', 256, 256)
    assert default_config(recipe='pretrained').recipe.pretrained


def test_file_then_flags_then_overrides_each_win(tmp_path):
    path = tmp_path / 'config.yaml'
    path.write_text('recipe:\n  name: pretrained\n  lr: 0.01\n  max_epoch: 20\n'
                    'run:\n  seed: 3\n  device: cpu\n')
    config = load_config(path, overrides=['recipe.max_epoch', '7', 'recipe.transforms',
                                          '[random_flip]'],
                         settings={'recipe.lr': 0.02, 'run.seed': 5})
    assert config.recipe.name == 'pretrained' and config.recipe.pretrained  # the recipe's
    assert (config.recipe.lr, config.recipe.max_epoch, config.run.seed) == (0.02, 7, 5)
    assert config.recipe.transforms == ('random_flip',)
    # The printed config reads back as the same config.
    printed = tmp_path / 'printed.yaml'
    printed.write_text(config.to_yaml())
    assert load_config(printed) == config


@pytest.mark.parametrize('overrides, message', [
    (['recipe.max_epochs', '3'], "unknown config key 'recipe.max_epochs'; did you mean "
                                 'recipe.max_epoch'),
    (['recipe.lr', 'fast'], "recipe.lr takes float, got 'fast'"),
    (['run.amp', '3'], 'run.amp takes bool, got 3'),
    (['recipe.batch_size', '64.5'], 'recipe.batch_size takes int, got 64.5'),
    (['recipe.lr'], "'recipe.lr' has no value"),
    (['experiment', 'market_scratch'], "unknown experiment 'market_scratch'; did you mean "
                                       'market1501_scratch'),
])
def test_wrong_keys_and_types_are_named_with_the_nearest_valid_ones(overrides, message):
    with pytest.raises(ConfigError, match=message.replace('.', r'\.').replace('[', r'\[')):
        load_config(overrides=overrides)


def test_a_file_that_is_not_a_config_is_refused(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text('- a list\n')
    with pytest.raises(ConfigError, match='must hold a mapping of sections'):
        load_config(path)
    path.write_text('recipe: {lr: [\n')
    with pytest.raises(ConfigError, match='is not valid YAML'):
        load_config(path)
