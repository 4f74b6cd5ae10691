"""Time and peak memory of Cluster Contrast's clustering step (k-reciprocal Jaccard distance
+ DBSCAN): msinet-reid's sparse computation against the dense definition.

The features are 768-d, like MSINet's, with identity structure: each identity has a
random centre, each camera a shift, each image noise; the image counts are those of
synthetic-sized sets, Market-1501's train set (12,936) and MSMT17's (32,621)::

    python benchmarks/clustering.py                  # N = 2000, 8000, 12936, 32621
    python benchmarks/clustering.py --sizes 2000     # one size
    python benchmarks/clustering.py --quick          # tiny, a few seconds

Each variant runs in a fresh process with ``--threads`` threads (2 by default) and its peak
resident memory reset once the features exist (as in ``sam_memory.py``), so the figure is
what the clustering itself needs. The dense variant runs up to ``--dense-max`` images
(its N x N arrays need about 45 bytes per pair); where both run, the labels must match.
"""
import argparse
import multiprocessing
import time
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import msinet_reid  # noqa: F401
from msinet_reid.unsupervised import jaccard_distance

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


def identity_features(n: int, images_per_identity: int, dim: int = 768, cameras: int = 6,
                      seed: int = 0) -> Tensor:
    """``n`` features of ``n / images_per_identity`` identities seen by ``cameras`` cameras."""
    generator = torch.Generator().manual_seed(seed)
    identities = -(-n // images_per_identity)
    centres = torch.randn(identities, dim, generator=generator)
    shifts = 0.6 * torch.randn(cameras, dim, generator=generator)
    pids = torch.arange(n) % identities
    camids = torch.randint(cameras, (n,), generator=generator)
    noise = torch.randn(n, dim, generator=generator)
    return centres[pids] + shifts[camids] + 0.8 * noise


class Result(NamedTuple):
    peak_bytes: int
    seconds: float
    labels: np.ndarray


def _cluster(variant: str, features: Tensor, args) -> np.ndarray:
    from sklearn.cluster import DBSCAN

    if variant == 'dense':
        distance = dense_jaccard_distance(features, args.k1, args.k2)
    else:
        distance = jaccard_distance(features, args.k1, args.k2)
    return DBSCAN(eps=args.eps, min_samples=4, metric='precomputed').fit_predict(distance)


def _measure(variant: str, n: int, args) -> Result:
    from sam_memory import _release_freed_memory_to_the_os, _resident_kib

    torch.set_num_threads(args.threads)
    _release_freed_memory_to_the_os()
    _cluster(variant, identity_features(64, 8), args)  # page in the code the variant runs
    features = identity_features(n, IMAGES_PER_IDENTITY.get(n, 16))
    with open('/proc/self/clear_refs', 'w') as clear_refs:
        clear_refs.write('5')  # reset the peak resident set size to the current one
    baseline = _resident_kib('VmRSS')
    started = time.perf_counter()
    labels = _cluster(variant, features, args)
    seconds = time.perf_counter() - started
    return Result((_resident_kib('VmHWM') - baseline) * 1024, seconds, labels)


def measure(variant: str, n: int, args) -> Result:
    """Jaccard distance + DBSCAN of ``variant`` on ``n`` features, in a fresh process."""
    with multiprocessing.get_context('fork').Pool(1) as pool:
        return pool.apply(_measure, (variant, n, args))


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=list(IMAGES_PER_IDENTITY))
    parser.add_argument('--dense-max', type=int, default=12936,
                        help='largest N the dense variant runs at')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--k1', type=int, default=30)
    parser.add_argument('--k2', type=int, default=6)
    parser.add_argument('--eps', type=float, default=0.6)
    parser.add_argument('--quick', action='store_true', help='N = 300, for a smoke test')
    args = parser.parse_args(argv)
    sizes = [300] if args.quick else args.sizes

    print(f'Jaccard distance (k1={args.k1}, k2={args.k2}) + DBSCAN (eps={args.eps}), '
          f'768-d features, {args.threads} threads')
    print(f'{"N":>7} {"dense s":>9} {"dense MiB":>10} {"sparse s":>9} {"sparse MiB":>11} '
          f'{"time ratio":>11} {"memory ratio":>13}  clusters')
    for n in sizes:
        sparse = measure('sparse', n, args)
        clusters = f'{sparse.labels.max() + 1} ({(sparse.labels < 0).sum()} outliers)'
        if n > args.dense_max:
            print(f'{n:>7} {"-":>9} {"-":>10} {sparse.seconds:>9.1f} '
                  f'{sparse.peak_bytes / 2**20:>11.0f} {"-":>11} {"-":>13}  {clusters}')
            continue
        dense = measure('dense', n, args)
        if not np.array_equal(dense.labels, sparse.labels):
            raise RuntimeError(f'N = {n}: the dense and sparse labels differ')
        print(f'{n:>7} {dense.seconds:>9.1f} {dense.peak_bytes / 2**20:>10.0f} '
              f'{sparse.seconds:>9.1f} {sparse.peak_bytes / 2**20:>11.0f} '
              f'{sparse.seconds / dense.seconds:>11.3f} '
              f'{sparse.peak_bytes / max(dense.peak_bytes, 1):>13.3f}  {clusters} (same)')


if __name__ == '__main__':
    main()
