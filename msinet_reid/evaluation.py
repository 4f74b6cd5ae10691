"""Rank-1 / mAP of a model on a torchreid data manager's test sets, with torchreid's metrics.

The protocol of every figure this package reports: eval-mode features, L2-normalised,
ranked by Euclidean distance (the order cosine similarity gives), as the authors' code
does; torchreid's ``Engine.test(normalize_feature=True)`` computes the same.
"""
from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ._torchreid import metrics
from .data.images import datamanager_images, require_readable
from .data.layout import image_data_manager


@torch.no_grad()
def extract_features(
    model: nn.Module, loader: DataLoader, device: torch.device,
) -> Tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Eval-mode features, identities and cameras of every image a torchreid loader yields."""
    model.eval()
    features, pids, camids = [], [], []
    for batch in loader:
        features.append(model(batch['img'].to(device)).cpu())
        pids.append(batch['pid'].numpy())
        camids.append(batch['camid'].numpy())
    return torch.cat(features), np.concatenate(pids), np.concatenate(camids)


def evaluate(
    model: nn.Module, datamanager, device: torch.device = torch.device('cpu'),
    check: bool = True,
) -> Dict[str, Dict[str, float]]:
    """``{dataset: {'rank1': ..., 'mAP': ...}}`` over the data manager's test sets, after
    checking (unless ``check=False``) that each of their images decodes
    (``UnreadableImagesError`` names those that do not).

    Euclidean distance between L2-normalised features and torchreid's ``evaluate_rank``:
    the figures torchreid's ``Engine.test`` prints with ``normalize_feature=True``, which
    this package's engines use by default.

    Example::

        >>> results = evaluate(model, datamanager)
        >>> results['market1501']['mAP']
    """
    if check:
        require_readable(datamanager_images(datamanager, train=False))
    results = {}
    for name, loaders in datamanager.test_loader.items():
        qf, q_pids, q_camids = extract_features(model, loaders['query'], device)
        gf, g_pids, g_camids = extract_features(model, loaders['gallery'], device)
        distmat = metrics.compute_distance_matrix(
            F.normalize(qf, dim=1), F.normalize(gf, dim=1), 'euclidean').numpy()
        cmc, mean_ap = metrics.evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)
        results[name] = {'rank1': float(cmc[0]), 'mAP': float(mean_ap)}
    return results


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
