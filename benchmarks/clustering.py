"""Time and peak memory of Cluster Contrast's clustering step (k-reciprocal Jaccard distance
+ DBSCAN): msinet-reid's sparse computation against the dense definition.

The features are 768-d, like MSINet's, with identity structure: each identity has a
random centre, each camera a shift, each image noise; the image counts are those of
synthetic-sized sets, Market-1501's train set (12,936) and MSMT17's (32,621)::

    python benchmarks/clustering.py                  # N = 2000, 8000, 12936, 32621
    python benchmarks/clustering.py --sizes 2000     # one size
    python benchmarks/clustering.py --quick          # tiny, a few seconds

Each size runs twice: on features with well-separated identities (noise 0.8 per
dimension, the identities' own spread being 1) and on noisy ones (16 images per identity,
noise 3.0: what an early epoch of unsupervised training sees, where k-reciprocal sets
turn sparse and encodings overlap widely). Each variant runs in a fresh process with
``--threads`` threads (2 by default), ``--repeats`` times; its peak resident memory is
reset once the features exist, so the figure is what the clustering itself needs, as a
user's process sees it: with glibc's default allocator settings, whose heap may keep
memory after it is freed (the largest peak of the repeats is reported). The dense
variant runs up to ``--dense-max`` images (its N x N arrays need about 45 bytes per
pair); where both run, the labels must match.
"""
import argparse
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import msinet_reid  # noqa: F401
from msinet_reid.unsupervised import cluster_pseudo_labels

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plots  # noqa: E402
from memory import in_fresh_process, peak_above, reset_peak  # noqa: E402

IMAGES_PER_IDENTITY = {2000: 16, 8000: 16, 12936: 17, 32621: 31}  # Market ~17, MSMT ~31


def _reciprocal_neighbours(rank: np.ndarray, i: int, k: int) -> np.ndarray:
    """The k nearest neighbours of ``i`` that have ``i`` among their own k nearest."""
    forward = rank[i, :k + 1]
    return forward[(rank[forward, :k + 1] == i).any(axis=1)]


def dense_jaccard_distance(features: Tensor, k1: int = 20, k2: int = 6) -> np.ndarray:
    """The definition, on dense ``(N, N)`` arrays: the reference for the sparse version.

    Same arguments as :func:`msinet_reid.unsupervised.jaccard_distance`; returns every
    pair's distance (1 where the encodings do not overlap). Memory is ``O(N^2)``.
    """
    n = len(features)
    k1 = min(k1, n - 1)
    features = F.normalize(features.detach().float().cpu(), dim=1)
    distance = (2 - 2 * features @ features.t()).clamp_min_(0)  # squared Euclidean
    rank = torch.topk(distance, k1 + 1, dim=1, largest=False).indices.numpy()
    distance = distance.numpy()

    encoding = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        neighbours = _reciprocal_neighbours(rank, i, k1)
        expanded = [neighbours]
        for candidate in neighbours:
            theirs = _reciprocal_neighbours(rank, candidate, int(round(k1 / 2)))
            if len(np.intersect1d(theirs, neighbours)) > 2 / 3 * len(theirs):
                expanded.append(theirs)
        expanded = np.unique(np.concatenate(expanded))
        weights = np.exp(-distance[i, expanded])
        encoding[i, expanded] = weights / weights.sum()
    if k2 > 1:
        encoding = encoding[rank[:, :min(k2, k1 + 1)]].mean(axis=1)

    # Rows sum to one, so sum(max(a, b)) = 2 - sum(min(a, b)).
    columns = np.ascontiguousarray(encoding.T)
    overlap = np.empty((n, n), dtype=np.float32)
    for i in range(n):
        nonzero = np.flatnonzero(encoding[i])
        overlap[i] = np.minimum(encoding[i, nonzero, None], columns[nonzero]).sum(axis=0)
    return np.clip(1 - overlap / (2 - overlap), 0, 1)


NOISY = dict(images_per_identity=16, noise=3.0)


def identity_features(n: int, images_per_identity: int, dim: int = 768, cameras: int = 6,
                      seed: int = 0, noise: float = 0.8) -> Tensor:
    """``n`` features of ``n / images_per_identity`` identities seen by ``cameras`` cameras,
    each image with Gaussian ``noise`` (the identities' centres have spread 1)."""
    generator = torch.Generator().manual_seed(seed)
    identities = -(-n // images_per_identity)
    centres = torch.randn(identities, dim, generator=generator)
    shifts = 0.6 * torch.randn(cameras, dim, generator=generator)
    pids = torch.arange(n) % identities
    camids = torch.randint(cameras, (n,), generator=generator)
    return centres[pids] + shifts[camids] + noise * torch.randn(n, dim, generator=generator)


class Result(NamedTuple):
    peak_bytes: int
    seconds: float
    labels: np.ndarray


def _cluster(variant: str, features: Tensor, args) -> np.ndarray:
    """The pseudo labels: msinet-reid's ``cluster_pseudo_labels`` (what Cluster Contrast
    runs), or DBSCAN on the dense N x N Jaccard distances."""
    from sklearn.cluster import DBSCAN

    if variant == 'sparse':
        return cluster_pseudo_labels(features, eps=args.eps, min_samples=4, k1=args.k1,
                                     k2=args.k2)
    distance = dense_jaccard_distance(features, args.k1, args.k2)
    return DBSCAN(eps=args.eps, min_samples=4, metric='precomputed').fit_predict(distance)


def _measure(variant: str, n: int, noisy: bool, args) -> tuple:
    torch.set_num_threads(args.threads)
    _cluster(variant, identity_features(64, 8), args)  # page in the code the variant runs
    features = (identity_features(n, **NOISY) if noisy
                else identity_features(n, IMAGES_PER_IDENTITY.get(n, 16)))
    baseline = reset_peak()
    started = time.perf_counter()
    labels = _cluster(variant, features, args)
    seconds = time.perf_counter() - started
    return peak_above(baseline), seconds, labels  # plain: Result is not importable there


def measure(variant: str, n: int, noisy: bool, args) -> Result:
    """Jaccard distance + DBSCAN of ``variant`` on ``n`` features, each repeat in a fresh
    process: the largest peak, the median time."""
    runs = [Result(*in_fresh_process(_measure, variant, n, noisy, args))
            for _ in range(args.repeats)]
    return Result(max(run.peak_bytes for run in runs),
                  float(np.median([run.seconds for run in runs])), runs[0].labels)


def main(argv: Optional[list] = None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=list(IMAGES_PER_IDENTITY))
    parser.add_argument('--dense-max', type=int, default=12936,
                        help='largest N the dense variant runs at')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--k1', type=int, default=30)
    parser.add_argument('--k2', type=int, default=6)
    parser.add_argument('--eps', type=float, default=0.6)
    parser.add_argument('--repeats', type=int, default=3, help='fresh processes per row')
    parser.add_argument('--quick', action='store_true', help='N = 300, for a smoke test')
    parser.add_argument('--out', type=Path, default=None, help='JSON file for the rows')
    args = parser.parse_args(argv)
    sizes = [300] if args.quick else args.sizes

    print(f'Jaccard distance (k1={args.k1}, k2={args.k2}) + DBSCAN (eps={args.eps}), '
          f'768-d features, {args.threads} threads, largest peak of {args.repeats} runs')
    print(f'{"N":>7} {"features":<9}{"dense s":>9} {"dense MiB":>10} {"sparse s":>9} '
          f'{"sparse MiB":>11} {"time ratio":>11} {"memory ratio":>13}  clusters')
    rows = []
    for n in sizes:
        for noisy in (False, True):
            sparse = measure('sparse', n, noisy, args)
            row = {'n': n, 'features': 'noisy' if noisy else 'separated',
                   'sparse_s': sparse.seconds, 'sparse_mib': sparse.peak_bytes / 2 ** 20,
                   'clusters': int(sparse.labels.max() + 1),
                   'outliers': int((sparse.labels < 0).sum())}
            dense = measure('dense', n, noisy, args) if n <= args.dense_max else None
            if dense is not None:
                if not np.array_equal(dense.labels, sparse.labels):
                    raise RuntimeError(f'N = {n}: the dense and sparse labels differ')
                row.update(dense_s=dense.seconds, dense_mib=dense.peak_bytes / 2 ** 20)
            rows.append(row)
            compared = ('-', '-', '-', '-') if dense is None else (
                f'{dense.seconds:.1f}', f'{row["dense_mib"]:.0f}',
                f'{sparse.seconds / dense.seconds:.3f}',
                f'{sparse.peak_bytes / max(dense.peak_bytes, 1):.3f}')
            print(f'{n:>7} {row["features"]:<9}{compared[0]:>9} {compared[1]:>10} '
                  f'{sparse.seconds:>9.1f} {row["sparse_mib"]:>11.0f} {compared[2]:>11} '
                  f'{compared[3]:>13}  {row["clusters"]} ({row["outliers"]} outliers)'
                  f'{"" if dense is None else " (same)"}', flush=True)
    if args.out:
        args.out.write_text(json.dumps({'threads': args.threads, 'repeats': args.repeats,
                                        'rows': rows}, indent=1))
        plots.save_beside(args.out, plots.scaling(rows, 'n', {
            'sparse, separated': ['sparse_s', 'sparse_mib', 'separated'],
            'sparse, noisy': ['sparse_s', 'sparse_mib', 'noisy'],
            'dense, separated': ['dense_s', 'dense_mib', 'separated'],
            'dense, noisy': ['dense_s', 'dense_mib', 'noisy'],
        }, f'Jaccard distance + DBSCAN, {args.threads} threads'))
    return rows


if __name__ == '__main__':
    main()
