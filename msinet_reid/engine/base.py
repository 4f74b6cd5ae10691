"""What every engine of this package adds to torchreid's ``Engine``: atomic checkpoints
that resume exactly, training on the model's own device, and running unchanged in one
process or under ``torchrun`` with DistributedDataParallel."""
import datetime
import gc
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from torch.utils.data import DataLoader, DistributedSampler

from .. import distributed
from .._torchreid import engine as torchreid_engine
from .._torchreid import utils
from ..atomic import atomic_write
from ..data.images import datamanager_images, require_readable
from ..data.samplers import IdentitySampler
from ..evaluation import gather_features
from ..retrieval import rank_metrics


class DistributedEngine(torchreid_engine.Engine):
    """torchreid's ``Engine`` that also runs under ``torchrun --nproc_per_node=N``.

    In a single process it behaves as torchreid's, except that identity-balanced
    batches come from :class:`~msinet_reid.data.samplers.IdentitySampler`: the same
    P x K draw, but seeded by ``(seed, epoch)``, so a resumed run sees the batches an
    uninterrupted one would. Under torchrun each process trains on its own identities
    of every global batch (the data manager's ``batch_size`` is the global batch),
    gradients are averaged by DDP, and only rank 0 prints progress, evaluates and writes
    checkpoints; the others wait for it. Checkpoints hold the bare model, so they resume
    with any number of processes.

    Evaluation ranks L2-normalised features by default (``run(normalize_feature=True)``),
    the protocol of :mod:`msinet_reid.evaluation` and of the authors' code.

    The engine trains on the device of its model's parameters (``cuda:1`` included):
    batches go there, and ``run`` makes it the current CUDA device for torchreid's code.

    Subclasses call :meth:`parallel` on the model they train and use ``self.network`` in
    ``forward_backward``; ``self.model`` stays the bare model. Parameters that no term of
    the subclass's loss reads are handed to :meth:`freeze` before :meth:`parallel`, so
    that DDP synchronises exactly the parameters the loss trains.

    Example::

        >>> class MyEngine(DistributedEngine):
        ...     def __init__(self, datamanager, model, optimizer):
        ...         super().__init__(datamanager)
        ...         self.model, self.optimizer = model, optimizer
        ...         self.register_model('model', model, optimizer)
        ...         self.parallel(model)
        ...     def forward_backward(self, data):
        ...         imgs, pids = self.to_device(*self.parse_data_for_train(data))
        ...         ...
    """

    def __init__(self, datamanager, use_gpu: bool = True, seed: int = 0) -> None:
        super().__init__(datamanager, use_gpu)
        self._frozen = {}
        self._ddp: Optional[tuple] = None  # (module, options, trainable parameters)
        self.network: Optional[nn.Module] = None
        self.results: Dict[str, Dict[str, float]] = {}  # of the last test(), on rank 0
        self.device = torch.device('cpu')
        self.dist = distributed.init_distributed()
        self.train_loader = shard_train_loader(self.train_loader, seed)
        if not self.dist.is_main:
            self.writer = _NullWriter()  # TensorBoard events come from rank 0 alone

    def log(self, message: str) -> None:
        """Print ``message`` on rank 0; the other processes stay quiet."""
        if self.dist.is_main:
            print(message)

    def register_model(self, name='model', model=None, optim=None, sched=None) -> None:
        super().register_model(name, model, optim, sched)
        self._frozen[name] = [p for p in model.parameters() if not p.requires_grad]
        self.device = next(model.parameters()).device

    def freeze(self, params: Iterable[nn.Parameter], name: str = 'model') -> None:
        """Keep ``params`` out of training for good: torchreid's ``open_all_layers`` does
        not reopen them, and DDP neither waits for their gradients nor averages them."""
        for param in params:
            param.requires_grad_(False)
            self._frozen[name].append(param)

    def to_device(self, *tensors: torch.Tensor):
        """``tensors`` on the engine's device."""
        return tuple(t.to(self.device, non_blocking=True) for t in tensors)

    def parallel(self, model: nn.Module, sync_bn: bool = False, **ddp_options) -> nn.Module:
        """Set ``self.network``: ``model`` wrapped for DDP under torchrun, ``model`` itself
        otherwise, and return it.

        ``sync_bn`` converts BatchNorm to SyncBatchNorm (CUDA only, in place).
        ``ddp_options`` go to ``DistributedDataParallel``. DDP synchronises the parameters
        that are trainable now; when torchreid's ``fixbase_epoch`` changes which ones are,
        the model is wrapped again.
        """
        if self.dist.world_size == 1:
            self.network = model
            return model
        if sync_bn:
            if self.device.type != 'cuda':
                raise ValueError('sync_bn=True needs CUDA (SyncBatchNorm has no CPU kernels); '
                                 'train on GPUs or pass sync_bn=False')
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self._ddp = (model, ddp_options, None)
        return self._wrap()

    def _wrap(self) -> nn.Module:
        model, options, wrapped = self._ddp
        trainable = [p for p in model.parameters() if p.requires_grad]
        if wrapped is not None and len(trainable) == len(wrapped) and all(
                a is b for a, b in zip(trainable, wrapped)):
            return self.network
        self.network = None
        gc.collect()  # the old wrapper's gradient hooks go with it
        device_ids = [self.device] if self.device.type == 'cuda' else None
        self.network = DistributedDataParallel(model, device_ids=device_ids, **options)
        self._ddp = (model, options, trainable)
        return self.network

    def two_stepped_transfer_learning(self, *args, **kwargs) -> None:
        # torchreid's open_all_layers unfreezes every parameter each epoch; parameters the
        # model or the engine froze on purpose (MSINet's BNNeck shifts, heads no loss term
        # reads) stay frozen, as in the reference.
        super().two_stepped_transfer_learning(*args, **kwargs)
        for params in self._frozen.values():
            for param in params:
                param.requires_grad_(False)
        if self._ddp is not None:
            self._wrap()  # fixbase_epoch may have changed the trainable parameters

    def train(self, print_freq: int = 10, *args, **kwargs):
        sampler = getattr(self.train_loader, 'sampler', None)
        if hasattr(sampler, 'set_epoch'):
            sampler.set_epoch(self.epoch)
        if not self.dist.is_main:
            print_freq = sys.maxsize  # torchreid's progress lines come from rank 0 alone
        elif print_freq <= 0:  # once an epoch, at its last batch (epochs differ in length)
            print_freq = max(1, len(self.train_loader))
        return super().train(print_freq, *args, **kwargs)

    def run(self, save_dir: str = 'log', max_epoch: int = 0, start_epoch: int = 0,
            print_freq: int = 10, fixbase_epoch: int = 0, open_layers=None,
            start_eval: int = 0, eval_freq: int = -1, test_only: bool = False,
            dist_metric: str = 'euclidean', normalize_feature: bool = True,
            visrank: bool = False, visrank_topk: int = 10, use_metric_cuhk03: bool = False,
            ranks: Sequence[int] = (1, 5, 10, 20), rerank: bool = False) -> None:
        """torchreid's ``run``, with its arguments and loop: train, test every
        ``eval_freq`` epochs and at the end, save checkpoints. Beyond torchreid's:

        - every image of the data manager is decoded first
          (:func:`~msinet_reid.data.images.require_readable`: torchreid's loader would
          retry a damaged file forever);
        - ``print_freq=0`` prints progress once an epoch, at its last batch;
        - every evaluation, periodic, final or ``test_only``, ranks at dataset scale
          (:meth:`test`) and honours ``rerank`` (torchreid's applies it to ``test_only``
          alone); features are L2-normalised unless ``normalize_feature=False``;
        - under torchrun only rank 0 prints.
        """
        require_readable(datamanager_images(self.datamanager))
        if visrank and not test_only:
            raise ValueError('visrank=True draws ranked lists of an evaluation only: pass '
                             'test_only=True with it')
        evaluation = dict(dist_metric=dist_metric, normalize_feature=normalize_feature,
                          visrank=visrank, visrank_topk=visrank_topk, save_dir=save_dir,
                          use_metric_cuhk03=use_metric_cuhk03, ranks=ranks, rerank=rerank)
        # torchreid moves tensors with .cuda() (its cross-entropy, its dense evaluation):
        # make that the model's device for the run.
        with torch.cuda.device(self.device) if self.device.type == 'cuda' else nullcontext():
            if test_only:
                self.test(**evaluation)
                return
            if self.writer is None:
                self.writer = SummaryWriter(log_dir=save_dir)
            started = time.time()
            self.start_epoch, self.max_epoch = start_epoch, max_epoch
            self.log('=> Start training')
            for self.epoch in range(start_epoch, max_epoch):
                self.train(print_freq=print_freq, fixbase_epoch=fixbase_epoch,
                           open_layers=open_layers)
                done = self.epoch + 1
                if done >= start_eval and eval_freq > 0 and done % eval_freq == 0 \
                        and done != max_epoch:
                    self.save_model(self.epoch, self.test(**evaluation), save_dir)
            if max_epoch > start_epoch:
                self.log('=> Final test')
                self.save_model(self.epoch, self.test(**evaluation), save_dir)
            self.log(f'Elapsed {datetime.timedelta(seconds=round(time.time() - started))}')
            self.writer.close()

    def test(self, dist_metric: str = 'euclidean', normalize_feature: bool = False,
             visrank: bool = False, visrank_topk: int = 10, save_dir: str = '',
             use_metric_cuhk03: bool = False, ranks: Sequence[int] = (1, 5, 10, 20),
             rerank: bool = False) -> float:
        """torchreid's ``test`` at dataset scale: every process extracts its share of the
        test images (:func:`~msinet_reid.evaluation.gather_features`), and rank 0 scores
        them with :func:`~msinet_reid.retrieval.rank_metrics`, a block of queries at a
        time, re-ranking included (``rerank=True``), printing mINP beside mAP and CMC.
        ``visrank`` and ``use_metric_cuhk03`` run torchreid's own dense code on rank 0.
        Returns Rank-1 on rank 0 (0 on the others), where ``self.results`` then holds
        ``{dataset: {'rank1', 'mAP', 'mINP'}}`` of this evaluation."""
        if visrank or use_metric_cuhk03:
            rank1 = super().test(dist_metric, normalize_feature, visrank, visrank_topk,
                                 save_dir, use_metric_cuhk03, list(ranks),
                                 rerank) if self.dist.is_main else 0.0
            distributed.barrier()
            return rank1
        if dist_metric not in ('euclidean', 'cosine'):
            raise ValueError(f"dist_metric must be 'euclidean' or 'cosine', got {dist_metric!r}")
        self.set_model_mode('eval')
        rank1 = 0.0
        for name, loaders in self.test_loader.items():
            domain = 'source' if name in self.datamanager.sources else 'target'
            self.log(f'##### Evaluating {name} ({domain}) #####')
            query = gather_features(self.model, loaders['query'], self.device)
            gallery = gather_features(self.model, loaders['gallery'], self.device)
            if self.dist.is_main:
                # Cosine distance ranks (and re-ranks) as the Euclidean one of unit features.
                scores = rank_metrics(
                    query[0], gallery[0], query[1], gallery[1], query[2], gallery[2],
                    rerank=rerank, normalize=normalize_feature or dist_metric == 'cosine',
                    max_rank=max(50, *ranks))
                rank1 = float(scores['cmc'][0])
                self.results[name] = {'rank1': rank1, 'mAP': scores['mAP'],
                                      'mINP': scores['mINP']}
                print(f'** Results **{" (re-ranked)" if rerank else ""}\n'
                      f'mAP: {scores["mAP"]:.1%}\nmINP: {scores["mINP"]:.1%}\nCMC curve')
                for r in ranks:
                    print(f'Rank-{r:<3}: {scores["cmc"][r - 1]:.1%}')
                for metric, value in (('rank1', rank1), ('mAP', scores['mAP']),
                                      ('mINP', scores['mINP'])):
                    if self.writer is not None:  # run() makes it; test() may come alone
                        self.writer.add_scalar(f'Test/{name}/{metric}', value, self.epoch)
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
        """What a checkpoint holds; plain Python numbers so ``weights_only`` loading works.

        Subclasses add the state of their own (a gradient scaler) and restore it in
        :meth:`load_checkpoint_state`.
        """
        scheduler = self._scheds[name]
        return {
            'state_dict': self._models[name].state_dict(),
            'epoch': epoch + 1,
            'rank1': float(rank1),
            'optimizer': self._optims[name].state_dict(),
            'scheduler': None if scheduler is None else scheduler.state_dict(),
        }

    def load_checkpoint_state(self, state: dict) -> None:
        """Restore what :meth:`checkpoint_state` added beyond torchreid's layout."""

    def resume(self, path, name: str = 'model') -> int:
        """Continue from a checkpoint of this engine; returns the epoch to start from.

        Example::

            >>> start_epoch = engine.resume('log/msinet/model/model.pth.tar-40')
            >>> engine.run(save_dir='log/msinet', max_epoch=60, start_epoch=start_epoch)
        """
        start_epoch = utils.resume_from_checkpoint(
            str(path), self._models[name], self._optims[name], self._scheds[name])
        self.load_checkpoint_state(utils.load_checkpoint(str(path)))
        return start_epoch


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


class _NullWriter:
    """Stands in for TensorBoard's writer on processes other than rank 0: every method
    (``add_scalar``, ``add_text``, ``close``, ...) does nothing."""

    def __getattr__(self, name: str):
        return _nothing


def _nothing(*args, **kwargs) -> None:
    """What every method of :class:`_NullWriter` does."""
