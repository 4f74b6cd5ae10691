"""INT8 quantization (`export --int8`), its accuracy guard, and `msinet-reid evaluate`."""
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from PIL import Image

from msinet_reid.cli import main
from msinet_reid.deploy import (MIN_COSINE, OnnxModel, QuantizationError, export_onnx,
                                find_images, image_batches, load_trained, quantize_onnx)
from msinet_reid.deploy.onnx_export import onnx_session
from msinet_reid.deploy.quantize import feature_cosine
from msinet_reid.deploy.rewrites import int8_friendly, shapes_from_quantized

from helpers import load_script

HEIGHT, WIDTH = 64, 32


@pytest.fixture(scope='module')
def fp32_onnx(msinet_weights, tmp_path_factory):
    path = tmp_path_factory.mktemp('fp32') / 'msinet.onnx'
    return export_onnx(load_trained('msinet', msinet_weights), path, HEIGHT, WIDTH)


@pytest.mark.numerics
def test_export_int8_end_to_end(msinet_weights, market64, tmp_path, capsys, record_property):
    crops = market64[1] / 'bounding_box_train'
    out = tmp_path / 'msinet.onnx'
    assert main(['export', '--weights', str(msinet_weights), '--out', str(out), '--height',
                 str(HEIGHT), '--width', str(WIDTH), '--int8', '--calib', str(crops),
                 '--num-calibration', '16']) == 0
    int8 = tmp_path / 'msinet.int8.onnx'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['msinet.int8.onnx', 'msinet.onnx']
    printed = capsys.readouterr().out
    assert f'Wrote {int8}: int8, minmax calibration on 16 images' in printed
    assert 'held-out images: mean ' in printed
    # QDQ: every convolution reads int8 weights with one scale per output channel.
    graph = onnx.load(str(int8)).graph
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    convs = [node for node in graph.node if node.op_type == 'Conv']
    assert convs
    for conv in convs:
        dequantize = producers[conv.input[1]]
        assert dequantize.op_type == 'DequantizeLinear'
        weight, scale = (initializers[name] for name in dequantize.input[:2])
        assert weight.dtype == np.int8 and scale.shape == (weight.shape[0],)
    assert any(node.op_type == 'QuantizeLinear' for node in graph.node)  # activations too
    # The int8 rewrites: no AveragePool left for onnxruntime's slow QLinearAveragePool, the
    # channel gates' means pool in int8, and no feature map is dequantized for its shape.
    assert not [node for node in graph.node if node.op_type == 'AveragePool']
    pools = [node for node in graph.node if node.op_type == 'GlobalAveragePool']
    assert len(pools) == 13 and all(producers[node.input[0]].op_type == 'DequantizeLinear'
                                    for node in pools)
    assert all(producers[node.input[0]].op_type != 'DequantizeLinear'
               for node in graph.node if node.op_type == 'Shape')
    # Same interface as fp32, close features on images it never saw.
    images = image_batches(find_images(market64[1] / 'query'), (HEIGHT, WIDTH), 16, workers=0)
    similarity = feature_cosine(OnnxModel(int8), OnnxModel(out), images)
    record_property('mean cosine int8 / fp32', similarity.mean().item())
    assert similarity.mean() >= MIN_COSINE


def test_int8_rewrites_keep_the_fp32_features(fp32_onnx, tmp_path):
    model = onnx.load(str(fp32_onnx))
    # MSINet's 12 channel-gate means and its 2 stage-transition pools.
    assert int8_friendly(model) == 14
    ops = [node.op_type for node in model.graph.node]
    assert 'AveragePool' not in ops and ops.count('ReduceMean') == 2  # the part head's
    onnx.checker.check_model(model)
    rewritten = tmp_path / 'rewritten.onnx'
    onnx.save(model, str(rewritten))
    images = torch.randn(3, 3, HEIGHT, WIDTH)
    torch.testing.assert_close(OnnxModel(rewritten)(images), OnnxModel(fp32_onnx)(images),
                               rtol=0, atol=1e-5)


def test_guard_refuses_a_broken_calibration(fp32_onnx, market64, tmp_path):
    blank = tmp_path / 'blank'  # calibrated on flat grey crops, the ranges miss real ones
    blank.mkdir()
    for index in range(4):
        Image.new('RGB', (WIDTH, HEIGHT), (128, 128, 128)).save(blank / f'{index}.png')
    out = tmp_path / 'msinet.int8.onnx'
    out.write_bytes(b'a previous int8 model')
    fp32_bytes = fp32_onnx.read_bytes()
    with pytest.raises(QuantizationError, match='cosine similarity mean .* below the threshold'):
        quantize_onnx(fp32_onnx, out, blank, check=market64[1] / 'query')
    assert out.read_bytes() == b'a previous int8 model'
    assert fp32_onnx.read_bytes() == fp32_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ['blank', 'msinet.int8.onnx']


@pytest.mark.parametrize('calib, message', [
    ('missing', 'no folder of images at'),
    ('empty', 'no images under'),
    (None, '--int8 needs --calib'),
])
def test_export_int8_cli_errors(msinet_weights, tmp_path, capsys, calib, message):
    (tmp_path / 'empty').mkdir()
    calib_args = ['--calib', str(tmp_path / calib)] if calib else []
    out = tmp_path / 'out' / 'msinet.onnx'
    with pytest.raises(SystemExit) as exit_info:
        main(['export', '--weights', str(msinet_weights), '--out', str(out), '--int8', *calib_args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()  # refused before exporting anything


def test_evaluate_checkpoint_and_onnx_alike(msinet_weights, fp32_onnx, market64, capsys):
    common = ['--root', str(market64[0]), '--height', str(HEIGHT), '--width', str(WIDTH),
              '--workers', '0']
    scores = []
    for weights in (msinet_weights, fp32_onnx):
        assert main(['evaluate', '--weights', str(weights), *common]) == 0
        scores.append(capsys.readouterr().out.splitlines()[-1].split(': ', 1)[1])
    assert scores[0].startswith('Rank-1 ') and scores[0] == scores[1]
    # Without --height/--width the file runs at its own size; another size is named.
    with pytest.raises(SystemExit):
        main(['evaluate', '--weights', str(fp32_onnx), '--root', str(market64[0]),
              '--height', '256', '--width', '128'])
    assert f'pass --height {HEIGHT} --width {WIDTH}' in capsys.readouterr().err


@pytest.mark.slow
def test_quantization_benchmark_reports_every_row(msinet_weights, market64, tmp_path, capsys):
    pytest.importorskip('nncf', reason='its OpenVINO rows need msinet-reid[openvino]')
    benchmark = load_script('benchmarks/quantization.py')
    out = tmp_path / 'quantization.json'
    benchmark.main(['--weights', str(msinet_weights), '--root', str(market64[0]), '--calib',
                    str(market64[1] / 'bounding_box_train'), '--height', str(HEIGHT), '--width',
                    str(WIDTH), '--methods', 'minmax', 'percentile', '--num-calibration', '4',
                    '--out', str(out)])
    rows = json.loads(out.read_text())
    assert list(rows) == ['checkpoint', 'fp32 ONNX', 'int8 minmax, 4 crops',
                          'int8 percentile, 4 crops', 'fp32 OpenVINO',
                          'int8 OpenVINO (NNCF), 4 crops']
    assert rows['checkpoint'] == pytest.approx(rows['fp32 ONNX'], abs=1e-3)
    assert rows['checkpoint'] == pytest.approx(rows['fp32 OpenVINO'], abs=1e-3)
    for label in ('int8 minmax, 4 crops', 'int8 OpenVINO (NNCF), 4 crops'):
        row = rows[label]
        assert 1 >= row['mean_cosine'] >= row['min_cosine'] and row['calibration_s'] > 0
        assert 0 < row['mAP'] <= 1 and 0 <= row['rank1'] <= 1
    # This untrained model's near-uniform attention defeats percentile calibration (below):
    # the row says so, and the other rows are still measured.
    assert rows['int8 percentile, 4 crops']['error'].startswith('percentile calibration failed')
    printed = capsys.readouterr().out
    assert all(label in printed for label in rows) and 'failed: percentile' in printed


def test_percentile_calibration_failure_is_explained(fp32_onnx, market64, tmp_path):
    out = tmp_path / 'msinet.int8.onnx'
    with pytest.raises(QuantizationError, match='takes all but the same value .* use minmax'):
        quantize_onnx(fp32_onnx, out, market64[1] / 'bounding_box_train', method='percentile',
                      num_calibration=4)
    assert not out.exists()


@pytest.mark.parametrize('op, attributes, rewritten', [
    ('AveragePool', {'kernel_shape': [2, 2], 'strides': [2, 2]}, True),
    ('AveragePool', {'kernel_shape': [3, 3], 'strides': [3, 3]}, True),
    ('AveragePool', {'kernel_shape': [3, 3], 'strides': [1, 1], 'pads': [1, 1, 1, 1]}, False),
    ('AveragePool', {'kernel_shape': [2, 2], 'strides': [2, 2], 'pads': [1, 1, 1, 1]}, False),
    ('AveragePool', {'kernel_shape': [2, 2], 'strides': [2, 2], 'ceil_mode': 1}, False),
    ('ReduceMean', {'axes': [-1, -2]}, True),
    ('ReduceMean', {'axes': [2, 3], 'keepdims': 0}, False),
    ('ReduceMean', {'axes': [1, 2, 3]}, False),
])
def test_int8_rewrites_only_exact_equivalents(op, attributes, rewritten, tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node(op, ['x'], ['y'], name='op', **attributes)], 'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['batch', 5, 7, 9])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)
    original = tmp_path / 'original.onnx'
    onnx.save(model, str(original))
    assert int8_friendly(model) == int(rewritten)
    assert (model.graph.node[0].op_type == op) != rewritten
    changed = tmp_path / 'rewritten.onnx'
    onnx.save(model, str(changed))
    images = np.random.default_rng(0).standard_normal((2, 5, 7, 9)).astype(np.float32)
    outputs = [onnx_session(path).run(None, {'x': images})[0] for path in (original, changed)]
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=0, atol=1e-6)


def test_shapes_read_the_quantized_tensor(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    scale = numpy_helper.from_array(np.array(0.1, np.float32), 'scale')
    zero = numpy_helper.from_array(np.array(128, np.uint8), 'zero')
    graph = helper.make_graph(
        [helper.make_node('QuantizeLinear', ['x', 'scale', 'zero'], ['q']),
         helper.make_node('DequantizeLinear', ['q', 'scale', 'zero'], ['dq']),
         helper.make_node('Shape', ['dq'], ['shape'])], 'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['batch', 5, 7, 9])],
        [helper.make_tensor_value_info('shape', TensorProto.INT64, [4])], [scale, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)
    assert shapes_from_quantized(model) == 1
    # The Dequantize node that only the Shape read is gone.
    assert [node.op_type for node in model.graph.node] == ['QuantizeLinear', 'Shape']
    path = tmp_path / 'shape.onnx'
    onnx.save(model, str(path))
    images = np.zeros((2, 5, 7, 9), np.float32)
    assert onnx_session(path).run(None, {'x': images})[0].tolist() == [2, 5, 7, 9]
