"""Evaluation and re-ranking at dataset scale: msinet-reid's ``rank_metrics`` against
torchreid's dense ``compute_distance_matrix`` + ``evaluate_rank`` (+ ``re_ranking``).

Synthetic 768-d features with identity and camera structure at the test sizes of
Market-1501 (3,368 queries x 15,913 gallery images), MSMT17 (11,659 x 82,161) and
Market-1501+500k (3,368 x 515,913: 500,000 distractors of nobody queried)::

    python benchmarks/retrieval.py                          # every size, 2 threads
    python benchmarks/retrieval.py --sizes market1501 --out benchmarks/results/retrieval.json
    python benchmarks/retrieval.py --quick                  # tiny, a few seconds

Each row runs in a fresh process with ``--threads`` threads; its peak resident memory is
measured above the features it was given (the peak is reset once they exist). torchreid's
rows run under a ceiling (``--ceiling-gb`` of resident memory, ``--time-limit`` seconds):
past either they are stopped and reported as such. Where both ran, the figures are
compared: Rank-1 to Rank-50 and mAP, largest difference.
"""
import argparse
import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import numpy as np
import torch

import msinet_reid  # noqa: F401  (torchreid's official module names, in either layout)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plots  # noqa: E402
from memory import reset_peak, resident_kib  # noqa: E402

SIZES = {  # queries, gallery images of queried identities, distractors, identities
    'market1501': (3368, 15913, 0, 750),
    'msmt17': (11659, 82161, 0, 3060),
    'market1501+500k': (3368, 15913, 500000, 750),
    'quick': (60, 400, 100, 20),
}
VARIANTS = ('torchreid', 'msinet-reid', 'torchreid re-ranked', 'msinet-reid re-ranked')


def features(size: str, dim: int = 768, cameras: int = 6, seed: int = 0):
    """``(qf, gf, q_pids, g_pids, q_camids, g_camids)``: each identity a random centre,
    each camera a shift, each image noise; distractors are identities of their own."""
    queries, gallery, distractors, identities = SIZES[size]
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(identities, dim, generator=generator)
    shifts = 0.7 * torch.randn(cameras, dim, generator=generator)

    def draw(pids: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(pids), dim)
        camids = torch.randint(cameras, (len(pids),), generator=generator)
        for start in range(0, len(pids), 65536):  # noise in chunks: no second copy
            part = slice(start, start + 65536)
            out[part] = torch.randn(len(out[part]), dim, generator=generator).mul_(2.0)
            out[part] += shifts[camids[part]]
            known = pids[part] >= 0
            out[part][known] += centres[pids[part][known]]
        return out, camids.numpy()

    q_pids = torch.randint(identities, (queries,), generator=generator)
    g_pids = torch.cat((torch.randint(identities, (gallery,), generator=generator),
                        -1 - torch.arange(distractors)))  # a distractor is nobody queried
    (qf, q_camids), (gf, g_camids) = draw(q_pids), draw(g_pids)
    if distractors:  # distractors look like people: a centre of their own, far from all
        gf[gallery:] += torch.randn(distractors, dim, generator=generator)
    return qf, gf, q_pids.numpy(), g_pids.numpy(), q_camids, g_camids


class Row(NamedTuple):
    seconds: float
    peak_bytes: int
    cmc: Optional[List[float]]
    mAP: Optional[float]
    stopped: str = ''


def _score(variant: str, data, k1: int, k2: int, lambda_value: float):
    qf, gf, q_pids, g_pids, q_camids, g_camids = data
    if variant.startswith('msinet-reid'):
        from msinet_reid.retrieval import rank_metrics

        scores = rank_metrics(qf, gf, q_pids, g_pids, q_camids, g_camids,
                              rerank='re-ranked' in variant, k1=k1, k2=k2,
                              lambda_value=lambda_value)
        return scores['cmc'], scores['mAP']
    import torch.nn.functional as F
    from torchreid import metrics
    from torchreid.utils import re_ranking

    qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
    distance = metrics.compute_distance_matrix(qf, gf).numpy()
    if 're-ranked' in variant:
        distance = re_ranking(distance, metrics.compute_distance_matrix(qf, qf).numpy(),
                              metrics.compute_distance_matrix(gf, gf).numpy(), k1, k2,
                              lambda_value)
    return metrics.evaluate_rank(distance, q_pids, g_pids, q_camids, g_camids,
                                 use_cython=False)


def _run(variant: str, size: str, args, results) -> None:
    torch.set_num_threads(args.threads)
    _score(variant, features('quick', dim=32), args.k1, args.k2, args.lambda_value)  # warm
    data = features(size)
    results['baseline_kib'] = reset_peak()  # the peak from here on: ranking, not the data
    results['started'] = time.time()
    started = time.perf_counter()
    cmc, mean_ap = _score(variant, data, args.k1, args.k2, args.lambda_value)
    results['row'] = (time.perf_counter() - started,  # plain: Row is not importable there
                      (resident_kib('VmHWM') - results['baseline_kib']) * 1024,
                      [float(c) for c in cmc[:50]], float(mean_ap))


def measure(variant: str, size: str, args) -> Row:
    """One variant at one size in a fresh process, stopped past the ceiling for torchreid."""
    context = multiprocessing.get_context('fork')
    with context.Manager() as manager:
        results = manager.dict()
        process = context.Process(target=_run, args=(variant, size, args, results))
        process.start()
        ceiling = args.ceiling_gb * 2 ** 30 if variant.startswith('torchreid') else None
        peak = 0
        while process.is_alive():
            process.join(0.5)
            if ceiling is None or 'started' not in results:
                continue
            resident = _process_resident_bytes(process.pid) - results['baseline_kib'] * 1024
            peak = max(peak, resident)
            elapsed = time.time() - results['started']
            if resident > ceiling or elapsed > args.time_limit:
                os.kill(process.pid, signal.SIGKILL)
                process.join()
                why = (f'stopped above {args.ceiling_gb} GB' if resident > ceiling
                       else f'stopped after {args.time_limit} s')
                return Row(elapsed, peak, None, None, why)
        if 'row' in results:
            return Row(*results['row'])
        if variant.startswith('torchreid'):  # e.g. numpy's MemoryError before the ceiling
            return Row(0.0, peak, None, None, f'failed (exit code {process.exitcode})')
        raise RuntimeError(f'{variant} at {size} failed (exit code {process.exitcode})')


def _process_resident_bytes(pid: int) -> int:
    try:
        with open(f'/proc/{pid}/status') as status:
            line = next(line for line in status if line.startswith('VmRSS:'))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration):
        return 0


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, dict]]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', nargs='+', choices=[s for s in SIZES if s != 'quick'],
                        default=['market1501', 'msmt17', 'market1501+500k'])
    parser.add_argument('--variants', nargs='+', choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--k1', type=int, default=20)
    parser.add_argument('--k2', type=int, default=6)
    parser.add_argument('--lambda-value', type=float, default=0.3)
    parser.add_argument('--ceiling-gb', type=float, default=16,
                        help="resident memory above the features past which torchreid's "
                             'rows are stopped')
    parser.add_argument('--time-limit', type=float, default=900,
                        help="seconds after which torchreid's rows are stopped")
    parser.add_argument('--quick', action='store_true', help='tiny sizes, a smoke test')
    parser.add_argument('--out', type=Path, default=None, help='JSON file for the rows')
    args = parser.parse_args(argv)
    sizes = ['quick'] if args.quick else args.sizes

    print(f'768-d features, {args.threads} threads; re-ranking k1={args.k1}, k2={args.k2}, '
          f'lambda={args.lambda_value}; memory is the peak above the features')
    print(f'{"size":<16}{"variant":<24}{"time":>9}{"peak":>11}{"Rank-1":>8}{"mAP":>8}  '
          f'same figures as torchreid')
    table: Dict[str, Dict[str, dict]] = {}
    for size in sizes:
        rows = table.setdefault(size, {})
        for variant in args.variants:
            row = measure(variant, size, args)
            rows[variant] = row._asdict()
            reference = rows.get(variant.replace('msinet-reid', 'torchreid'), {})
            same = ''
            if variant.startswith('msinet-reid') and reference.get('cmc') and row.cmc:
                length = min(len(reference['cmc']), len(row.cmc))
                difference = max(np.abs(np.subtract(reference['cmc'][:length],
                                                    row.cmc[:length])).max(),
                                 abs(reference['mAP'] - row.mAP))
                rows[variant]['largest_difference'] = float(difference)
                same = f'largest difference {difference:.1e}'
            figures = (f'{row.cmc[0]:>8.1%}{row.mAP:>8.1%}' if row.cmc else f'{"-":>8}{"-":>8}')
            print(f'{size:<16}{variant:<24}{row.seconds:>8.1f}s{row.peak_bytes / 2**30:>9.2f}GB'
                  f'{figures}  {row.stopped or same}', flush=True)
    if args.out:
        args.out.write_text(json.dumps({'threads': args.threads, 'k1': args.k1, 'k2': args.k2,
                                        'lambda_value': args.lambda_value, 'rows': table},
                                       indent=1))
        plots.save_beside(args.out, plots.retrieval(table))
    return table


if __name__ == '__main__':
    main()
