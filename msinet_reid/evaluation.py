"""Rank-1 / mAP / mINP of a model on a torchreid data manager's test sets.

The protocol of every figure this package reports: eval-mode features, L2-normalised,
ranked by Euclidean distance (the order cosine similarity gives), as the authors' code
does; torchreid's ``Engine.test(normalize_feature=True)`` computes the same. The ranking
is :func:`msinet_reid.retrieval.rank_metrics`: torchreid's figures, in blocks of queries,
so that MSMT17 and Market-1501+500k evaluate (and re-rank) on one machine. Under torchrun,
each process extracts its share of the images.
"""
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from . import distributed
from .atomic import PathLike
from .data.images import datamanager_images, require_readable
from .data.layout import image_data_manager
from .retrieval import draw_ranked_lists, rank_metrics


@torch.no_grad()
def extract_features(
    model: nn.Module, loader: DataLoader, device: torch.device,
) -> Tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Eval-mode features, identities and cameras of every image a torchreid loader yields."""
    model.eval()
    # Written into arrays allocated once (for the loader's dataset, doubled if it yields
    # more), not a list concatenated at the end: each batch's result kept between the
    # model's temporaries pins glibc's heap (see retrieval.blocks.Filling); 25,600 crops
    # held 1.4 GB for 75 MiB of features (benchmarks/extraction.py).
    capacity = len(getattr(loader, 'dataset', ()))
    features = pids = camids = None
    filled = 0
    for batch in loader:
        output = model(batch['img'].to(device)).cpu()
        stop = filled + len(output)
        if features is None or stop > len(features):
            grown = max(stop, capacity, 2 * filled)
            features = _grown(features, filled, grown, output)
            pids = _grown(pids, filled, grown, torch.as_tensor(batch['pid']))
            camids = _grown(camids, filled, grown, torch.as_tensor(batch['camid']))
        features[filled:stop] = output
        pids[filled:stop], camids[filled:stop] = batch['pid'], batch['camid']
        filled = stop
    if features is None:
        raise ValueError('the loader yielded no images: check the dataset\'s query and '
                         'gallery folders')
    return features[:filled], pids[:filled].numpy(), camids[:filled].numpy()


def _grown(values: Optional[torch.Tensor], filled: int, size: int,
           like: torch.Tensor) -> torch.Tensor:
    """A tensor of ``size`` rows shaped like ``like``'s, holding ``values[:filled]``."""
    grown = like.new_empty(size, *like.shape[1:])
    if values is not None:
        grown[:filled] = values[:filled]
    return grown


def gather_features(
    model: nn.Module, loader: DataLoader, device: torch.device,
) -> Tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """:func:`extract_features` of the whole loader, each process under torchrun taking a
    contiguous share of its images; every process receives all of them, in order."""
    world_size, rank = distributed.get_world_size(), distributed.get_rank()
    if world_size == 1:
        return extract_features(model, loader, device)
    total = len(loader.dataset)
    share = -(-total // world_size)
    mine = range(min(total, rank * share), min(total, (rank + 1) * share))
    features, pids, camids = extract_features(model, DataLoader(
        Subset(loader.dataset, mine), batch_size=loader.batch_size,
        num_workers=loader.num_workers, pin_memory=loader.pin_memory), device)
    # all_gather takes equal shapes: each share is padded to the largest, then cut.
    padded = [torch.zeros(share, *values.shape[1:], dtype=values.dtype)
              for values in (features, torch.from_numpy(pids), torch.from_numpy(camids))]
    for pad, values in zip(padded, (features, torch.from_numpy(pids),
                                    torch.from_numpy(camids))):
        pad[:len(values)] = values
    gathered = [distributed.all_gather(pad.to(distributed.communication_device()))
                .cpu()[:total] for pad in padded]
    return gathered[0], gathered[1].numpy(), gathered[2].numpy()


def evaluate(
    model: nn.Module, datamanager, device: torch.device = torch.device('cpu'),
    check: bool = True, rerank: bool = False, visrank: Optional[PathLike] = None,
    visrank_topk: int = 10, **rank_options,
) -> Dict[str, Dict[str, float]]:
    """``{dataset: {'rank1': ..., 'mAP': ..., 'mINP': ...}}`` over the data manager's test
    sets, after checking (unless ``check=False``) that each of their images decodes
    (``UnreadableImagesError`` names those that do not).

    The figures of :func:`~msinet_reid.retrieval.rank_metrics` on L2-normalised features
    (torchreid's ``evaluate_rank``, and with ``rerank=True`` its ``re_ranking``);
    ``rank_options`` go to it (``k1``, ``k2``, ``lambda_value``, ...). Under torchrun
    every process extracts its share of the images and gets the figures. ``visrank``, a
    folder, also draws each query's ``visrank_topk`` best-ranked gallery images there
    (``<visrank>/<dataset>/<query>.png``, :func:`~msinet_reid.retrieval.draw_ranked_lists`).

    Example::

        >>> results = evaluate(model, datamanager)
        >>> results['market1501']['mAP']
    """
    if check:
        require_readable(datamanager_images(datamanager, train=False))
    results = {}
    for name, loaders in datamanager.test_loader.items():
        query = gather_features(model, loaders['query'], device)
        gallery = gather_features(model, loaders['gallery'], device)
        scores = rank_metrics(query[0], gallery[0], query[1], gallery[1], query[2], gallery[2],
                              rerank=rerank, topk=visrank_topk if visrank else 0,
                              **rank_options)
        results[name] = {'rank1': float(scores['cmc'][0]), 'mAP': scores['mAP'],
                         'mINP': scores['mINP']}
        if visrank and distributed.is_main_process():
            subsets = datamanager.test_dataset[name]
            draw_ranked_lists([item[0] for item in subsets['query']],
                              [item[0] for item in subsets['gallery']], scores['ranked'],
                              query[1], gallery[1], Path(visrank) / name,
                              height=datamanager.height, width=datamanager.width)
    return results


def results_table(results: Dict[str, Dict[str, float]], title: str = '') -> str:
    """``results`` (label -> :func:`evaluate`'s scores) as a table of Rank-1, mAP and mINP.

    >>> print(results_table({'trained': {'rank1': 0.8, 'mAP': 0.7, 'mINP': 0.4}}))
                          Rank-1     mAP    mINP
    trained                80.0%   70.0%   40.0%
    """
    lines = [f'{title:<20}{"Rank-1":>8}{"mAP":>8}{"mINP":>8}']
    for label, scores in results.items():
        lines.append(f'{label:<20}{scores["rank1"]:>8.1%}{scores["mAP"]:>8.1%}'
                     f'{scores["mINP"]:>8.1%}')
    return '\n'.join(lines)


def query_gallery(root: str, dataset: str, height: int, width: int, batch_size: int = 128,
                  workers: int = 2, use_gpu: bool = False):
    """A torchreid ``ImageDataManager`` for ``dataset`` under ``root``, to pass to ``evaluate``.

    Its test images are preprocessed as torchreid tests (resized, ImageNet-normalised).

    Example::

        >>> evaluate(model, query_gallery('reid-data', 'market1501', 256, 128))
    """
    return image_data_manager(
        root=root, sources=dataset, targets=dataset, height=height, width=width,
        batch_size_test=batch_size, workers=workers, use_gpu=use_gpu,
    )
