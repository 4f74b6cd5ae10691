"""Peak memory of test-set feature extraction: ``msinet_reid.evaluation.extract_features``
(features written into arrays allocated once) against a list of each batch's features
concatenated at the end, as torchreid's engine extracts them (``_feature_extraction``).

MSINet in eval mode on batches of 64 random 96x48 crops, 2 threads, each row in a new
Python process (not a forked one, whose thread pool may differ); the peak and the
resident memory left afterwards, above what the process held before the extraction. At
this size the model's temporaries (under glibc's 32 MiB mmap threshold) live in glibc's
heap, where each batch's small result, kept in a list, pins what lies below it::

    python benchmarks/extraction.py                      # 100 and 400 batches
    python benchmarks/extraction.py --batches 1000       # 64,000 crops
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

import msinet_reid  # noqa: F401  (registers MSINet with torchreid)
from msinet_reid.evaluation import extract_features
from torchreid import models

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import peak_above, reset_peak, resident_kib  # noqa: E402

BATCH = 64


class RandomCrops:
    """A loader's interface: ``batches`` batches of random crops, and ``dataset``."""

    def __init__(self, batches: int, height: int = 96, width: int = 48) -> None:
        self.batches, self.size = batches, (height, width)
        self.dataset = range(batches * BATCH)

    def __iter__(self):
        generator = torch.Generator().manual_seed(0)
        for _ in range(self.batches):
            yield {'img': torch.randn(BATCH, 3, *self.size, generator=generator),
                   'pid': torch.zeros(BATCH, dtype=torch.long),
                   'camid': torch.zeros(BATCH, dtype=torch.long)}


@torch.no_grad()
def concatenated(model: torch.nn.Module, loader: RandomCrops) -> torch.Tensor:
    """torchreid's way (and this package's before): each batch's features, identities and
    cameras in lists, concatenated at the end."""
    model.eval()
    features, pids, camids = [], [], []
    for batch in loader:
        features.append(model(batch['img']).cpu())
        pids.append(batch['pid'].numpy())
        camids.append(batch['camid'].numpy())
    np.concatenate(pids), np.concatenate(camids)
    return torch.cat(features)


def _measure(variant: str, batches: int, threads: int) -> Dict[str, float]:
    torch.set_num_threads(threads)
    model = models.build_model('msinet', 10, pretrained=False)
    extract_features(model, RandomCrops(1), torch.device('cpu'))  # warm
    baseline = reset_peak()
    if variant == 'msinet-reid':
        features = extract_features(model, RandomCrops(batches), torch.device('cpu'))[0]
    else:
        features = concatenated(model, RandomCrops(batches))
    return {'peak_mib': peak_above(baseline) / 2 ** 20,
            'kept_mib': (resident_kib('VmRSS') - baseline) / 1024,
            'features_mib': features.numel() * features.element_size() / 2 ** 20}


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, dict]]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batches', type=int, nargs='+', default=[100, 400])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--quick', action='store_true', help='4 batches, a smoke test')
    parser.add_argument('--out', type=Path, default=None, help='JSON file for the rows')
    parser.add_argument('--row', nargs=2, metavar=('VARIANT', 'BATCHES'), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.row:  # one row, in this process: what main runs in a new one
        print(json.dumps(_measure(args.row[0], int(args.row[1]), args.threads)))
        return {}
    sizes = [4] if args.quick else args.batches

    print(f'MSINet features of batches of {BATCH} crops, {args.threads} threads; MiB above '
          'the process before the extraction')
    print(f'{"crops":>8} {"variant":<26}{"features":>9}{"peak":>8}{"kept":>8}')
    rows: Dict[str, Dict[str, dict]] = {}
    for batches in sizes:
        for variant in ('list + torch.cat (torchreid)', 'msinet-reid'):
            result = subprocess.run(
                [sys.executable, __file__, '--row', variant, str(batches), '--threads',
                 str(args.threads)], capture_output=True, text=True, check=True)
            row = json.loads(result.stdout.splitlines()[-1])
            rows.setdefault(str(batches * BATCH), {})[variant] = row
            print(f'{batches * BATCH:>8,} {variant:<26}{row["features_mib"]:>9.1f}'
                  f'{row["peak_mib"]:>8.0f}{row["kept_mib"]:>8.0f}')
    if args.out:
        args.out.write_text(json.dumps({'threads': args.threads, 'rows': rows}, indent=1))
    return rows


if __name__ == '__main__':
    main()
