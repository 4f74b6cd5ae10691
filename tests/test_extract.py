"""Features from trained checkpoints: torchreid's FeatureExtractor and `msinet-reid extract`."""
import argparse

import numpy as np
import pytest
import torch
import torchreid
from torchreid.utils import FeatureExtractor

from msinet_reid.cli import main
from msinet_reid.weights import PretrainedWeightsError

HEIGHT, WIDTH = 64, 32


@pytest.fixture(scope='module')
def trained(tiny_market, tmp_path_factory):
    """(model, checkpoint, query folder) after one epoch of torchreid's softmax engine."""
    root = tiny_market(num_train_ids=6)  # 64x32 images
    log = tmp_path_factory.mktemp('extract')
    datamanager = torchreid.data.ImageDataManager(
        root=str(root), sources='market1501', height=HEIGHT, width=WIDTH, batch_size_train=8,
        batch_size_test=32, workers=0, use_gpu=False)
    model = torchreid.models.build_model('msinet', datamanager.num_train_pids, pretrained=False)
    optimizer = torchreid.optim.build_optimizer(model, optim='adam', lr=1e-3)
    scheduler = torchreid.optim.build_lr_scheduler(optimizer, stepsize=10)
    engine = torchreid.engine.ImageSoftmaxEngine(datamanager, model, optimizer,
                                                 scheduler=scheduler, use_gpu=False)
    engine.run(save_dir=str(log), max_epoch=1, print_freq=100)
    query = root / 'market1501' / 'Market-1501-v15.09.15' / 'query'
    return model.eval(), log / 'model' / 'model.pth.tar-1', query


def test_engine_checkpoint_holds_numpy_metrics(trained):
    """What torch.load(weights_only=True) alone refuses since torch 2.6."""
    checkpoint = torch.load(trained[1], weights_only=False)
    assert isinstance(checkpoint['rank1'], np.generic)


def test_feature_extractor_reads_engine_checkpoints(trained):
    model, checkpoint, _ = trained
    extractor = FeatureExtractor(model_name='msinet', model_path=str(checkpoint),
                                 image_size=(HEIGHT, WIDTH), device='cpu', verbose=False)
    images = torch.randn(3, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        torch.testing.assert_close(extractor(images), model(images))


def test_feature_extractor_reads_bare_state_dicts(trained, tmp_path):
    model = trained[0]
    torch.save(model.state_dict(), tmp_path / 'weights.pth')
    extractor = FeatureExtractor(model_name='msinet', model_path=str(tmp_path / 'weights.pth'),
                                 image_size=(HEIGHT, WIDTH), device='cpu', verbose=False)
    images = torch.randn(2, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        torch.testing.assert_close(extractor(images), model(images))


def test_foreign_checkpoint_names_the_fix(trained, tmp_path):
    path = tmp_path / 'foreign.pth'
    torch.save({'state_dict': trained[0].state_dict(), 'args': argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(PretrainedWeightsError, match=r'weights_only=False.*torch\.save'):
        FeatureExtractor(model_name='msinet', model_path=str(path), device='cpu', verbose=False)


def test_extract_cli_matches_feature_extractor(trained, tmp_path, capsys):
    _, checkpoint, query = trained
    out = tmp_path / 'feats.npy'
    assert main(['extract', '--model', 'msinet', '--weights', str(checkpoint),
                 '--images', str(query), '--out', str(out), '--height', str(HEIGHT),
                 '--width', str(WIDTH), '--batch-size', '8', '--workers', '0']) == 0
    captured = capsys.readouterr()
    assert 'Extracting features' in captured.err  # the progress bar
    paths = out.with_suffix('.txt').read_text().splitlines()
    assert paths == sorted(str(p) for p in query.glob('*.jpg'))
    features = np.load(out)
    extractor = FeatureExtractor(model_name='msinet', model_path=str(checkpoint),
                                 image_size=(HEIGHT, WIDTH), device='cpu', verbose=False)
    expected = extractor(paths).numpy()
    assert features.shape == expected.shape == (len(paths), 768)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_extract_cli_without_images(trained, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(['extract', '--weights', str(trained[1]), '--images', str(tmp_path),
              '--out', str(tmp_path / 'f.npy')])
    assert f'no images under {tmp_path}' in capsys.readouterr().err
