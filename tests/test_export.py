"""ONNX export: parity with PyTorch in onnxruntime, dynamic batch, the CLI, missing extras."""
import sys

import onnxruntime
import pytest
import torch
import torchreid

from msinet_reid.cli import main
from msinet_reid.deploy import load_trained
from msinet_reid.deploy.onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx

from helpers import engine_checkpoint

HEIGHT, WIDTH = 64, 32


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A checkpoint as torchreid's engines write it, numpy rank1 included."""
    return engine_checkpoint(tmp_path_factory.mktemp('checkpoint'))


def onnx_features(path, images: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0])


def assert_same_features(ours, expected, tolerance=1e-4):
    torch.testing.assert_close(ours, expected, rtol=tolerance,
                               atol=tolerance * expected.abs().max().item())


@pytest.mark.numerics
def test_export_matches_pytorch_at_any_batch_size(checkpoint, tmp_path):
    model = load_trained('msinet', checkpoint)
    path = export_onnx(model, tmp_path / 'msinet.onnx', HEIGHT, WIDTH)
    assert [p.name for p in tmp_path.iterdir()] == ['msinet.onnx']  # no temporary left
    for batch in (1, 5):
        images = torch.randn(batch, 3, HEIGHT, WIDTH)
        with torch.no_grad():
            assert_same_features(onnx_features(path, images), model(images))


def test_export_cli_round_trip(checkpoint, tmp_path, capsys):
    out = tmp_path / 'nested' / 'model.onnx'
    assert main(['export', '--model', 'msinet', '--weights', str(checkpoint), '--out', str(out),
                 '--height', str(HEIGHT), '--width', str(WIDTH)]) == 0
    assert f'Wrote {out}' in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    assert session.get_inputs()[0].shape == ['batch', 3, HEIGHT, WIDTH]
    images = torch.randn(3, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        expected = load_trained('msinet', checkpoint)(images)
    assert_same_features(onnx_features(out, images), expected)


def test_missing_onnxruntime_says_how_to_install(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # makes `import onnxruntime` fail
    with pytest.raises(SystemExit) as exit_info:
        main(['export', '--weights', str(checkpoint), '--out', str(tmp_path / 'm.onnx')])
    assert exit_info.value.code == 2
    assert 'pip install "msinet-reid[onnx]"' in capsys.readouterr().err
    assert not (tmp_path / 'm.onnx').exists()


def test_export_cli_rejects_other_weights(tmp_path, capsys):
    osnet = torchreid.models.build_model('osnet_x1_0', 7, pretrained=False)
    torch.save(osnet.state_dict(), tmp_path / 'osnet.pth')
    with pytest.raises(SystemExit):
        main(['export', '--weights', str(tmp_path / 'osnet.pth'),
              '--out', str(tmp_path / 'm.onnx')])
    assert 'does not hold msinet weights' in capsys.readouterr().err
