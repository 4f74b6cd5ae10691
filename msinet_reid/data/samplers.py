"""Identity-balanced sampling that is seeded, resumable and can be sharded over processes."""
from collections import defaultdict
from typing import Dict, Iterator, List, Sequence

import numpy as np
from torch.utils.data import Sampler


class IdentitySampler(Sampler[int]):
    """P x K sampling: each batch holds ``batch_size // num_instances`` identities with
    ``num_instances`` images each, as torchreid's ``RandomIdentitySampler`` draws them.

    Unlike torchreid's sampler, the order is a function of ``(seed, epoch)`` alone, so a
    resumed run replays it exactly. With ``num_replicas > 1`` every process draws the same
    plan of global batches and takes its own identities of each: the processes see
    disjoint P/N x K batches whose union at every step is the batch a single process
    would see. Call :meth:`set_epoch` at the start of every epoch, as with
    ``DistributedSampler``.

    Args:
        data_source: torchreid samples ``(path, pid, camid, ...)``.
        batch_size: images per global batch (all processes together), a multiple of
            ``num_instances * num_replicas``.
        num_instances: images per identity in a batch (K).
        seed: seed shared by all processes.
        num_replicas, rank: how many processes share the plan, and which one this is.

    Example::

        >>> sampler = IdentitySampler(datamanager.train_set.train, 64, 4, seed=0)
        >>> loader = DataLoader(datamanager.train_set, 64, sampler=sampler)
        >>> for epoch in range(max_epoch):
        ...     sampler.set_epoch(epoch)
    """

    def __init__(
        self, data_source: Sequence, batch_size: int, num_instances: int, seed: int = 0,
        num_replicas: int = 1, rank: int = 0,
    ) -> None:
        if num_instances < 1 or batch_size % num_instances:
            raise ValueError(f'batch_size ({batch_size}) must be a positive multiple of '
                             f'num_instances ({num_instances})')
        if not 0 <= rank < num_replicas:
            raise ValueError(f'rank must be in 0..{num_replicas - 1}, got {rank}')
        if (batch_size // num_instances) % num_replicas:
            raise ValueError(
                f'a batch of {batch_size // num_instances} identities cannot be split evenly '
                f'over {num_replicas} processes; choose batch_size as a multiple of '
                f'num_instances x {num_replicas}')
        self.indices_by_pid: Dict[int, List[int]] = defaultdict(list)
        for index, sample in enumerate(data_source):
            self.indices_by_pid[sample[1]].append(index)
        self.pids_per_batch = batch_size // num_instances
        if len(self.indices_by_pid) < self.pids_per_batch:
            raise ValueError(
                f'a batch of {batch_size} with {num_instances} images per identity needs '
                f'{self.pids_per_batch} identities, but the data has '
                f'{len(self.indices_by_pid)}; lower batch_size or raise num_instances')
        self.num_instances = num_instances
        self.seed, self.epoch = seed, 0
        self.num_replicas, self.rank = num_replicas, rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_plan(self) -> List[List[int]]:
        """Every batch of this epoch, for all processes together."""
        rng = np.random.default_rng([self.seed, self.epoch])
        groups: Dict[int, List[np.ndarray]] = {}
        for pid, indices in self.indices_by_pid.items():
            indices = np.asarray(indices)
            if len(indices) < self.num_instances:  # too few images: repeat some
                indices = rng.choice(indices, self.num_instances, replace=True)
            indices = rng.permutation(indices)
            usable = len(indices) - len(indices) % self.num_instances
            groups[pid] = list(indices[:usable].reshape(-1, self.num_instances))
        batches, available = [], sorted(groups)
        while len(available) >= self.pids_per_batch:
            chosen = [available[i] for i in
                      rng.choice(len(available), self.pids_per_batch, replace=False)]
            batch = []
            for pid in chosen:
                batch.extend(int(i) for i in groups[pid].pop())
                if not groups[pid]:
                    available.remove(pid)
            batches.append(batch)
        return batches

    @property
    def local_batch_size(self) -> int:
        """Images per batch of this process."""
        return self.pids_per_batch // self.num_replicas * self.num_instances

    def _own_batches(self) -> List[List[int]]:
        size = self.local_batch_size
        return [batch[self.rank * size:(self.rank + 1) * size] for batch in self.epoch_plan()]

    def __iter__(self) -> Iterator[int]:
        return (index for batch in self._own_batches() for index in batch)

    def __len__(self) -> int:
        return sum(len(batch) for batch in self._own_batches())
