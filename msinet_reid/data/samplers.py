"""Samplers whose batches are a function of ``(seed, epoch)``: seeded, resumable in the
middle of an epoch, and shardable over processes."""
from collections import defaultdict
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
from torch.utils.data import Sampler


class PlannedSampler(Sampler[int]):
    """A sampler that draws a whole epoch of global batches from ``(seed, epoch)``
    (:meth:`epoch_plan`) and gives this process its slice of each: with ``num_replicas``
    processes, process ``rank`` takes rows ``rank * b`` to ``(rank + 1) * b`` of every
    global batch, ``b`` being :attr:`local_batch_size`, so the union of the processes'
    batches at every step is the batch a single process sees. Call :meth:`set_epoch` at
    the start of every epoch, as with ``DistributedSampler``.
    """

    def __init__(self, batch_size: int, seed: int, num_replicas: int, rank: int) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f'rank must be in 0..{num_replicas - 1}, got {rank}')
        self.batch_size = batch_size
        self.seed, self.epoch = seed, 0
        self.num_replicas, self.rank = num_replicas, rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_plan(self) -> List[List[int]]:
        """Every batch of this epoch, for all processes together."""
        raise NotImplementedError

    @property
    def local_batch_size(self) -> int:
        """Images per batch of this process."""
        return self.batch_size // self.num_replicas

    def own_batches(self) -> List[List[int]]:
        """This process's share of every batch of the epoch."""
        size = self.local_batch_size
        return [batch[self.rank * size:(self.rank + 1) * size] for batch in self.epoch_plan()]

    def __iter__(self) -> Iterator[int]:
        return (index for batch in self.own_batches() for index in batch)

    def __len__(self) -> int:
        return sum(len(batch) for batch in self.own_batches())


class ShuffleSampler(PlannedSampler):
    """Every sample once an epoch, in an order drawn from ``(seed, epoch)``, in full global
    batches of ``batch_size`` (the remainder sits that epoch out).

    Example::

        >>> sampler = ShuffleSampler(len(dataset), 64, seed=0, num_replicas=2, rank=1)
        >>> loader = DataLoader(dataset, sampler.local_batch_size, sampler=sampler)
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(batch_size, seed, num_replicas, rank)
        if batch_size % num_replicas:
            raise ValueError(f'the global batch size {batch_size} must divide evenly over '
                             f'{num_replicas} processes')
        if num_samples < batch_size:
            raise ValueError(f'a batch of {batch_size} needs as many samples, but the data '
                             f'has {num_samples}; lower the batch size')
        self.num_samples = num_samples

    def epoch_plan(self) -> List[List[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        usable = self.num_samples - self.num_samples % self.batch_size
        return order[:usable].reshape(-1, self.batch_size).tolist()


class IdentitySampler(PlannedSampler):
    """P x K sampling: each batch holds ``batch_size // num_instances`` identities with
    ``num_instances`` images each, as torchreid's ``RandomIdentitySampler`` draws them.

    Unlike torchreid's sampler, the order is a function of ``(seed, epoch)`` alone, so a
    resumed run replays it exactly. With ``num_replicas > 1`` every process draws the same
    plan of global batches and takes its own identities of each: the processes see
    disjoint P/N x K batches whose union at every step is the batch a single process
    would see (:class:`PlannedSampler`).

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
        super().__init__(batch_size, seed, num_replicas, rank)
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

    def epoch_plan(self) -> List[List[int]]:
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


class SeededBatches(Sampler[List[Tuple[int, int]]]):
    """A batch sampler over a :class:`PlannedSampler` that pairs every index with the seed
    of its augmentation, and can start an epoch at any batch.

    The seed of a sample is drawn from ``(seed, epoch, position in the global epoch)``,
    so a batch's images and their augmentations depend on neither the number of loader
    workers, the number of processes nor where a run was resumed. Read the pairs with
    :class:`~msinet_reid.data.loading.SeededItems`.

    Example::

        >>> batches = SeededBatches(IdentitySampler(items, 64, 4, seed=0))
        >>> batches.set_epoch(3, start=120)  # resume epoch 3 at its 121st batch
        >>> loader = DataLoader(SeededItems(dataset), batch_sampler=batches)
    """

    def __init__(self, sampler: PlannedSampler) -> None:
        self.sampler = sampler
        self.start = 0
        self._plan: Tuple[int, List[List[Tuple[int, int]]]] = (-1, [])

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Draw the batches of ``epoch``, the next pass beginning with batch ``start``."""
        self.sampler.set_epoch(epoch)
        if not 0 <= start <= self.num_batches:
            raise ValueError(f'epoch {epoch} has {self.num_batches} batches; cannot start at '
                             f'batch {start}')
        self.start = start

    def _batches(self) -> List[List[Tuple[int, int]]]:
        """This process's batches of the epoch, with seeds (drawn once an epoch)."""
        sampler = self.sampler
        if self._plan[0] != sampler.epoch:
            plan = sampler.epoch_plan()
            seeds = np.random.default_rng([sampler.seed, sampler.epoch, _AUGMENTATION]).integers(
                2 ** 63, size=(len(plan), sampler.batch_size)).tolist()
            size = sampler.local_batch_size
            rows = slice(sampler.rank * size, (sampler.rank + 1) * size)
            self._plan = (sampler.epoch, [list(zip(batch[rows], batch_seeds[rows]))
                                          for batch, batch_seeds in zip(plan, seeds)])
        return self._plan[1]

    @property
    def num_batches(self) -> int:
        """Batches in the whole epoch."""
        return len(self._batches())

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        return iter(self._batches()[self.start:])

    def __len__(self) -> int:
        """Batches of the next pass: from :attr:`start` to the end of the epoch."""
        return self.num_batches - self.start


_AUGMENTATION = 1  # the stream of augmentation seeds, apart from the plan's (seed, epoch)
