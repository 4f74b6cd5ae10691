"""What every engine of this package adds to torchreid's ``Engine``: atomic checkpoints,
training that survives preemption and resumes exactly (mid-epoch included), training on
the model's own device, and running unchanged in one process or under ``torchrun`` with
DistributedDataParallel."""
import datetime
import gc
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from torch.utils.data import DataLoader

from .. import distributed, random_state
from .._torchreid import engine as torchreid_engine
from .._torchreid import utils
from ..atomic import PathLike, atomic_write
from ..data.images import datamanager_images, require_readable
from ..data.loading import resumable_loader
from ..data.samplers import IdentitySampler, SeededBatches, ShuffleSampler
from ..evaluation import gather_features
from ..retrieval import rank_metrics
from .preemption import (
    DEFAULT_MINUTES, CheckpointSchedule, Position, StopSignals, TrainingInterrupted, prune,
    resume_checkpoints, resume_path,
)

RESUME_FORMAT = 1  # the layout of resume checkpoints


class DistributedEngine(torchreid_engine.Engine):
    """torchreid's ``Engine`` that also runs under ``torchrun --nproc_per_node=N``.

    In a single process it behaves as torchreid's, except that batches are drawn from
    ``seed``: identity-balanced ones by :class:`~msinet_reid.data.samplers.IdentitySampler`
    (torchreid's P x K draw), others by :class:`~msinet_reid.data.samplers.ShuffleSampler`,
    and every image's augmentation from its own seed
    (:func:`~msinet_reid.data.loading.resumable_loader`). So training survives
    preemption: :meth:`run` writes resume checkpoints every few minutes and on SIGTERM,
    SIGINT or SIGUSR1, and :meth:`resume` continues from one mid-epoch, bit for bit
    as the uninterrupted run (same threads and number of processes). Under torchrun each
    process trains on its own identities of every global batch (the data manager's
    ``batch_size`` is the global batch),
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
        self.seed = seed
        self.train_loader = shard_train_loader(self.train_loader, seed)
        self.save_dir: Optional[Path] = None  # run()'s
        self.iteration = 0  # batches trained since the run began, resumed runs included
        self.start_batch = 0  # where the next epoch begins (not 0 in a resumed epoch)
        self._resumed_at: Optional[Position] = None
        self._schedule = CheckpointSchedule(0, 0)  # run() sets the intervals
        self._stop: Optional[StopSignals] = None
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

    def train(self, print_freq: int = 10, fixbase_epoch: int = 0, open_layers=None) -> None:
        """torchreid's epoch of training, from batch :attr:`start_batch` (0 unless the run
        was resumed in the middle of this epoch), with torchreid's progress lines (on rank
        0; ``print_freq=0``: once an epoch) and TensorBoard scalars. After every batch a
        resume checkpoint is written when one is due or a stop signal came."""
        batches = self.train_loader.batch_sampler
        if not isinstance(batches, SeededBatches):
            raise TypeError('the train loader must draw its batches with SeededBatches: build '
                            'it with msinet_reid.data.loading.resumable_loader')
        batches.set_epoch(self.epoch, start=self.start_batch)
        self.start_batch = 0
        self.set_model_mode('train')
        self.two_stepped_transfer_learning(self.epoch, fixbase_epoch, open_layers)
        self.num_batches = batches.num_batches
        if print_freq <= 0:  # once an epoch, at its last batch (epochs differ in length)
            print_freq = max(1, self.num_batches)
        losses, batch_time, data_time = utils.MetricMeter(), utils.AverageMeter(), \
            utils.AverageMeter()
        end = time.time()
        for self.batch_idx, data in enumerate(self.train_loader, start=batches.start):
            data_time.update(time.time() - end)
            losses.update(self.forward_backward(data))
            batch_time.update(time.time() - end)
            done = self.batch_idx + 1
            if done % print_freq == 0:
                left = self.num_batches - done + (self.max_epoch - self.epoch - 1) * \
                    self.num_batches
                eta = datetime.timedelta(seconds=int(batch_time.avg * left))
                self.log(f'epoch: [{self.epoch + 1}/{self.max_epoch}][{done}/{self.num_batches}]'
                         f'\ttime {batch_time.val:.3f} ({batch_time.avg:.3f})\tdata '
                         f'{data_time.val:.3f} ({data_time.avg:.3f})\teta {eta}\t{losses}\t'
                         f'lr {self.get_current_lr():.6f}')
            step = self.epoch * self.num_batches + self.batch_idx
            if self.writer is not None:  # run() makes it; train() may come alone
                for name, value in (('time', batch_time.avg), ('data', data_time.avg),
                                    *((n, m.avg) for n, m in losses.meters.items()),
                                    ('lr', self.get_current_lr())):
                    self.writer.add_scalar(f'Train/{name}', value, step)
            self.iteration += 1
            self.checkpoint_if_due((self.epoch, done), count=True)
            end = time.time()
        self.update_lr()

    def run(self, save_dir: str = 'log', max_epoch: int = 0, start_epoch: int = 0,
            print_freq: int = 10, fixbase_epoch: int = 0, open_layers=None,
            start_eval: int = 0, eval_freq: int = -1, test_only: bool = False,
            dist_metric: str = 'euclidean', normalize_feature: bool = True,
            visrank: bool = False, visrank_topk: int = 10, use_metric_cuhk03: bool = False,
            ranks: Sequence[int] = (1, 5, 10, 20), rerank: bool = False,
            checkpoint_every: int = 0, checkpoint_minutes: float = DEFAULT_MINUTES) -> None:
        """torchreid's ``run``, with its arguments and loop: train, test every
        ``eval_freq`` epochs and at the end, save checkpoints. Beyond torchreid's:

        - every image of the data manager is decoded first
          (:func:`~msinet_reid.data.images.require_readable`: torchreid's loader would
          retry a damaged file forever);
        - a resume checkpoint (``<save_dir>/resume/``, the last two kept) is written
          every ``checkpoint_every`` iterations and every ``checkpoint_minutes`` minutes
          (0 turns either off), and when training ends; it holds everything the rest of
          the run depends on, so :meth:`resume` continues mid-epoch exactly;
        - SIGTERM, SIGINT or SIGUSR1 finish the current batch (or evaluation), write a
          resume checkpoint and raise :class:`~.preemption.TrainingInterrupted`, which
          exits with code 128 + signal; under torchrun every process stops at the same
          iteration;
        - the final evaluation runs whenever ``max_epoch > 0``, also for a run resumed at
          its end;
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
            self.save_dir = Path(save_dir)
            self._schedule = CheckpointSchedule(checkpoint_every, checkpoint_minutes)
            if self._resumed_at is None or self._resumed_at[0] != start_epoch:
                self.start_batch = 0
            started = time.time()
            self.start_epoch, self.max_epoch = start_epoch, max_epoch
            self.log('=> Start training')
            with StopSignals() as self._stop:
                for self.epoch in range(start_epoch, max_epoch):
                    self.train(print_freq=print_freq, fixbase_epoch=fixbase_epoch,
                               open_layers=open_layers)
                    done = self.epoch + 1
                    evaluate = done >= start_eval and eval_freq > 0 and done % eval_freq == 0 \
                        and done != max_epoch
                    if evaluate:
                        self.save_model(self.epoch, self.test(**evaluation), save_dir)
                    # Beside every epoch checkpoint a resume one, which also holds the
                    # random generators.
                    self.checkpoint_if_due((done, 0), force=evaluate or done == max_epoch)
                if max_epoch > 0:
                    self.epoch = max(self.epoch, max_epoch - 1)
                    self.log('=> Final test')
                    self.save_model(self.epoch, self.test(**evaluation), save_dir)
            self.log(f'Elapsed {datetime.timedelta(seconds=round(time.time() - started))}')
            self.writer.close()

    def checkpoint_if_due(self, position: Position, count: bool = False,
                          force: bool = False) -> None:
        """Write a resume checkpoint at ``position`` (the next batch to train) when one is
        due by count (``count``: an iteration just ended) or time, when ``force``d, or
        when a stop signal came, and then stop. Under torchrun the
        processes agree first, so all of them write and stop at the same iteration."""
        stop = self._stop.signum if self._stop is not None else 0
        due = self._schedule.due(self.iteration if count else None)
        if distributed.is_distributed():
            flags = torch.tensor([stop, int(due)], device=distributed.communication_device())
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            stop, due = (int(f) for f in flags.tolist())
        if stop or due or force:
            path = self.save_resume_checkpoint(position)
            if stop:
                interrupted = TrainingInterrupted(stop, path)
                self.log(f'=> {interrupted}')
                self.writer.flush()  # TensorBoard's last scalars too
                raise interrupted

    def save_resume_checkpoint(self, position: Position) -> Path:
        """Write the resume checkpoint of ``position`` into ``<save_dir>/resume/``
        atomically, keeping the last two; return its path. Every process takes part (their
        random generators are saved, one state each); rank 0 writes."""
        generators = [random_state.get_state()]
        if distributed.is_distributed():
            generators = [None] * self.dist.world_size
            dist.all_gather_object(generators, random_state.get_state())
        path = resume_path(self.save_dir, *position)
        if self.dist.is_main:
            state = {'format': RESUME_FORMAT, 'epoch': position[0], 'batch': position[1],
                     'iteration': self.iteration, 'engine': self.resume_state(),
                     'rng': generators}
            atomic_write(path, lambda tmp: torch.save(state, tmp))
            prune(self.save_dir)
            print(f'Resume checkpoint saved to "{path}"')
        self._schedule.written()
        distributed.barrier()
        return path

    def resume_state(self) -> dict:
        """Everything of the engine that the rest of the run depends on, beyond the
        position and the random generators: every registered model with its optimizer,
        scheduler and what :meth:`checkpoint_state` adds. Subclasses extend it, and
        :meth:`load_resume_state`."""
        return {'models': {name: self.checkpoint_state(name, self.epoch, 0.0)
                           for name in self.get_model_names()}}

    def load_resume_state(self, state: dict) -> None:
        """Restore what :meth:`resume_state` returned."""
        for name, saved in state['models'].items():
            self._models[name].load_state_dict(saved['state_dict'])
            self._optims[name].load_state_dict(saved['optimizer'])
            if self._scheds[name] is not None:
                self._scheds[name].load_state_dict(saved['scheduler'])
            self.load_checkpoint_state(saved)

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
        ``{dataset: {'rank1', 'mAP', 'mINP'}}`` of this evaluation.

        Test loaders draw from torch's generator (their workers' seeds): it is forked, so
        that training's random stream does not depend on when it is evaluated."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == 'cuda' else []):
            return self._test(dist_metric, normalize_feature, visrank, visrank_topk, save_dir,
                              use_metric_cuhk03, ranks, rerank)

    def _test(self, dist_metric: str, normalize_feature: bool, visrank: bool,
              visrank_topk: int, save_dir: str, use_metric_cuhk03: bool, ranks: Sequence[int],
              rerank: bool) -> float:
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
            if not len(loaders['query'].dataset):  # data of one's own, to train on alone
                self.log(f'=> {name} has no query images: not evaluated')
                continue
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

    def resume(self, path: PathLike = 'auto', save_dir: Optional[PathLike] = None,
               name: str = 'model') -> int:
        """Continue from a checkpoint; returns the epoch to pass to :meth:`run` as
        ``start_epoch``.

        ``path`` is a resume checkpoint (``<save_dir>/resume/*.pth.tar``: training goes on
        at the batch where it stopped, exactly as it would have), an epoch checkpoint
        (torchreid's layout, also of earlier versions: from the start of the next epoch),
        or ``'auto'``: the newest of either kind in ``save_dir``, or nothing, and then the
        run starts afresh (returns 0).

        Example::

            >>> start_epoch = engine.resume('auto', save_dir='log/msinet')
            >>> engine.run(save_dir='log/msinet', max_epoch=60, start_epoch=start_epoch)
        """
        if str(path) == 'auto':
            if save_dir is None:
                raise ValueError("resume('auto') looks for checkpoints in save_dir: pass "
                                 "the save_dir that run() writes to")
            path = self.latest_checkpoint(save_dir, name)
            if path is None:
                self.log(f'=> No checkpoint in {save_dir}: training starts afresh')
                return 0
        state = torch.load(path, map_location='cpu', weights_only=True)
        if state.get('format') != RESUME_FORMAT:
            epoch = self.load_epoch_checkpoint(path, name)
            self._resumed_at = (epoch, 0)
            return epoch
        self.load_resume_state(state['engine'])
        generators = state['rng']
        if len(generators) != self.dist.world_size:
            self.log(f'=> {path} was written by {len(generators)} processes, this run has '
                     f'{self.dist.world_size}: training goes on, but not bit for bit')
        random_state.set_state(generators[self.dist.rank % len(generators)])
        self.iteration = state['iteration']
        self._resumed_at = (state['epoch'], state['batch'])
        self.start_batch = state['batch']
        self.log(f'=> Resumed from {path}: epoch {state["epoch"] + 1}, batch '
                 f'{state["batch"] + 1}')
        return state['epoch']

    def load_epoch_checkpoint(self, path: PathLike, name: str = 'model') -> int:
        """Load an epoch checkpoint of model ``name`` (torchreid's layout); returns the
        epoch it ends."""
        start_epoch = utils.resume_from_checkpoint(
            str(path), self._models[name], self._optims[name], self._scheds[name])
        self.load_checkpoint_state(utils.load_checkpoint(str(path)))
        return start_epoch

    def epoch_checkpoints(self, save_dir: PathLike, name: str = 'model') -> List[Tuple[int, Path]]:
        """The epoch checkpoints of model ``name`` in ``save_dir``, with the epoch each ends."""
        found = []
        for path in (Path(save_dir) / name).glob('model.pth.tar-*'):
            epoch = path.name.rsplit('-', 1)[1]
            if epoch.isdigit():
                found.append((int(epoch), path))
        return found

    def latest_checkpoint(self, save_dir: PathLike, name: str = 'model') -> Optional[Path]:
        """The checkpoint in ``save_dir`` that reaches furthest: a resume checkpoint, or an
        epoch checkpoint where none reaches as far; ``None`` if there is neither."""
        found = [((epoch, 0, 0), path) for epoch, path in self.epoch_checkpoints(save_dir, name)]
        found += [((*position, 1), path) for position, path in resume_checkpoints(save_dir)]
        return max(found)[1] if found else None


def shard_train_loader(loader: DataLoader, seed: int) -> DataLoader:
    """This process's share of torchreid's train ``loader``, drawn from ``seed`` and
    resumable at any batch (:func:`~msinet_reid.data.loading.resumable_loader`).

    Identity-balanced loaders draw with :class:`IdentitySampler`, others with
    :class:`ShuffleSampler`; under torchrun each process takes its share of every global
    batch. Anything that is not a ``DataLoader`` is returned as it is.
    """
    if not isinstance(loader, DataLoader):
        return loader
    world_size, rank = distributed.get_world_size(), distributed.get_rank()
    num_instances = getattr(loader.sampler, 'num_instances', None)
    if num_instances is not None:
        sampler = IdentitySampler(loader.dataset.data, loader.batch_size, num_instances, seed,
                                  num_replicas=world_size, rank=rank)
    else:
        sampler = ShuffleSampler(len(loader.dataset), loader.batch_size, seed,
                                 num_replicas=world_size, rank=rank)
    return resumable_loader(loader.dataset, sampler, loader.num_workers, loader.pin_memory)


class _NullWriter:
    """Stands in for TensorBoard's writer on processes other than rank 0: every method
    (``add_scalar``, ``add_text``, ``close``, ...) does nothing."""

    def __getattr__(self, name: str):
        return _nothing


def _nothing(*args, **kwargs) -> None:
    """What every method of :class:`_NullWriter` does."""
