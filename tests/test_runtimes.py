"""Exports to every runtime (OpenVINO fp32/bf16/int8, TorchScript, fp16 ONNX), checked on
their runtime, and `extract`/`evaluate` running each file by its suffix."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from msinet_reid.cli import main
from msinet_reid.deploy import MIN_COSINE, QuantizationError, find_images, image_batches
from msinet_reid.deploy import load_trained
from msinet_reid.deploy.checks import ExportCheckError, feature_cosine
from msinet_reid.deploy.runtimes import export_model, load_exported


pytest.importorskip('openvino', reason='the OpenVINO exports need msinet-reid[openvino]')
pytest.importorskip('nncf', reason='OpenVINO int8 needs msinet-reid[openvino] (nncf)')

from msinet_reid.deploy import openvino_export  # noqa: E402
from msinet_reid.deploy.openvino_export import OpenVinoModel, cpu_has_bf16  # noqa: E402

HEIGHT, WIDTH = 64, 32
SIZE = ['--height', str(HEIGHT), '--width', str(WIDTH)]


@pytest.fixture(scope='module')
def model(msinet_weights):
    return load_trained('msinet', msinet_weights)


@pytest.fixture(scope='module')
def exported(model, tmp_path_factory):
    """Each format's file, exported (and so checked) once."""
    folder = tmp_path_factory.mktemp('exported')
    return {
        'openvino': export_model(model, folder / 'msinet.xml', 'openvino', HEIGHT, WIDTH),
        'torchscript': export_model(model, folder / 'msinet.pt', 'torchscript', HEIGHT, WIDTH),
        'fp16': export_model(model, folder / 'msinet.fp16.onnx', 'onnx', HEIGHT, WIDTH,
                             fp16=True),
    }


@pytest.mark.slow
@pytest.mark.numerics
@pytest.mark.parametrize('name', ['openvino', 'torchscript'])
def test_fp32_exports_match_pytorch_at_any_batch_size(name, exported, model):
    runtime, image_size = load_exported(exported[name])
    assert image_size == (HEIGHT, WIDTH)
    for batch in (1, 5):
        images = torch.randn(batch, 3, HEIGHT, WIDTH)
        with torch.no_grad():
            expected = model(images)
        assert (runtime(images) - expected).abs().max() <= 1e-4


@pytest.mark.slow
def test_exports_leave_no_temporary_and_an_ir_pair(exported):
    assert sorted(p.name for p in exported['openvino'].parent.iterdir()) == [
        'msinet.bin', 'msinet.fp16.onnx', 'msinet.pt', 'msinet.xml']
    network = OpenVinoModel(exported['openvino']).compiled
    assert network.input(0).get_names() == {'images'}
    assert network.output(0).get_names() == {'features'}
    assert network.input(0).get_partial_shape()[0].is_dynamic


@pytest.mark.slow
@pytest.mark.numerics
def test_fp16_onnx_keeps_the_features_direction(exported, model):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(exported['fp16']),
                                           providers=['CPUExecutionProvider'])
    image = session.get_inputs()[0]
    assert image.type == 'tensor(float16)' and image.shape == ['batch', 3, HEIGHT, WIDTH]
    runtime, _ = load_exported(exported['fp16'])
    images = torch.randn(4, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        assert feature_cosine(runtime, model, [images]).min() >= 0.999


@pytest.mark.slow
def test_torchscript_loads_without_msinet_reid_or_torchreid(exported, model, tmp_path):
    images = torch.randn(2, 3, HEIGHT, WIDTH)
    torch.save(images, tmp_path / 'images.pt')
    script = (  # None in sys.modules makes an import fail, as if not installed
        "import sys; sys.modules.update(msinet_reid=None, torchreid=None)\n"
        "import torch\n"
        f"model = torch.jit.load({str(exported['torchscript'])!r})\n"
        f"torch.save(model(torch.load({str(tmp_path / 'images.pt')!r})), "
        f"{str(tmp_path / 'features.pt')!r})\n")
    subprocess.run([sys.executable, '-c', script], check=True, cwd=tmp_path)
    with torch.no_grad():
        expected = model(images)
    assert (torch.load(tmp_path / 'features.pt') - expected).abs().max() <= 1e-4


@pytest.mark.slow
def test_a_wrong_conversion_is_refused(model, msinet_weights, tmp_path, monkeypatch, capsys):
    convert = openvino_export.convert

    class Shifted(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, images):
            return self.inner(images) + 1e-3

    def off_by_a_little(module, height, width):  # a converter that drifts by 1e-3
        return convert(Shifted(module), height, width)

    monkeypatch.setattr(openvino_export, 'convert', off_by_a_little)
    with pytest.raises(ExportCheckError, match='away from PyTorch .* nothing was written'):
        export_model(model, tmp_path / 'msinet.xml', 'openvino', HEIGHT, WIDTH)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit):  # the command says so, without a traceback
        main(['export', '--format', 'openvino', '--weights', str(msinet_weights), *SIZE,
              '--out', str(tmp_path / 'msinet.xml')])
    assert 'away from PyTorch (tolerance 1e-04); nothing was written' in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.numerics
def test_export_openvino_int8_end_to_end(msinet_weights, market64, tmp_path, capsys):
    out = tmp_path / 'msinet.xml'
    assert main(['export', '--format', 'openvino', '--weights', str(msinet_weights), '--out',
                 str(out), *SIZE, '--int8', '--calib', str(market64[1] / 'bounding_box_train'),
                 '--num-calibration', '16']) == 0
    int8 = tmp_path / 'msinet.int8.xml'
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'msinet.bin', 'msinet.int8.bin', 'msinet.int8.xml', 'msinet.xml']
    printed = capsys.readouterr().out
    assert f'Wrote {int8}: int8, nncf calibration on 16 images' in printed
    assert 'checked against PyTorch with OpenVINO' in printed
    import openvino

    graph = openvino.Core().read_model(str(int8))
    assert 'FakeQuantize' in {op.get_type_name() for op in graph.get_ops()}  # activations
    assert (tmp_path / 'msinet.int8.bin').stat().st_size < (tmp_path / 'msinet.bin').stat(
    ).st_size / 3  # int8 weights
    images = image_batches(find_images(market64[1] / 'query'), (HEIGHT, WIDTH), 16, workers=0)
    assert feature_cosine(OpenVinoModel(int8), OpenVinoModel(out), images).mean() >= MIN_COSINE


@pytest.mark.slow
def test_openvino_int8_guard_refuses_a_broken_calibration(exported, market64, tmp_path):
    blank = tmp_path / 'blank'  # flat grey crops: the ranges miss real ones
    blank.mkdir()
    for index in range(4):
        Image.new('RGB', (WIDTH, HEIGHT), (128, 128, 128)).save(blank / f'{index}.png')
    out = tmp_path / 'msinet.int8.xml'
    out.write_text('a previous int8 model')
    with pytest.raises(QuantizationError, match='cosine similarity mean .* below the threshold'):
        openvino_export.quantize_openvino(exported['openvino'], out, blank,
                                          check=market64[1] / 'query')
    assert out.read_text() == 'a previous int8 model'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['blank', 'msinet.int8.xml']


@pytest.mark.slow
@pytest.mark.numerics
@pytest.mark.skipif(not cpu_has_bf16(), reason='this CPU has no bf16 instructions '
                                               '(AVX-512 BF16 or AMX) for OpenVINO to run')
def test_openvino_bf16_keeps_the_features_direction(exported, model):
    images = torch.randn(4, 3, HEIGHT, WIDTH)
    bf16 = OpenVinoModel(exported['openvino'], precision='bf16')
    with torch.no_grad():
        assert feature_cosine(bf16, model, [images]).min() >= 0.999


@pytest.mark.slow
@pytest.mark.skipif(cpu_has_bf16(), reason='this CPU runs bf16')
def test_bf16_is_refused_where_the_cpu_lacks_it(exported, market64, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(['extract', '--weights', str(exported['openvino']), '--images',
              str(market64[1] / 'query'), '--out', str(tmp_path / 'f.npy'), *SIZE,
              '--precision', 'bf16', '--workers', '0'])
    assert 'this CPU has no bf16 instructions' in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.numerics
def test_extract_runs_each_file_on_its_runtime(msinet_weights, exported, market64, tmp_path):
    def extract(weights):
        out = tmp_path / f'{weights.name}.npy'
        assert main(['extract', '--weights', str(weights), '--images',
                     str(market64[1] / 'query'), '--out', str(out), *SIZE, '--workers', '0']) == 0
        return np.load(out)

    expected = extract(msinet_weights)
    for name in ('openvino', 'torchscript'):
        np.testing.assert_allclose(extract(exported[name]), expected, rtol=0, atol=1e-4)
    fp16 = torch.from_numpy(extract(exported['fp16']))
    assert torch.nn.functional.cosine_similarity(fp16, torch.from_numpy(expected)).min() >= 0.999


@pytest.mark.slow
def test_evaluate_openvino_and_checkpoint_alike(msinet_weights, exported, market64, capsys):
    common = ['--root', str(market64[0]), *SIZE, '--workers', '0']
    scores = []
    for weights in (msinet_weights, exported['openvino'], exported['torchscript']):
        assert main(['evaluate', '--weights', str(weights), *common]) == 0
        scores.append(capsys.readouterr().out.splitlines()[-1].split(': ', 1)[1])
    assert scores[0].startswith('Rank-1 ') and scores[0] == scores[1] == scores[2]


@pytest.mark.slow
@pytest.mark.parametrize('name', ['openvino', 'torchscript'])
def test_own_size_by_default_and_another_image_size_is_named(
        name, exported, market64, tmp_path, capsys):
    extract = ['extract', '--weights', str(exported[name]), '--images',
               str(market64[1] / 'query'), '--out', str(tmp_path / 'f.npy'), '--workers', '0']
    assert main(extract) == 0  # without --height/--width: the file's own size
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*extract, '--height', '256', '--width', '128'])
    assert (f'takes {HEIGHT}x{WIDTH} images, not 256x128: pass --height {HEIGHT} '
            f'--width {WIDTH}') in capsys.readouterr().err


@pytest.mark.parametrize('argv, message', [
    (['--format', 'openvino', '--out', 'm.onnx'], 'openvino models are .xml files'),
    (['--format', 'torchscript', '--out', 'm.pt', '--int8', '--calib', '.'],
     '--int8 applies to --format onnx and openvino'),
    (['--format', 'openvino', '--out', 'm.xml', '--fp16'], '--fp16 applies to --format onnx'),
])
def test_export_cli_refuses_mismatched_options(msinet_weights, tmp_path, capsys, argv, message):
    argv = [str(tmp_path / a) if a.startswith('m.') else a for a in argv]
    with pytest.raises(SystemExit):
        main(['export', '--weights', str(msinet_weights), *SIZE, *argv])
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_missing_openvino_names_the_extra(msinet_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'openvino', None)  # makes `import openvino` fail
    with pytest.raises(SystemExit):
        main(['export', '--format', 'openvino', '--weights', str(msinet_weights),
              '--out', str(tmp_path / 'm.xml')])
    assert 'pip install "msinet-reid[openvino]"' in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_named_pt_is_not_torchscript(msinet_weights, market64, tmp_path, capsys):
    weights = tmp_path / 'msinet.pt'  # a state_dict, as boxmot's .pt files are
    weights.write_bytes(msinet_weights.read_bytes())
    with pytest.raises(SystemExit):
        main(['extract', '--weights', str(weights), '--images', str(market64[1] / 'query'),
              '--out', str(tmp_path / 'f.npy'), *SIZE, '--workers', '0'])
    assert 'cannot load' in capsys.readouterr().err
