"""``msinet-reid train`` on data of one's own, end to end: a config, a trained model, its
model card, and the commands that read the card."""
import json
import re

import pytest
import torch
import yaml

from msinet_reid.cli import main
from msinet_reid.model_card import CARD_FILE, CARD_PAGE, sha256

from test_own_data import write_crops

TINY = ['--epochs', '2', '--batch-size', '6', '--num-instances', '2', '--height', '64',
        '--width', '32', '--device', 'cpu', '--workers', '0']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Own crops, and the save folder of a model trained on them (2 epochs)."""
    root = tmp_path_factory.mktemp('train')
    crops = write_crops(root / 'crops')
    save_dir = root / 'log'
    assert main(['train', '--data', str(crops), *TINY, '--save-dir', str(save_dir),
                 'recipe.eval_freq', '1']) == 0
    return crops, save_dir


@pytest.mark.slow
def test_the_model_card_describes_the_weights_data_and_metrics(trained, capsys):
    crops, save_dir = trained
    card = json.loads((save_dir / CARD_FILE).read_text())
    weights = save_dir / 'model' / 'model.pth.tar-2'
    assert card['weights'] == {'file': 'model/model.pth.tar-2', 'sha256': sha256(weights)}
    assert card['model']['name'] == 'msinet' and card['model']['input_size'] == [64, 32]
    assert len(card['model']['genotype']) == 12 and card['model']['feature_dim'] == 768
    assert card['config']['recipe']['max_epoch'] == 2 and card['config']['data']['path'] == \
        str(crops)
    assert card['data']['name'] == str(crops) and card['data']['layout'] == 'folder'
    assert card['data']['splits']['train'] == {'images': 18, 'identities': 3, 'cameras': 2}
    assert set(card['metrics']['own']) == {'rank1', 'mAP', 'mINP'}
    assert card['training']['epochs'] == 2 and card['training']['wall_time_s'] > 0
    assert {'python', 'torch', 'torchreid', 'msinet_reid', 'device'} <= set(card['environment'])
    assert f'sha256 `{sha256(weights)}`' in (save_dir / CARD_PAGE).read_text()


@pytest.mark.slow
def test_evaluate_reads_the_card_and_reproduces_its_metrics(trained, capsys):
    crops, save_dir = trained
    card = json.loads((save_dir / CARD_FILE).read_text())
    capsys.readouterr()
    # No --model, --height or --width: the card's.
    assert main(['evaluate', '--weights', str(save_dir / 'model' / 'model.pth.tar-2'),
                 '--data', str(crops), '--workers', '0']) == 0
    line = capsys.readouterr().out
    rank1, mAP, mINP = (float(v) / 100 for v in re.search(
        r'Rank-1 ([\d.]+)%, mAP ([\d.]+)%, mINP ([\d.]+)%', line).groups())
    expected = card['metrics']['own']
    assert rank1 == pytest.approx(expected['rank1'], abs=1e-3)
    assert mAP == pytest.approx(expected['mAP'], abs=1e-3)
    assert mINP == pytest.approx(expected['mINP'], abs=1e-3)


@pytest.mark.slow
def test_export_takes_the_cards_model_and_size_and_warns_of_other_weights(
        trained, tmp_path, capsys):
    _, save_dir = trained
    weights = save_dir / 'model' / 'model.pth.tar-2'
    assert main(['export', '--weights', str(weights), '--format', 'torchscript',
                 '--out', str(tmp_path / 'm.pt')]) == 0
    assert '(batch, 3, 64, 32)' in capsys.readouterr().out
    other = save_dir / 'model' / 'other.pth.tar'
    state = torch.load(weights, weights_only=True)
    state['epoch'] = 99
    torch.save(state, other)
    try:
        with pytest.warns(UserWarning, match='sha256 differs'):
            assert main(['export', '--weights', str(other), '--format', 'torchscript',
                         '--out', str(tmp_path / 'o.pt')]) == 0
    finally:
        other.unlink()


def test_print_config_is_complete_yaml_and_wrong_keys_stop(capsys, tmp_path):
    config_file = tmp_path / 'c.yaml'
    config_file.write_text('recipe:\n  lr: 0.01\n')
    assert main(['train', '--config-file', str(config_file), '--recipe', 'pretrained',
                 '--print-config', 'run.seed', '3']) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed['recipe']['lr'] == 0.01 and printed['recipe']['pretrained']
    assert printed['run']['seed'] == 3 and printed['run']['checkpoint_minutes'] == 10
    with pytest.raises(SystemExit) as stop:
        main(['train', 'recipe.max_epochs', '3'])
    assert stop.value.code == 2
    assert "did you mean recipe.max_epoch" in capsys.readouterr().err
