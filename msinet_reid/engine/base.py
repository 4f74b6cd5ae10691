"""What every engine of this package adds to torchreid's ``Engine``: atomic checkpoints,
and running unchanged in one process or under ``torchrun`` with DistributedDataParallel."""
import builtins
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from .. import distributed
from .._torchreid import engine as torchreid_engine
from ..atomic import atomic_write
from ..data.samplers import IdentitySampler


class DistributedEngine(torchreid_engine.Engine):
    """torchreid's ``Engine`` that also runs under ``torchrun --nproc_per_node=N``.

    In a single process it behaves as torchreid's, except that identity-balanced
    batches come from :class:`~msinet_reid.data.samplers.IdentitySampler`: the same
    P x K draw, but seeded by ``(seed, epoch)``, so a resumed run sees the batches an
    uninterrupted one would. Under torchrun each process trains on its own identities
    of every global batch (the data manager's ``batch_size`` is the global batch),
    gradients are averaged by DDP, and only rank 0 prints, evaluates and writes
    checkpoints; the others wait for it. Checkpoints hold the bare model, so they resume
    with any number of processes.

    Subclasses call :meth:`parallel` on the model they train and use what it returns in
    ``forward_backward``; ``self.model`` stays the bare model.
    """

    def __init__(self, datamanager, use_gpu: bool = True, seed: int = 0) -> None:
        super().__init__(datamanager, use_gpu)
        self._frozen = {}
        self.dist = distributed.init_distributed()
        self.train_loader = shard_train_loader(self.train_loader, seed)
        if self.dist.world_size > 1:
            if not self.dist.is_main:
                builtins.print = _silent_print  # progress comes from rank 0 alone
                self.writer = _NullWriter()

    def parallel(self, model: nn.Module, sync_bn: bool = False, **ddp_options) -> nn.Module:
        """``model`` wrapped for DDP under torchrun, ``model`` itself otherwise.

        ``sync_bn`` converts BatchNorm to SyncBatchNorm (CUDA only, in place).
        ``ddp_options`` go to ``DistributedDataParallel``.
        """
        if self.dist.world_size == 1:
            return model
        if sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids = [self.dist.device] if self.dist.device.type == 'cuda' else None
        return DistributedDataParallel(model, device_ids=device_ids, **ddp_options)

    def register_model(self, name='model', model=None, optim=None, sched=None) -> None:
        super().register_model(name, model, optim, sched)
        self._frozen[name] = [p for p in model.parameters() if not p.requires_grad]

    def two_stepped_transfer_learning(self, *args, **kwargs) -> None:
        # torchreid's open_all_layers unfreezes every parameter each epoch; parameters the
        # model froze on purpose (MSINet's BNNeck shifts) stay frozen, as in the reference,
        # and must: DDP synchronises only the parameters that were trainable when it wrapped.
        super().two_stepped_transfer_learning(*args, **kwargs)
        for params in self._frozen.values():
            for param in params:
                param.requires_grad_(False)

    def train(self, *args, **kwargs):
        sampler = getattr(self.train_loader, 'sampler', None)
        if hasattr(sampler, 'set_epoch'):
            sampler.set_epoch(self.epoch)
        return super().train(*args, **kwargs)

    def test(self, *args, **kwargs):
        rank1 = super().test(*args, **kwargs) if self.dist.is_main else 0.0
        distributed.barrier()
        return rank1

    def save_model(self, epoch: int, rank1: float, save_dir: str, is_best: bool = False) -> None:
        """torchreid's checkpoint layout, written atomically by rank 0 alone."""
        if self.dist.is_main:
            for name in self.get_model_names():
                folder = Path(save_dir) / name
                state = self.checkpoint_state(name, epoch, rank1)
                paths = [folder / f'model.pth.tar-{epoch + 1}']
                if is_best:
                    paths.append(folder / 'model-best.pth.tar')
                for path in paths:
                    atomic_write(path, lambda tmp: torch.save(state, tmp))
                print(f'Checkpoint saved to "{paths[0]}"')
        distributed.barrier()

    def checkpoint_state(self, name: str, epoch: int, rank1: float) -> dict:
        """What a checkpoint holds; plain Python numbers so ``weights_only`` loading works."""
        scheduler = self._scheds[name]
        return {
            'state_dict': self._models[name].state_dict(),
            'epoch': epoch + 1,
            'rank1': float(rank1),
            'optimizer': self._optims[name].state_dict(),
            'scheduler': None if scheduler is None else scheduler.state_dict(),
        }


def shard_train_loader(loader: DataLoader, seed: int) -> DataLoader:
    """This process's share of torchreid's train ``loader``, drawn from ``seed``.

    Identity-balanced loaders become seeded :class:`IdentitySampler` loaders (in a single
    process too); other loaders are split with ``DistributedSampler`` under torchrun and
    returned as they are otherwise, as is anything that is not a ``DataLoader``.
    """
    if not isinstance(loader, DataLoader):
        return loader
    world_size, rank = distributed.get_world_size(), distributed.get_rank()
    num_instances = getattr(loader.sampler, 'num_instances', None)
    if num_instances is not None:
        sampler = IdentitySampler(loader.dataset.data, loader.batch_size, num_instances, seed,
                                  num_replicas=world_size, rank=rank)
        batch_size = sampler.local_batch_size
    elif world_size > 1:
        if loader.batch_size % world_size:
            raise ValueError(f'the global batch size {loader.batch_size} must divide evenly '
                             f'over {world_size} processes')
        sampler = DistributedSampler(loader.dataset, world_size, rank, seed=seed, drop_last=True)
        batch_size = loader.batch_size // world_size
    else:
        return loader
    return DataLoader(loader.dataset, batch_size, sampler=sampler, num_workers=loader.num_workers,
                      pin_memory=loader.pin_memory, drop_last=True)


def _silent_print(*args, **kwargs) -> None:
    """Does nothing: ``print`` and writer methods on processes other than rank 0."""


class _NullWriter:
    """Stands in for TensorBoard's writer on processes other than rank 0: every method
    (``add_scalar``, ``add_text``, ``close``, ...) does nothing."""

    def __getattr__(self, name: str):
        return _silent_print
