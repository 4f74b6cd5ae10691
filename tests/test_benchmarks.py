"""The inference benchmark runs (quick mode) and reports every figure it promises."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / 'benchmarks' / 'inference.py'


def load_benchmark():
    spec = importlib.util.spec_from_file_location('inference_benchmark', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_benchmark(tmp_path, reference_facts, capsys):
    benchmark = load_benchmark()
    threads = torch.get_num_threads()
    try:
        benchmark.main(['--quick', '--threads', '1', '--out', str(tmp_path / 'cpu.json')])
    finally:
        torch.set_num_threads(threads)
    results = json.loads((tmp_path / 'cpu.json').read_text())
    assert 'msinet / osnet_x1_0' in capsys.readouterr().out
    facts = results['models']
    assert list(facts) == ['resnet50', 'osnet_x1_0', 'msinet', 'msinet_sam']
    for name, model in [('msinet', 'msinet'), ('msinet_sam', 'msinet_sam_person')]:
        expected = reference_facts['models'][model]['params_excluding_classifiers']
        assert facts[name]['params'] == expected
    # Cross Attention's matrix products are counted: msinet_s has more of them than msinet.
    msinet_s = benchmark.models.build_model('msinet_s', 10, pretrained=False)
    assert benchmark.count_flops(msinet_s, 64, 32) > facts['msinet']['flops'] > 0
    latency = results['latency']['cpu']['2']['variants']
    assert set(latency) == {'resnet50', 'osnet_x1_0', 'msinet', 'msinet_sam', 'msinet inference',
                            'msinet inference NCHW', 'msinet onnxruntime',
                            'msinet onnxruntime int8'}
    assert latency['resnet50']['ratio_to_resnet50'] == 1
    for summary in latency.values():
        assert len(summary['samples_ms']) == 1 and summary['median_ms'] > 0
    ratios = results['latency']['cpu']['2']['ratios']
    assert set(ratios) == set(benchmark.COMPARISONS)
    osnet, msinet = latency['osnet_x1_0']['median_ms'], latency['msinet']['median_ms']
    assert ratios['msinet / osnet_x1_0']['median'] == pytest.approx(msinet / osnet)
