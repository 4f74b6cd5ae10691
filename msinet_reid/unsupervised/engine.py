"""Cluster Contrast unsupervised training as a torchreid Engine."""
from typing import Dict, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import distributed
from ..data.loading import resumable_loader
from ..data.samplers import IdentitySampler
from ..data.views import dataset_view
from ..engine.base import DistributedEngine
from ..evaluation import gather_features
from ..losses.memory import identity_centroids
from .clustering import cluster_pseudo_labels
from .memory import ClusterMemory


class ClusterContrastEngine(DistributedEngine):
    """Unsupervised training by Cluster Contrast (Dai et al., 2021) in torchreid's Engine.

    Each epoch starts by clustering the training images, whose identities are never
    read: eval-mode features, k-reciprocal Jaccard distance, DBSCAN. The clustered
    images, their cluster as identity, are that epoch's training set (identity-balanced
    batches of ``num_instances`` images per cluster); the un-clustered sit it out. The
    cluster centroids form a :class:`ClusterMemory`, which gives the loss and follows the
    batch features with momentum. With ``camera_aware=True`` the clustering removes each
    camera's mean feature first (:func:`~msinet_reid.unsupervised.camera_centred`): on a
    new domain, where features group by camera, this is what makes the clusters people.

    ``model`` must return L2-normalisable embeddings in train mode, e.g.
    ``MSINetEncoder(norm=True)`` from :mod:`msinet_reid.integrations`. Everything else
    (``run``, progress, testing) is torchreid's; checkpoints are written atomically and
    batches are drawn from ``seed`` (:class:`~msinet_reid.engine.DistributedEngine`).

    Under ``torchrun`` each process extracts the features of its share of the images,
    rank 0 clusters them all and sends the pseudo labels to every process, each process
    trains on its own clusters of every global batch (DDP averages the gradients), and
    every memory update uses the features of the whole global batch: the memory and the
    weights stay identical on every process, as in one process on the same global batch.

    Example::

        >>> model = MSINetEncoder('msinet', pretrained=True, norm=True)
        >>> engine = ClusterContrastEngine(datamanager, model, optimizer, scheduler)
        >>> engine.run(save_dir='log/cc', max_epoch=50)
    """

    def __init__(
        self, datamanager, model, optimizer, scheduler=None, use_gpu: bool = True,
        eps: float = 0.6, min_samples: int = 4, k1: int = 30, k2: int = 6,
        temperature: float = 0.05, momentum: float = 0.2, num_instances: int = 4,
        seed: int = 0, camera_aware: bool = False,
    ) -> None:
        super().__init__(datamanager, use_gpu, seed)
        self.seed = seed
        self.model = model
        self.network = self.parallel(model)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.register_model('model', model, optimizer, scheduler)
        self.clustering = dict(eps=eps, min_samples=min_samples, k1=k1, k2=k2)
        self.camera_aware = camera_aware
        self.temperature = temperature
        self.momentum = momentum
        self.num_instances = num_instances
        self.memory: Optional[ClusterMemory] = None
        self.pseudo_labels: Optional[np.ndarray] = None  # per training image, -1: outlier
        self.clustered_epoch = -1  # the epoch whose clusters the memory and loader hold
        loader = datamanager.train_loader
        self.train_set, self.batch_size, self.workers = (
            loader.dataset, loader.batch_size, loader.num_workers)

    def train(self, *args, **kwargs) -> None:
        if self.clustered_epoch != self.epoch:  # a run resumed mid-epoch has its clusters
            self.recluster()
        super().train(*args, **kwargs)

    def recluster(self) -> Dict[str, int]:
        """Pseudo-label the training images; new train loader and memory. Returns counts."""
        items = self.train_set.train
        self.log(f'=> Clustering the {len(items)} training images (epoch {self.epoch + 1})')
        features = self._features(items)
        labels = torch.empty(len(items), dtype=torch.long)
        if self.dist.is_main:
            cameras = torch.tensor([item[2] for item in items]) if self.camera_aware else None
            # Clustered where the model runs: the nearest-neighbour search is on the GPU there.
            labels = torch.from_numpy(cluster_pseudo_labels(
                features.to(self.device), cameras=cameras, **self.clustering)).long()
        labels = labels.to(distributed.communication_device())
        labels = distributed.broadcast(labels).cpu().numpy()
        num_clusters = int(labels.max()) + 1
        counts = {'images': len(items), 'clusters': num_clusters,
                  'outliers': int((labels < 0).sum())}
        self.log(f'=> Clustering: {counts["clusters"]} clusters from {counts["images"]} images, '
                 f'{counts["outliers"]} left out')
        needed = self.batch_size // self.num_instances
        if num_clusters < needed:
            raise RuntimeError(
                f'DBSCAN found {num_clusters} clusters, but a batch of {self.batch_size} '
                f'needs {needed} ({self.num_instances} images each). Raise eps (now '
                f'{self.clustering["eps"]}), lower min_samples or k1, start from pretrained '
                f'weights, or use a smaller batch'
            )
        keep = torch.from_numpy(labels >= 0)
        centroids = identity_centroids(
            features[keep], torch.from_numpy(labels[labels >= 0]).long(), num_clusters)
        self._use_clusters(labels, ClusterMemory(centroids, self.temperature, self.momentum),
                           self.epoch)
        return counts

    def _use_clusters(self, labels: np.ndarray, memory: ClusterMemory, epoch: int) -> None:
        """Train on the clustered images of ``labels`` against ``memory`` this ``epoch``."""
        self.pseudo_labels, self.clustered_epoch = labels, epoch
        # In eval mode its forward gives the loss alone: forward_backward updates it with
        # the features of the global batch.
        self.memory = memory.to(self.device).eval()
        pseudo = [(path, int(label), camid, dsetid)
                  for (path, _, camid, dsetid), label in zip(self.train_set.train, labels)
                  if label >= 0]
        sampler = IdentitySampler(pseudo, self.batch_size, self.num_instances, seed=self.seed,
                                  num_replicas=self.dist.world_size, rank=self.dist.rank)
        self.train_loader = resumable_loader(
            dataset_view(self.train_set, pseudo, self.train_set.transform), sampler,
            self.workers, pin_memory=self.device.type == 'cuda')

    def resume_state(self) -> dict:
        """The models' state, and this epoch's pseudo-labels and cluster memory."""
        clusters = None if self.memory is None else {
            'epoch': self.clustered_epoch, 'labels': torch.from_numpy(self.pseudo_labels),
            'memory': self.memory.state_dict()}
        return {**super().resume_state(), 'clusters': clusters}

    def load_resume_state(self, state: dict) -> None:
        super().load_resume_state(state)
        clusters = state['clusters']
        if clusters is not None:
            memory = ClusterMemory(clusters['memory']['features'], self.temperature,
                                   self.momentum)
            memory.load_state_dict(clusters['memory'])  # bit for bit, not re-normalised
            self._use_clusters(clusters['labels'].numpy(), memory, clusters['epoch'])

    def _features(self, items: list) -> torch.Tensor:
        """Eval-mode features of ``items``: each process extracts its share, all gather."""
        loader = DataLoader(dataset_view(self.train_set, items, self.datamanager.transform_te),
                            batch_size=self.batch_size, num_workers=self.workers)
        return gather_features(self.model, loader, self.device)[0]

    def forward_backward(self, data: dict) -> Dict[str, float]:
        images, labels = self.to_device(data['img'], data['pid'])
        features = self.network(images)
        loss = self.memory(features, labels)  # the memory is not updated here: see below
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        # The momentum update sees the whole global batch, so memories stay identical.
        self.memory.update(distributed.all_gather(features.detach()),
                           distributed.all_gather(labels))
        return {'loss': loss.item()}
