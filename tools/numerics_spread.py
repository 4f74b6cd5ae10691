"""How the numerics tests' figures spread over CPU kernels, thread counts and seeds.

A learned outcome (a metric rising, fewer identity switches) or a comparison of float
results computed in different orders holds on one machine's floating-point path; other
CPUs take other paths (AVX2, AVX-512, none). PyTorch can take each of them on one machine:
``ATEN_CPU_CAPABILITY`` picks its kernels, ``OMP_NUM_THREADS`` how sums are split. This
script runs the tests marked ``numerics`` once per setting (kernels x threads x seeds,
``MSINET_TEST_SEED``), collects the figures they record (pytest's ``record_property``) and
their outcomes, and prints each figure's min and max over the settings::

    python tools/numerics_spread.py --kernels default avx2 avx512 --threads 1 2 --seeds 0 1 2
    python tools/numerics_spread.py --seeds 0 1 -- -k adaptation   # extra pytest arguments

A margin in a test belongs below the worst case seen here, not one run's figure.
"""
import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]


def capability(kernels: str) -> str:
    """The kernel set PyTorch really uses when asked for ``kernels`` (it falls back to
    what the CPU has)."""
    return subprocess.run(
        [sys.executable, '-c', 'import torch; print(torch.backends.cpu.get_cpu_capability())'],
        env={**os.environ, 'ATEN_CPU_CAPABILITY': kernels}, capture_output=True, text=True,
        check=True).stdout.strip()


def run_setting(kernels: str, threads: int, seed: int, pytest_args: List[str]) -> List[dict]:
    """The numerics tests' outcomes and recorded figures under one setting."""
    env = {**os.environ, 'ATEN_CPU_CAPABILITY': kernels, 'OMP_NUM_THREADS': str(threads),
           'MSINET_TEST_SEED': str(seed)}
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / 'report.xml'
        subprocess.run([sys.executable, '-m', 'pytest', '-m', 'numerics', '-q',
                        '-p', 'no:cacheprovider', f'--junitxml={report}', *pytest_args],
                       cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        cases = ElementTree.parse(report).getroot().iter('testcase')
        return [{'test': case.get('name'), 'kernels': kernels, 'threads': threads,
                 'seed': seed, 'outcome': _outcome(case),
                 'figures': {p.get('name'): float(p.get('value'))
                             for p in case.iter('property')}} for case in cases]


def _outcome(case: ElementTree.Element) -> str:
    for tag in ('failure', 'error', 'skipped'):
        if case.find(tag) is not None:
            return tag
    return 'passed'


def spread(rows: List[dict]) -> Dict[str, dict]:
    """Per test: its failures, and each figure's min and max with the settings giving them."""
    tests: Dict[str, dict] = {}
    for row in rows:
        test = tests.setdefault(row['test'], {'runs': 0, 'failed': [], 'figures': {}})
        test['runs'] += 1
        setting = f"{row['kernels']}, {row['threads']} thread(s), seed {row['seed']}"
        if row['outcome'] != 'passed':
            test['failed'].append(f"{setting}: {row['outcome']}")
        for name, value in row['figures'].items():
            figure = test['figures'].setdefault(name, {'min': value, 'max': value,
                                                       'min_at': setting, 'max_at': setting})
            for bound, better in (('min', value < figure['min']), ('max', value > figure['max'])):
                if better:
                    figure[bound], figure[f'{bound}_at'] = value, setting
    return tests


def main(argv: Optional[List[str]] = None) -> Dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--kernels', nargs='+', default=['default', 'avx2', 'avx512'],
                        help='ATEN_CPU_CAPABILITY values; one the CPU lacks is skipped')
    parser.add_argument('--threads', nargs='+', type=int, default=[1, 2])
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--out', type=Path, default=None, help='JSON file for every run')
    parser.add_argument('pytest_args', nargs='*', help='after --: more pytest arguments')
    args = parser.parse_args(argv)

    kernels = [k for k in args.kernels if capability(k) == k.upper()]
    skipped = sorted(set(args.kernels) - set(kernels))
    if skipped:
        print(f'not on this CPU, left out: {", ".join(skipped)}')
    rows = []
    for kernel, threads, seed in itertools.product(kernels, args.threads, args.seeds):
        print(f'{kernel}, {threads} thread(s), seed {seed} ...', flush=True)
        rows += run_setting(kernel, threads, seed, args.pytest_args)
    tests = spread(rows)
    for name, test in tests.items():
        print(f'\n{name}: {test["runs"] - len(test["failed"])}/{test["runs"]} passed')
        for failure in test['failed']:
            print(f'  failed under {failure}')
        for figure, values in test['figures'].items():
            print(f'  {figure}: min {values["min"]:.4g} ({values["min_at"]}), '
                  f'max {values["max"]:.4g} ({values["max_at"]})')
    if args.out:
        args.out.write_text(json.dumps({'runs': rows, 'spread': tests}, indent=1))
    return tests


if __name__ == '__main__':
    main()
