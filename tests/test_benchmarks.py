"""The inference benchmark runs (quick mode) and reports every figure it promises."""
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from msinet_reid.deploy.openvino_export import cpu_has_bf16

from helpers import load_script

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_benchmark(tmp_path, reference_facts):
    pytest.importorskip('nncf', reason='its OpenVINO rows need msinet-reid[openvino]')
    # In a process of its own: after its runtimes (OpenVINO, onnxruntime, inductor) have
    # run in a process, a signal delivered to that process can crash it (SIGSEGV), and
    # later tests deliver some (SIGCHLD from their subprocesses).
    run = subprocess.run([sys.executable, 'benchmarks/inference.py', '--quick', '--threads',
                          '1', '--out', str(tmp_path / 'cpu.json')], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    benchmark = load_script('benchmarks/inference.py')
    results = json.loads((tmp_path / 'cpu.json').read_text())
    printed = run.stdout
    assert 'msinet / osnet_x1_0' in printed
    facts = results['models']
    assert list(facts) == ['resnet50', 'osnet_x1_0', 'msinet', 'msinet_sam']
    for name, model in [('msinet', 'msinet'), ('msinet_sam', 'msinet_sam_person')]:
        expected = reference_facts['models'][model]['params_excluding_classifiers']
        assert facts[name]['params'] == expected
    # Cross Attention's matrix products are counted: msinet_s has more of them than msinet.
    msinet_s = benchmark.models.build_model('msinet_s', 10, pretrained=False)
    assert benchmark.count_flops(msinet_s, 64, 32) > facts['msinet']['flops'] > 0
    latency = results['latency']['cpu']['2']['variants']
    bf16 = {'msinet openvino bf16'} if cpu_has_bf16() else set()
    assert set(latency) == {'resnet50', 'osnet_x1_0', 'msinet', 'msinet_sam', 'msinet inference',
                            'msinet inference NCHW', 'msinet onnxruntime',
                            'msinet onnxruntime int8', 'msinet openvino', 'msinet openvino int8',
                            'msinet torchscript', 'msinet compiled'} | bf16
    assert list(results['compile_seconds']['cpu']) == ['msinet compiled']
    assert list(results['compile_seconds']['cpu']['msinet compiled']) == ['2']
    for summary in latency.values():
        assert len(summary['samples_ms']) == 2 and summary['median_ms'] > 0
    # Every ratio is the median over repeats of the times paired within a repeat.
    samples = {name: summary['samples_ms'] for name, summary in latency.items()}

    def paired_median(name, baseline):
        return statistics.median(a / b for a, b in zip(samples[name], samples[baseline]))

    for name, summary in latency.items():
        assert summary['ratio_to_resnet50'] == pytest.approx(paired_median(name, 'resnet50'))
    ratios = results['latency']['cpu']['2']['ratios']
    cpu_comparisons = {label for label, pair in benchmark.COMPARISONS.items()
                       if set(pair) <= set(latency)}
    assert set(ratios) == cpu_comparisons
    assert {'msinet / osnet_x1_0', 'eager / compiled', 'inference / compiled'} <= set(ratios)
    for label, ratio in ratios.items():
        name, baseline = benchmark.COMPARISONS[label]
        assert ratio['median'] == pytest.approx(paired_median(name, baseline))
        assert ratio['min'] <= ratio['median'] <= ratio['max']
    # The runtime table: msinet's runtimes (--quick exports msinet alone), as speed-ups
    # over ONNX Runtime fp32 paired within each repeat.
    table = results['runtime_table']
    assert set(table) == {label for label, suffix in benchmark.RUNTIMES.items()
                          if f'msinet{suffix}' in latency}
    assert table['ONNX Runtime fp32']['msinet']['2']['speedup'] == 1
    cell = table['OpenVINO int8']['msinet']['2']
    assert cell['speedup'] == pytest.approx(
        paired_median('msinet onnxruntime', 'msinet openvino int8'))
    assert benchmark.format_runtime_table(table) in printed
    assert '| OpenVINO int8 | ' in printed


def test_check_images_benchmark_quick(capsys):
    rows = load_script('benchmarks/check_images.py').main(['--count', '12', '--repeats', '1'])
    assert len(rows) == 3 and all(rate > 0 for rate in rows.values())
    assert 'MSMT17 (126,441)' in capsys.readouterr().out


def test_clustering_benchmark_quick(tmp_path):
    rows = load_script('benchmarks/clustering.py').main(
        ['--quick', '--repeats', '1', '--threads', '1', '--out', str(tmp_path / 'c.json')])
    assert [row['features'] for row in rows] == ['separated', 'noisy']
    for row in rows:  # the dense definition ran too, and labelled alike
        assert row['sparse_mib'] >= 0 and row['dense_s'] > 0
    assert rows[0]['clusters'] > 0


def test_retrieval_benchmark_quick(tmp_path):
    table = load_script('benchmarks/retrieval.py').main(
        ['--quick', '--threads', '1', '--out', str(tmp_path / 'r.json')])
    rows = table['quick']
    assert set(rows) == {'torchreid', 'msinet-reid', 'torchreid re-ranked',
                         'msinet-reid re-ranked'}
    for variant in ('msinet-reid', 'msinet-reid re-ranked'):
        assert not rows[variant.replace('msinet-reid', 'torchreid')]['stopped']  # it ran
        assert rows[variant]['largest_difference'] < 1e-5
    assert rows['msinet-reid re-ranked']['mAP'] != rows['msinet-reid']['mAP']


def test_extraction_benchmark_quick_mode(tmp_path):
    benchmark = load_script('benchmarks/extraction.py')
    rows = benchmark.main(['--quick', '--out', str(tmp_path / 'extraction.json')])
    assert list(rows) == ['256']
    assert set(rows['256']) == {'list + torch.cat (torchreid)', 'msinet-reid'}
    for row in rows['256'].values():
        assert row['features_mib'] == 256 * 768 * 4 / 2 ** 20 and row['peak_mib'] > 0
    assert json.loads((tmp_path / 'extraction.json').read_text())['rows'] == rows
