"""Training loaders whose batches are a function of ``(seed, epoch, batch)``: the same
images with the same augmentations whatever the number of workers or processes, and
resumable at any batch without reading the batches before it."""
import signal
from typing import Tuple

import torch
from torch.utils.data import DataLoader, Dataset

from ..random_state import seeded
from .samplers import PlannedSampler, SeededBatches

# The signals that ask training to stop (see msinet_reid.engine.preemption): the main
# process handles them and shuts its loader workers down itself. Windows has no SIGUSR1.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ('SIGTERM', 'SIGINT', 'SIGUSR1')
                     if hasattr(signal, name))


class SeededItems(Dataset):
    """``dataset`` read at ``(index, seed)`` keys, each item under its own seed
    (:func:`~msinet_reid.random_state.seeded`): its random transforms draw the same in
    any process, and the process's own generators are left as they were.

    Attributes other than ``__getitem__`` and ``__len__`` are ``dataset``'s.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Tuple[int, int]):
        index, seed = key
        with seeded(seed):
            return self.dataset[index]

    def __getattr__(self, name: str):
        if name == 'dataset':  # not set yet (unpickling in a worker)
            raise AttributeError(name)
        return getattr(self.dataset, name)


def resumable_loader(dataset: Dataset, sampler: PlannedSampler, num_workers: int = 0,
                     pin_memory: bool = False) -> DataLoader:
    """A ``DataLoader`` over ``dataset`` that draws its batches with ``sampler``, every
    image under the seed of its place in the epoch (:class:`SeededBatches`). Start an
    epoch with ``loader.batch_sampler.set_epoch(epoch, start=batch)``.

    The loader's own generator is seeded, so creating its iterator leaves torch's global
    generator alone; the workers ignore the stop signals, which the training process
    handles (a worker killed by SIGTERM would abort the batch being finished).

    Example::

        >>> loader = resumable_loader(datamanager.train_set, IdentitySampler(items, 64, 4))
        >>> loader.batch_sampler.set_epoch(epoch)
    """
    return DataLoader(SeededItems(dataset), batch_sampler=SeededBatches(sampler),
                      num_workers=num_workers, pin_memory=pin_memory,
                      worker_init_fn=_ignore_stop_signals,
                      generator=torch.Generator().manual_seed(sampler.seed))


def _ignore_stop_signals(worker_id: int) -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
