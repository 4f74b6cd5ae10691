"""Cluster Contrast unsupervised training as a torchreid Engine."""
from typing import Dict

import torch
from torch.utils.data import DataLoader

from ..data.samplers import IdentitySampler
from ..data.views import dataset_view
from ..engine.base import DistributedEngine
from ..evaluation import extract_features
from .clustering import cluster_pseudo_labels
from .memory import ClusterMemory


class ClusterContrastEngine(DistributedEngine):
    """Unsupervised training by Cluster Contrast (Dai et al., 2021) in torchreid's Engine.

    Each epoch starts by clustering the training images, whose identities are never
    read: eval-mode features, k-reciprocal Jaccard distance, DBSCAN. The clustered
    images, their cluster as identity, are that epoch's training set (identity-balanced
    batches of ``num_instances`` images per cluster); the un-clustered sit it out. The
    cluster centroids form a :class:`ClusterMemory`, which gives the loss and follows the
    batch features with momentum.

    ``model`` must return L2-normalisable embeddings in train mode, e.g.
    ``MSINetEncoder(norm=True)`` from :mod:`msinet_reid.integrations`. Everything else
    (``run``, progress, testing) is torchreid's; checkpoints are written atomically and
    batches are drawn from ``seed`` (:class:`~msinet_reid.engine.DistributedEngine`).
    It runs in a single process: clustering is not distributed.

    Example::

        >>> model = MSINetEncoder('msinet', pretrained=True, norm=True)
        >>> engine = ClusterContrastEngine(datamanager, model, optimizer, scheduler)
        >>> engine.run(save_dir='log/cc', max_epoch=50)
    """

    def __init__(
        self, datamanager, model, optimizer, scheduler=None, use_gpu: bool = True,
        eps: float = 0.6, min_samples: int = 4, k1: int = 30, k2: int = 6,
        temperature: float = 0.05, momentum: float = 0.2, num_instances: int = 4,
        seed: int = 0,
    ) -> None:
        super().__init__(datamanager, use_gpu, seed)
        if self.dist.world_size > 1:
            raise RuntimeError('ClusterContrastEngine runs in a single process; start it '
                               'with python, not torchrun')
        self.seed = seed
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.register_model('model', model, optimizer, scheduler)
        self.clustering = dict(eps=eps, min_samples=min_samples, k1=k1, k2=k2)
        self.temperature = temperature
        self.momentum = momentum
        self.num_instances = num_instances
        self.memory = None
        loader = datamanager.train_loader
        self.train_set, self.batch_size, self.workers = (
            loader.dataset, loader.batch_size, loader.num_workers)

    @property
    def device(self) -> torch.device:
        return torch.device('cuda' if self.use_gpu else 'cpu')

    def train(self, *args, **kwargs) -> None:
        self.recluster()
        super().train(*args, **kwargs)

    def recluster(self) -> Dict[str, int]:
        """Pseudo-label the training images; new train loader and memory. Returns counts."""
        items = self.train_set.train
        loader = DataLoader(
            dataset_view(self.train_set, items, self.datamanager.transform_te),
            batch_size=self.batch_size, num_workers=self.workers, shuffle=False)
        features, _, _ = extract_features(self.model, loader, self.device)
        # Clustered where the model runs: the nearest-neighbour search is on the GPU there.
        labels = cluster_pseudo_labels(features.to(self.device), **self.clustering)
        num_clusters = int(labels.max()) + 1
        counts = {'images': len(items), 'clusters': num_clusters,
                  'outliers': int((labels < 0).sum())}
        print(f'=> Clustering: {counts["clusters"]} clusters from {counts["images"]} images, '
              f'{counts["outliers"]} left out')
        needed = self.batch_size // self.num_instances
        if num_clusters < needed:
            raise RuntimeError(
                f'DBSCAN found {num_clusters} clusters, but a batch of {self.batch_size} '
                f'needs {needed} ({self.num_instances} images each). Raise eps (now '
                f'{self.clustering["eps"]}), lower min_samples or k1, start from pretrained '
                f'weights, or use a smaller batch'
            )
        pseudo = [(path, int(label), camid, dsetid)
                  for (path, _, camid, dsetid), label in zip(items, labels) if label >= 0]
        keep = torch.from_numpy(labels >= 0)
        # Sums of each cluster's features: the memory normalises them into mean directions.
        centroids = torch.zeros(num_clusters, features.shape[1]).index_add_(
            0, torch.from_numpy(labels[labels >= 0]).long(), features[keep])
        self.memory = ClusterMemory(centroids, self.temperature, self.momentum).to(self.device)
        self.train_loader = DataLoader(
            dataset_view(self.train_set, pseudo, self.train_set.transform),
            sampler=IdentitySampler(pseudo, self.batch_size, self.num_instances,
                                    seed=self.seed),
            batch_size=self.batch_size, num_workers=self.workers, drop_last=True,
            pin_memory=self.use_gpu)
        return counts

    def forward_backward(self, data: dict) -> Dict[str, float]:
        images, labels = data['img'], data['pid']
        if self.use_gpu:
            images, labels = images.cuda(), labels.cuda()
        loss = self.memory(self.model(images), labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {'loss': loss.item()}
