"""Model cards: written beside the weights, found from a checkpoint, checked by sha256."""
import hashlib
import json

import pytest

from msinet_reid.model_card import (
    CARD_FILE, CARD_PAGE, card_settings, find_card, sha256, write_model_card,
)


def card_for(weights_file: str, digest: str) -> dict:
    return {
        'model': {'name': 'msinet_sam', 'genotype': ['ag'] * 12, 'input_size': [64, 32],
                  'feature_dim': 768},
        'config': {'recipe': {'lr': 0.01}},
        'data': {'name': 'crops', 'splits': {'train': {'identities': 4, 'images': 24,
                                                       'cameras': 2}}},
        'metrics': {'crops': {'rank1': 0.5, 'mAP': 0.25, 'mINP': 0.125}},
        'environment': {'python': '3.11', 'torch': '2', 'torchreid': '0.2.5',
                        'msinet_reid': '0.1.0', 'device': 'cpu: x86_64'},
        'training': {'epochs': 2, 'wall_time_s': 36.0},
        'weights': {'file': weights_file, 'sha256': digest},
    }


def test_card_beside_the_weights_gives_model_and_input_size(tmp_path, recwarn):
    weights = tmp_path / 'model' / 'model.pth.tar-2'
    weights.parent.mkdir()
    weights.write_bytes(b'weights')
    assert sha256(weights) == hashlib.sha256(b'weights').hexdigest()
    write_model_card(tmp_path, card_for('model/model.pth.tar-2', sha256(weights)))
    assert json.loads((tmp_path / CARD_FILE).read_text())['format'] == 1
    page = (tmp_path / CARD_PAGE).read_text()
    assert '| crops | 50.0% | 25.0% | 12.5% |' in page and sha256(weights) in page
    assert find_card(weights)[0] == tmp_path / CARD_FILE
    assert card_settings(weights) == {'model': 'msinet_sam', 'height': 64, 'width': 32}
    assert not recwarn.list


def test_other_weights_than_the_cards_are_warned_about(tmp_path):
    weights = tmp_path / 'model.pth.tar-2'
    weights.write_bytes(b'other weights')
    write_model_card(tmp_path, card_for('model.pth.tar-2', hashlib.sha256(b'x').hexdigest()))
    with pytest.warns(UserWarning, match='is not the weights file .* sha256 differs'):
        assert card_settings(weights)['model'] == 'msinet_sam'


def test_no_card_no_settings(tmp_path):
    weights = tmp_path / 'a' / 'b' / 'c' / 'model.pth'
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b'w')
    assert card_settings(weights) is None
