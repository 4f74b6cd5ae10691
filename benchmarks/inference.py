"""Inference cost of MSINet against torchreid's OSNet x1.0 and ResNet-50.

Measures, in one run: parameters (classifiers excluded), FLOPs per image counted by
PyTorch's ``FlopCounterMode`` (which, unlike torchreid's ``compute_model_complexity``,
sees the matrix products inside attention), and latency at each batch size on the CPU
(and CUDA when present) for the eager models, MSINet's inference model
(``msinet_reid.deploy``), each model's export to every CPU runtime
(``msinet_reid.deploy.export_model``): ONNX Runtime fp32 and int8, OpenVINO fp32, bf16
(where the CPU has bf16) and int8, TorchScript (int8 calibrated on synthetic crops; the
weights are untrained, so only its speed means something here:
``benchmarks/quantization.py`` measures its accuracy on a trained model), and compiled
models
(``msinet_reid.deploy.compile_model``: torch.compile, and CUDA graphs on a GPU; compiled
for each batch size timed, the compile time reported). Timings are interleaved:
each repeat runs every variant once, in a rotating order, so that load from other
processes spreads over all of them; the median and the spread over repeats are reported,
and each variant's median as a ratio to ResNet-50's. One table ends the report: each
runtime x batch size x model, as the speed-up over ONNX Runtime fp32 of the same model
(median of paired ratios).

Usage::

    python benchmarks/inference.py --threads 1 --out benchmarks/results/cpu.json
    python benchmarks/inference.py --devices cuda --out benchmarks/results/cuda.json
    python benchmarks/inference.py --quick  # tiny sizes, two repeats, few crops: checks it runs
"""
import argparse
import importlib
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode

import msinet_reid  # noqa: F401  (registers the models; torchreid's names in both layouts)
from msinet_reid.data import make_market1501
from msinet_reid.deploy import CompileError, InferenceModel, compile_model
from torchreid import models

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plots  # noqa: E402

MODELS = ('resnet50', 'osnet_x1_0', 'msinet', 'msinet_sam')
RUNTIME_MODELS = MODELS[:3]
# The runtime table's rows: label -> suffix of the variant's name after the model's.
RUNTIMES = {
    'eager': '', 'InferenceModel': ' inference', 'compiled (inductor)': ' compiled',
    'ONNX Runtime fp32': ' onnxruntime', 'ONNX Runtime int8': ' onnxruntime int8',
    'OpenVINO fp32': ' openvino', 'OpenVINO bf16': ' openvino bf16',
    'OpenVINO int8': ' openvino int8', 'TorchScript': ' torchscript',
}
TABLE_BASELINE = 'ONNX Runtime fp32'
BASELINE = 'resnet50'
MIN_SAMPLE_SECONDS = 0.2  # small batches are timed over several calls per sample
DTYPES = {'float32': torch.float32, 'float16': torch.float16, 'bfloat16': torch.bfloat16}
DTYPE_SUFFIXES = {'float32': '', 'float16': ' fp16', 'bfloat16': ' bf16'}

Runner = Callable[[torch.Tensor], object]


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 32],
                        help='batch sizes timed on the CPU')
    parser.add_argument('--cuda-batch-sizes', type=int, nargs='+', default=[1, 32, 256],
                        help='batch sizes timed on CUDA')
    parser.add_argument('--height', type=int, default=256)
    parser.add_argument('--width', type=int, default=128)
    parser.add_argument('--repeats', type=int, default=7, help='timed runs of each variant')
    parser.add_argument('--threads', type=int, default=None,
                        help="CPU threads for torch and onnxruntime (default: torch's)")
    parser.add_argument('--devices', nargs='+', default=None,
                        help='devices to time (default: cpu, and cuda when available)')
    parser.add_argument('--no-onnx', action='store_true',
                        help='skip the exported runtimes (ONNX Runtime, OpenVINO, TorchScript)')
    parser.add_argument('--runtime-models', nargs='*', default=None, choices=RUNTIME_MODELS,
                        help='models exported to every runtime (default: all three; msinet '
                             'with --quick)')
    parser.add_argument('--compile-models', nargs='*', default=None, choices=MODELS,
                        help='models timed compiled (default: msinet on the CPU, where '
                             'compiling the others takes minutes; resnet50, osnet_x1_0 '
                             'and msinet on CUDA); none: no compiled rows')
    parser.add_argument('--compile-dtypes', nargs='+', default=None, choices=sorted(DTYPES),
                        help='dtypes of the compiled rows (default: float32 on the CPU; '
                             'float32 and bfloat16 on CUDA)')
    parser.add_argument('--compile-layouts', nargs='+', default=['nhwc'],
                        choices=['nhwc', 'nchw'],
                        help='memory formats of the compiled rows: channels-last (nhwc) '
                             'and/or NCHW (rows named "... NCHW")')
    parser.add_argument('--max-autotune', action='store_true',
                        help="compile with inductor's max-autotune (slower to compile)")
    parser.add_argument('--out', type=Path, default=None, help='JSON file for the results')
    parser.add_argument('--quick', action='store_true',
                        help='tiny sizes, two repeats and few calibration crops, to check '
                             'that the script runs')
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.cuda_batch_sizes = [2], [2]
        args.height, args.width, args.repeats = 64, 32, 2
    if args.runtime_models is None:
        args.runtime_models = ['msinet'] if args.quick else list(RUNTIME_MODELS)
    if args.devices is None:
        args.devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    return args


def count_parameters(model: torch.nn.Module) -> int:
    """Parameters used at inference: classifiers excluded, as the paper counts."""
    return sum(p.numel() for name, p in model.named_parameters() if 'classifier' not in name)


@torch.no_grad()
def count_flops(model: torch.nn.Module, height: int, width: int) -> int:
    """FLOPs (2 per multiply-accumulate) of one eval-mode forward of one image."""
    counter = FlopCounterMode(display=False)
    with counter:
        model.eval()(torch.randn(1, 3, height, width))
    return counter.get_total_flops()


def runtime_runners(built: Dict[str, torch.nn.Module], args: argparse.Namespace,
                    folder: Path) -> Dict[str, Runner]:
    """Each of ``args.runtime_models`` exported to every CPU runtime, each export checked
    against PyTorch; int8 calibrated on synthetic crops (the guard is off: untrained
    weights)."""
    from msinet_reid.deploy import export_model, load_exported, quantize_model
    from msinet_reid.deploy.openvino_export import cpu_has_bf16
    from msinet_reid.deploy.runtimes import INT8_FORMATS, SUFFIXES, int8_path

    crops = make_market1501(folder, num_train_ids=2 if args.quick else 16, num_test_ids=1,
                            height=args.height, width=args.width,
                            progress=False) / 'bounding_box_train'
    bf16 = cpu_has_bf16()
    runners: Dict[str, Runner] = {}
    for name in args.runtime_models:
        for format, suffix in SUFFIXES.items():
            print(f'exporting {name} to {format}', file=sys.stderr)
            path = export_model(built[name], folder / f'{name}{suffix}', format, args.height,
                                args.width)
            row = f'{name} {"onnxruntime" if format == "onnx" else format}'
            runners[row] = load_exported(path, 'f32', args.threads)[0]
            if format == 'openvino' and bf16:
                runners[f'{row} bf16'] = load_exported(path, 'bf16', args.threads)[0]
            if format in INT8_FORMATS:
                report = quantize_model(path, int8_path(path), crops, min_cosine=-1)
                print(f'{report} (untrained weights: the guard is off)', file=sys.stderr)
                runners[f'{row} int8'] = load_exported(report.path, 'f32', args.threads)[0]
    return runners


def compiled_rows(args: argparse.Namespace,
                  device: torch.device) -> List[Tuple[str, str, str]]:
    """``(model, dtype name, layout)`` of each compiled row on ``device``."""
    on_cuda = device.type == 'cuda'
    names = args.compile_models
    if names is None:
        names = MODELS[:3] if on_cuda else ['msinet']
    dtypes = args.compile_dtypes or (['float32', 'bfloat16'] if on_cuda else ['float32'])
    return [(name, dtype, layout) for name in names for dtype in dtypes
            for layout in args.compile_layouts]


def build_variants(built: Dict[str, torch.nn.Module], args: argparse.Namespace,
                   device: torch.device, folder: Path) -> Dict[str, Runner]:
    """Name -> function running one forward pass of a batch already on ``device``."""
    variants: Dict[str, Runner] = {name: model.eval().to(device) for name, model in built.items()}
    msinet = variants['msinet']
    variants['msinet inference'] = InferenceModel(msinet).to(device)
    variants['msinet inference NCHW'] = InferenceModel(msinet, channels_last=False).to(device)
    if device.type == 'cpu' and not args.no_onnx:
        variants.update(runtime_runners(built, args, folder))
    if device.type == 'cuda':
        for name in MODELS[:3]:
            variants[f'{name} amp'] = _autocast(variants[name])
    return variants


def compile_variants(variants: Dict[str, Runner], args: argparse.Namespace,
                     device: torch.device, batch: int,
                     compile_seconds: Dict[str, Dict[int, float]]) -> Dict[str, Runner]:
    """The compiled rows for one batch size (one bucket each: what a model compiled for
    several batch sizes runs at this one); their compile times go into
    ``compile_seconds[row][batch]``. Compiled batch by batch, so that a run stopped on the
    way keeps the batch sizes already measured."""
    compiled = {}
    for name, dtype, layout in compiled_rows(args, device):
        row = f'{name} compiled{DTYPE_SUFFIXES[dtype]}{" NCHW" if layout == "nchw" else ""}'
        print(f'compiling {row} for batch {batch} on {device}', file=sys.stderr)
        start = time.perf_counter()
        try:
            compiled[row] = compile_model(variants[name], device, (args.height, args.width),
                                          buckets=[batch], dtype=DTYPES[dtype],
                                          channels_last=layout == 'nhwc',
                                          max_autotune=args.max_autotune, progress=False)
        except CompileError as error:  # reported in the results; the other rows go on
            print(f'{row}: {error}', file=sys.stderr)
            compile_seconds.setdefault(row, {})[batch] = f'failed: {error}'
            continue
        compile_seconds.setdefault(row, {})[batch] = time.perf_counter() - start
    return compiled


def _autocast(model: torch.nn.Module) -> Runner:
    """``model`` in mixed precision (float16 autocast), as ``amp=True`` trains it."""
    def run(images: torch.Tensor):
        with torch.autocast('cuda', dtype=torch.float16):
            return model(images)
    return run


def _synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


@torch.inference_mode()
def time_variants(variants: Dict[str, Runner], images: torch.Tensor,
                  repeats: int) -> Dict[str, List[float]]:
    """Seconds per forward pass: ``repeats`` samples per variant, interleaved."""
    device = images.device
    calls = {}
    for name, run in variants.items():  # warm up, and size the samples of fast variants
        run(images)
        _synchronize(device)
        start = time.perf_counter()
        run(images)
        _synchronize(device)
        calls[name] = max(1, round(MIN_SAMPLE_SECONDS / (time.perf_counter() - start)))
    samples: Dict[str, List[float]] = {name: [] for name in variants}
    names = list(variants)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            start = time.perf_counter()
            for _ in range(calls[name]):
                variants[name](images)
            _synchronize(device)
            samples[name].append((time.perf_counter() - start) / calls[name])
    return samples


def paired_ratios(samples: Dict[str, List[float]], name: str, baseline: str) -> List[float]:
    """``name``'s time over ``baseline``'s within each repeat: both ran moments apart, so
    the ratio cancels most of the load that other processes put on the machine."""
    return [a / b for a, b in zip(samples[name], samples[baseline])]


def summarize(samples: Dict[str, List[float]]) -> Dict[str, dict]:
    summary = {}
    for name, times in samples.items():
        median = statistics.median(times)
        summary[name] = {
            'median_ms': 1e3 * median,
            'min_ms': 1e3 * min(times),
            'max_ms': 1e3 * max(times),
            'spread': (max(times) - min(times)) / median,  # relative to the median
            'ratio_to_resnet50': statistics.median(paired_ratios(samples, name, BASELINE)),
            'samples_ms': [1e3 * t for t in times],
        }
    return summary


def cpu_name() -> str:
    cpuinfo = Path('/proc/cpuinfo')
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(args: argparse.Namespace) -> dict:
    info = {
        'python': platform.python_version(), 'torch': torch.__version__,
        'cpu': cpu_name(), 'threads': torch.get_num_threads(),
        'image': [args.height, args.width], 'repeats': args.repeats,
        'max_autotune': args.max_autotune,
    }
    if 'cuda' in args.devices:
        info['gpu'] = torch.cuda.get_device_name()
    for package in ('onnxruntime', 'openvino', 'nncf'):
        try:
            info[package] = importlib.import_module(package).__version__
        except ImportError:
            pass
    return info


COMPARISONS = {  # label: (variant, baseline)
    'msinet / osnet_x1_0': ('msinet', 'osnet_x1_0'),
    'eager / inference': ('msinet', 'msinet inference'),
    'eager / inference NCHW': ('msinet', 'msinet inference NCHW'),
    'eager / onnxruntime': ('msinet', 'msinet onnxruntime'),
    'onnxruntime / int8': ('msinet onnxruntime', 'msinet onnxruntime int8'),
    'inference / int8': ('msinet inference', 'msinet onnxruntime int8'),
    'osnet_x1_0 / int8': ('osnet_x1_0', 'msinet onnxruntime int8'),
    'openvino / openvino int8': ('msinet openvino', 'msinet openvino int8'),
    'onnxruntime / openvino int8': ('msinet onnxruntime', 'msinet openvino int8'),
    'onnxruntime / openvino bf16': ('msinet onnxruntime', 'msinet openvino bf16'),
    'onnxruntime / torchscript': ('msinet onnxruntime', 'msinet torchscript'),
    'msinet amp / osnet_x1_0 amp': ('msinet amp', 'osnet_x1_0 amp'),
    'msinet amp / resnet50 amp': ('msinet amp', 'resnet50 amp'),
    'fp32 / amp': ('msinet', 'msinet amp'),
}
for _dtype, _suffix in DTYPE_SUFFIXES.items():  # the compiled rows, in each dtype
    COMPARISONS.update({
        f'eager / compiled{_suffix}': ('msinet', f'msinet compiled{_suffix}'),
        f'inference / compiled{_suffix}': ('msinet inference', f'msinet compiled{_suffix}'),
        f'msinet / resnet50 compiled{_suffix}': (f'msinet compiled{_suffix}',
                                                 f'resnet50 compiled{_suffix}'),
        f'msinet / osnet_x1_0 compiled{_suffix}': (f'msinet compiled{_suffix}',
                                                   f'osnet_x1_0 compiled{_suffix}'),
    })
    COMPARISONS[f'NCHW / channels-last compiled{_suffix}'] = (
        f'msinet compiled{_suffix} NCHW', f'msinet compiled{_suffix}')
    if _suffix:
        COMPARISONS[f'compiled fp32 / compiled{_suffix}'] = (
            'msinet compiled', f'msinet compiled{_suffix}')
COMPARISONS['compiled bf16 / compiled fp16'] = ('msinet compiled bf16', 'msinet compiled fp16')


def compare(samples: Dict[str, List[float]]) -> Dict[str, dict]:
    """The ratios the README quotes: median, min and max over repeats of paired ratios."""
    ratios = {}
    for label, (name, baseline) in COMPARISONS.items():
        if name in samples and baseline in samples:
            paired = paired_ratios(samples, name, baseline)
            ratios[label] = {'median': statistics.median(paired), 'min': min(paired),
                             'max': max(paired)}
    return ratios


def print_report(results: dict) -> None:
    print(f'{"model":<12}{"params (M)":>12}{"GFLOPs":>10}')
    for name, facts in results['models'].items():
        print(f'{name:<12}{facts["params"] / 1e6:>12.2f}{facts["flops"] / 1e9:>10.2f}')
    for device, batches in results['latency'].items():
        for batch, measured in batches.items():
            print(f'\n{device}, batch {batch}: median ms [min, max], '
                  f'ratio to {BASELINE} (median of paired ratios)')
            for name, s in measured['variants'].items():
                print(f'  {name:<36}{s["median_ms"]:>10.1f} [{s["min_ms"]:.1f}, '
                      f'{s["max_ms"]:.1f}]{s["ratio_to_resnet50"]:>8.2f}x')
            for label, r in measured['ratios'].items():
                print(f'  {label:<36}{r["median"]:>10.2f} [{r["min"]:.2f}, {r["max"]:.2f}]')
    for device, rows in results['compile_seconds'].items():
        for name, seconds in rows.items():
            per_batch = ', '.join(f'{s if isinstance(s, str) else f"{s:.0f} s"} (batch {batch})'
                                  for batch, s in seconds.items())
            print(f'compiling {name} on {device}: {per_batch}')
    if results.get('runtime_table'):
        print(f'\nCPU runtimes: median ms per batch ({results["environment"]["threads"]} '
              f'threads), and the speed-up over {TABLE_BASELINE} of the same model')
        print(format_runtime_table(results['runtime_table']))


def runtime_table(latency: Dict[str, dict]) -> Dict[str, Dict[str, Dict[str, dict]]]:
    """runtime -> model -> batch -> median ms and speed-up over ONNX Runtime fp32 of the
    same model (the median over repeats of the paired time ratios), from one device's
    ``latency`` results; the cells measured."""
    table: Dict[str, Dict[str, Dict[str, dict]]] = {}
    for label, suffix in RUNTIMES.items():
        for model in RUNTIME_MODELS:
            name, baseline = f'{model}{suffix}', f'{model}{RUNTIMES[TABLE_BASELINE]}'
            for batch, measured in latency.items():
                variants = measured['variants']
                if name not in variants or baseline not in variants:
                    continue
                samples = {key: variants[key]['samples_ms'] for key in (name, baseline)}
                table.setdefault(label, {}).setdefault(model, {})[batch] = {
                    'median_ms': variants[name]['median_ms'],
                    'speedup': statistics.median(
                        1 / ratio for ratio in paired_ratios(samples, name, baseline)),
                }
    return table


def format_runtime_table(table: Dict[str, Dict[str, Dict[str, dict]]]) -> str:
    """The runtime table in Markdown: a row per runtime, a column per model and batch."""
    columns = sorted({(model, batch) for by_model in table.values()
                      for model, batches in by_model.items() for batch in batches},
                     key=lambda column: (RUNTIME_MODELS.index(column[0]), int(column[1])))
    lines = ['| runtime | ' + ' | '.join(f'{model} batch {batch}' for model, batch in columns)
             + ' |', '|---' * (len(columns) + 1) + '|']
    for label, by_model in table.items():
        cells = [by_model.get(model, {}).get(batch) for model, batch in columns]
        lines.append(f'| {label} | ' + ' | '.join(
            f'{cell["median_ms"]:.1f} ms ({cell["speedup"]:.2f}x)' if cell else '-'
            for cell in cells) + ' |')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {'environment': environment(args), 'models': {}, 'latency': {},
               'compile_seconds': {}}
    built = {name: models.build_model(name, 751, pretrained=False) for name in MODELS}
    for name, model in built.items():
        results['models'][name] = {
            'params': count_parameters(model),
            'flops': count_flops(model, args.height, args.width),
        }
    with tempfile.TemporaryDirectory() as folder:
        for device_name in args.devices:
            device = torch.device(device_name)
            compile_seconds = results['compile_seconds'].setdefault(device_name, {})
            variants = build_variants(built, args, device, Path(folder))
            results['latency'][device_name] = {}
            batch_sizes = args.cuda_batch_sizes if device.type == 'cuda' else args.batch_sizes
            for batch in batch_sizes:
                timed = {**variants, **compile_variants(variants, args, device, batch,
                                                        compile_seconds)}
                print(f'timing {len(timed)} variants on {device_name}, batch {batch}',
                      file=sys.stderr)
                images = torch.randn(batch, 3, args.height, args.width, device=device)
                samples = time_variants(timed, images, args.repeats)
                del timed  # the compiled rows' buffers and graphs
                results['latency'][device_name][batch] = {
                    'variants': summarize(samples), 'ratios': compare(samples),
                }
                if device.type == 'cpu':
                    results['runtime_table'] = runtime_table(results['latency']['cpu'])
                if args.out:  # after every batch size: a run stopped later keeps these
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(results, indent=2))
    print_report(results)
    if args.out:
        plots.save_beside(args.out, plots.latency(results))
    return results


if __name__ == '__main__':
    main()
