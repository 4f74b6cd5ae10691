"""Twins Contrastive architecture search as a torchreid Engine (paper secs. 3.1 and 4.2)."""
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim import Optimizer
from torch.utils.data import DataLoader
from tqdm import tqdm

from .. import distributed, random_state
from .._torchreid import utils
from ..atomic import PathLike, atomic_write
from ..data.loading import resumable_loader
from ..data.samplers import IdentitySampler
from ..data.views import dataset_view
from ..evaluation import extract_features
from ..engine.base import DistributedEngine
from ..losses.memory import IdentityMemory
from ..optim import PAPER_EPOCHS, WarmupMultiStepLR, paper_schedule
from .diagram import draw_genotype, history_figure, save_figure
from .genotype_file import save_genotype
from .scheme import get_scheme
from .split import Item, check_ratios, split_identities
from .supernet import MSINetSupernet

CHECKPOINT_FILE = 'search_checkpoint.pth'
GENOTYPE_FILE = 'genotype.json'
GENOTYPE_PICTURE, HISTORY_PICTURE = 'genotype.png', 'genotype_history.png'


def build_search_optimizers(
    model: MSINetSupernet, max_epoch: int = PAPER_EPOCHS, lr: float = 0.025,
    arch_lr: float = 0.002, weight_decay: float = 5e-4, arch_weight_decay: float = 1e-3,
) -> Tuple[Optimizer, Optimizer, WarmupMultiStepLR, WarmupMultiStepLR]:
    """The paper's optimisers and schedules (sec. 4.2), scaled to ``max_epoch`` epochs.

    SGD (momentum 0.9) on the weights with 10 warm-up epochs; Adam (betas (0.5, 0.999))
    on alpha; both decayed x0.1 at epochs 150, 225 and 300 of 350. For shorter searches
    the warm-up and milestones shrink in proportion.

    Example::

        >>> optimizer, arch_optimizer, scheduler, arch_scheduler = build_search_optimizers(
        ...     supernet, max_epoch=350)
    """
    milestones, warmup_epochs = paper_schedule(max_epoch)
    optimizer = torch.optim.SGD(model.weight_parameters(), lr=lr, momentum=0.9,
                                weight_decay=weight_decay)
    arch_optimizer = torch.optim.Adam(model.arch_parameters(), lr=arch_lr, betas=(0.5, 0.999),
                                      weight_decay=arch_weight_decay)
    scheduler = WarmupMultiStepLR(optimizer, milestones, warmup_epochs=warmup_epochs)
    arch_scheduler = WarmupMultiStepLR(arch_optimizer, milestones, warmup_epochs=0)
    return optimizer, arch_optimizer, scheduler, arch_scheduler


def _descend(loss: Tensor, optimizer: Optimizer) -> None:
    """One step of ``optimizer`` on ``loss``, with gradients averaged over processes.

    Gradients are computed for the optimiser's own parameters only, so the weight step
    and the architecture step never see each other's gradients.
    """
    params = [p for group in optimizer.param_groups for p in group['params'] if p.requires_grad]
    optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=params)
    distributed.average_gradients(params)
    optimizer.step()


class TCMSearchEngine(DistributedEngine):
    """Differentiable search of MSINet's interactions with the Twins Contrastive Mechanism.

    The data manager's training identities are split into search-train and
    search-validation sets (``ratios`` in percent, see ``split_identities``), each sampled
    identity-balanced by :class:`~msinet_reid.data.samplers.IdentitySampler` (the data
    manager's batch size, ``num_instances`` images per identity, its train transforms).
    Each iteration:

    1. model step: ``optimizer`` (on ``model.weight_parameters()``) on a search-train
       batch, against memory ``C_tr`` (eq. 2), then ``C_tr``'s momentum update (eq. 3);
    2. architecture step: ``arch_optimizer`` (on ``model.arch_parameters()``) on a
       search-valid batch, against ``C_val``, then ``C_val``'s momentum update.

    The memories start as the identity centroids of the supernet's features. Scheme
    ``'ce_overlap'`` replaces both memories by the network's classifier and cross-entropy.
    After every epoch the engine logs the loss terms, the genotype and ``softmax(alpha)``
    (also to TensorBoard), writes the genotype to ``<save_dir>/genotype.json`` and the
    whole search state to ``<save_dir>/search_checkpoint.pth`` (atomically); ``resume``
    continues from it, or from a resume checkpoint mid-epoch
    (:class:`~msinet_reid.engine.DistributedEngine`), exactly. Evaluation of the supernet
    follows ``run(eval_freq=...)``.

    Under ``torchrun`` each process takes its share of every global batch; the gradients
    of each step are averaged over processes (DDP's reducer cannot follow steps that each
    backpropagate into part of the parameters), then the BatchNorm running statistics,
    and the memories are updated with the features of all processes, so every process
    holds the same weights, alpha, buffers and memories after every step. Rank 0 alone
    prints and writes the genotype and checkpoints.

    Args:
        datamanager: torchreid ``ImageDataManager``; its train set is split.
        model: the supernet, already on its device.
        optimizer, arch_optimizer: over ``model.weight_parameters()`` and
            ``model.arch_parameters()`` (``build_search_optimizers`` builds the paper's).
        scheduler, arch_scheduler: stepped once per epoch.
        scheme: ``'tcm'``, ``'tcm_overlap'`` or ``'ce_overlap'`` (``SCHEMES``).
        ratios: ``(train %, valid %)`` of the identities; ``None``: the scheme's default.
        seed: seeds the identity split. Seed the rest with
            ``torchreid.utils.set_random_seed`` for a reproducible search.
        num_instances: images per identity in a batch; ``None``: the data manager's.
        temperature, momentum: tau of eq. 2 and beta of eq. 3.

    Example::

        >>> model = MSINetSupernet(datamanager.num_train_pids).cuda()
        >>> search = TCMSearchEngine(datamanager, model, *build_search_optimizers(model))
        >>> search.run(save_dir='log/search', max_epoch=350, eval_freq=50)
        >>> msinet_reid.register_genotype('found', load_genotype('log/search/genotype.json'))
    """

    def __init__(
        self, datamanager, model: MSINetSupernet, optimizer: Optimizer,
        arch_optimizer: Optimizer, scheduler=None, arch_scheduler=None, scheme: str = 'tcm',
        ratios: Optional[Sequence[float]] = None, seed: int = 0,
        num_instances: Optional[int] = None, temperature: float = 0.05, momentum: float = 0.2,
        use_gpu: bool = True,
    ) -> None:
        super().__init__(datamanager, use_gpu, seed)
        distributed.broadcast_module(model)
        self.model = model
        self.optimizer, self.scheduler = optimizer, scheduler
        self.arch_optimizer, self.arch_scheduler = arch_optimizer, arch_scheduler
        self.register_model('model', model, optimizer, scheduler)
        self._check_optimizers()

        self.scheme_name = scheme
        self.scheme = get_scheme(scheme)
        self.ratios = check_ratios(self.scheme.ratios if ratios is None else ratios)
        self.seed = seed
        self.split = split_identities(datamanager.train_loader.dataset.train, self.ratios, seed)
        base = datamanager.train_loader
        if num_instances is None:
            num_instances = getattr(base.sampler, 'num_instances', 4)
        self.train_loader = self._sampled_loader(self.split.train, num_instances, 'search-train')
        self.valid_loader = self._sampled_loader(self.split.valid, num_instances, 'search-valid')

        self.memories: Optional[Dict[str, IdentityMemory]] = None  # C_tr, C_val
        if self.scheme.contrastive:
            self.memories = {
                subset: IdentityMemory(len(pids), model.feature_dim, temperature,
                                       momentum).to(self.device)
                for subset, pids in (('train', self.split.train_pids),
                                     ('valid', self.split.valid_pids))
            }
        else:
            self._check_classifier()
        # Set labels -> the data manager's labels, which the shared classifier predicts.
        self._pids = {'train': torch.tensor(self.split.train_pids, device=self.device),
                      'valid': torch.tensor(self.split.valid_pids, device=self.device)}
        self._memories_ready = False
        self._valid_batches: Iterator[dict] = iter(())
        self._epoch_losses = utils.MetricMeter()
        self.history = []  # genotype after each epoch
        self._told_no_pictures = False
        self.save_dir = Path('log')

    # ----------------------------------------------------------------- set-up checks
    def _check_optimizers(self) -> None:
        def owned(optimizer: Optimizer) -> set:
            return {id(p) for group in optimizer.param_groups for p in group['params']}

        arch = {id(p) for p in self.model.arch_parameters()}
        if owned(self.optimizer) & arch:
            raise ValueError('optimizer holds architecture parameters; build it from '
                             'model.weight_parameters() (see build_search_optimizers)')
        if owned(self.arch_optimizer) != arch:
            raise ValueError('arch_optimizer must hold exactly model.arch_parameters() '
                             '(see build_search_optimizers)')

    def _check_classifier(self) -> None:
        classes = self.model.network.classifier.out_features
        if classes != self.datamanager.num_train_pids:
            raise ValueError(
                f'scheme {self.scheme_name!r} classifies all {self.datamanager.num_train_pids} '
                f'training identities, but the supernet has {classes} classes; build it with '
                f'MSINetSupernet(datamanager.num_train_pids)')

    def _sampled_loader(self, items: Sequence[Item], num_instances: int, name: str) -> DataLoader:
        base = self.datamanager.train_loader
        ids_per_batch = base.batch_size // num_instances
        num_ids = len({item[1] for item in items})
        if num_ids < ids_per_batch:
            raise ValueError(
                f'the {name} set has {num_ids} identities, but a batch of {base.batch_size} '
                f'with {num_instances} images per identity needs {ids_per_batch}; lower '
                f'batch_size_train, or use more identities or other split ratios')
        sampler = IdentitySampler(items, base.batch_size, num_instances, self.seed,
                                  num_replicas=self.dist.world_size, rank=self.dist.rank)
        return resumable_loader(dataset_view(base.dataset, items, self.datamanager.transform_tr),
                                sampler, base.num_workers, base.pin_memory)

    def _loader(self, items: Sequence[Item], transform) -> DataLoader:
        base = self.datamanager.train_loader
        return DataLoader(dataset_view(base.dataset, items, transform),
                          batch_size=base.batch_size, num_workers=base.num_workers,
                          pin_memory=base.pin_memory)

    # ---------------------------------------------------------------------- search
    @torch.no_grad()
    def initialise_memories(self) -> None:
        """Fill ``C_tr`` and ``C_val`` with the identity centroids of the supernet's features."""
        if self.memories is not None:
            for subset, items in (('train', self.split.train), ('valid', self.split.valid)):
                loader = tqdm(self._loader(items, self.datamanager.transform_te),
                              desc=f'=> Search-{subset} memory: centroids of {len(items)} images',
                              unit='batch', disable=not self.dist.is_main)
                features, labels, _ = extract_features(self.model, loader, self.device)
                self.memories[subset].initialise(features.to(self.device),
                                                 torch.as_tensor(labels, device=self.device))
        self._memories_ready = True

    def _loss(self, imgs: Tensor, labels: Tensor, subset: str) -> Tuple[Tensor, Optional[Tensor]]:
        """The loss of a batch of ``subset`` and, for TCM, the features to memorise."""
        logits, features = self.model(imgs)
        if self.memories is None:
            targets = self._pids[subset][labels]
            return sum(F.cross_entropy(x, targets) for x in logits) / len(logits), None
        features = torch.cat(features, dim=1)
        return self.memories[subset](features, labels), features

    def _step(self, imgs: Tensor, labels: Tensor, subset: str,
              optimizer: Optimizer) -> Dict[str, float]:
        loss, features = self._loss(imgs, labels, subset)
        _descend(loss, optimizer)
        # Each process's forward moved the BatchNorm statistics with its own shard.
        distributed.average_buffers(self.model)
        if features is not None:  # every process memorises the whole global batch
            self.memories[subset].update(distributed.all_gather(features.detach()),
                                         distributed.all_gather(labels))
        return {f'loss_{subset}': loss.item()}

    def model_step(self, imgs: Tensor, labels: Tensor) -> Dict[str, float]:
        """Update the model weights on a search-train batch, then ``C_tr``."""
        return self._step(imgs, labels, 'train', self.optimizer)

    def architecture_step(self, imgs: Tensor, labels: Tensor) -> Dict[str, float]:
        """Update alpha on a search-valid batch, then ``C_val``."""
        return self._step(imgs, labels, 'valid', self.arch_optimizer)

    def _batch(self, data: dict) -> Tuple[Tensor, Tensor]:
        imgs, pids = self.parse_data_for_train(data)
        return imgs.to(self.device, non_blocking=True), pids.to(self.device, non_blocking=True)

    def _next_valid_batch(self) -> dict:
        try:
            return next(self._valid_batches)
        except StopIteration:
            self.valid_loader.batch_sampler.set_epoch(self.epoch)
            self._valid_batches = iter(self.valid_loader)
            return next(self._valid_batches)

    def forward_backward(self, data: dict) -> Dict[str, float]:
        summary = self.model_step(*self._batch(data))
        summary.update(self.architecture_step(*self._batch(self._next_valid_batch())))
        self._epoch_losses.update(summary)
        return summary

    # ------------------------------------------------------- torchreid Engine hooks
    def run(self, save_dir: str = 'log', max_epoch: int = 0, start_epoch: int = 0, **kwargs):
        self.save_dir = Path(save_dir)
        super().run(save_dir=save_dir, max_epoch=max_epoch, start_epoch=start_epoch, **kwargs)
        if max_epoch > start_epoch:
            genotype = ' '.join(self.model.genotype())
            self.log(f'=> Searched genotype: {genotype}\n   written to '
                     f'{self.save_dir / GENOTYPE_FILE}; train it with\n'
                     f"   msinet_reid.register_genotype('my_msinet', "
                     f"msinet_reid.search.load_genotype('{self.save_dir / GENOTYPE_FILE}'))")

    def train(self, print_freq: int = 10, fixbase_epoch: int = 0, open_layers=None) -> None:
        if not self._memories_ready:
            self.initialise_memories()
        # A fresh pass over the validation set each epoch, one validation batch per
        # training batch: a search resumed at batch b continues at validation batch b.
        batches = self.valid_loader.batch_sampler
        batches.set_epoch(self.epoch)
        batches.start = self.start_batch % batches.num_batches
        self._valid_batches = iter(self.valid_loader)
        self._epoch_losses = utils.MetricMeter()
        super().train(print_freq=print_freq, fixbase_epoch=fixbase_epoch,
                      open_layers=open_layers)
        self._end_epoch()

    def update_lr(self, names=None) -> None:
        super().update_lr(names)
        if self.arch_scheduler is not None:
            self.arch_scheduler.step()

    def _end_epoch(self) -> None:
        genotype = self.model.genotype()
        weights = self.model.arch_weights().cpu()
        self.history.append(list(genotype))
        self.log(f'=> Search epoch {self.epoch + 1}/{self.max_epoch}  {self._epoch_losses}\n'
                 f'   genotype: {" ".join(genotype)}\n{self._format_weights(weights)}')
        if self.writer is not None:
            for name, meter in self._epoch_losses.meters.items():
                self.writer.add_scalar(f'Search/{name}', meter.avg, self.epoch)
            for index, row in enumerate(weights.tolist()):
                for op, weight in zip(self.model.ops, row):
                    self.writer.add_scalar(f'Search/alpha_softmax/{index + 1:02d}/{op}',
                                           weight, self.epoch)
            self.writer.add_text('Search/genotype', ' '.join(genotype), self.epoch)
        if self.dist.is_main:
            save_genotype(
                self.save_dir / GENOTYPE_FILE, genotype, epoch=self.epoch + 1,
                max_epoch=self.max_epoch, scheme=self.scheme_name, ratios=list(self.ratios),
                seed=self.seed, ops=list(self.model.ops), alpha_softmax=weights.tolist(),
            )
            self._draw(genotype, weights.tolist())
        self.save_model(self.epoch, None, self.save_dir)

    def _draw(self, genotype: Sequence[str], weights: list) -> None:
        """Pictures beside the genotype file: the genotype with softmax(alpha), and the
        genotype of every epoch so far. Without matplotlib the search goes on, once told."""
        try:
            draw_genotype(genotype, self.save_dir / GENOTYPE_PICTURE, weights, self.model.ops,
                          title=f'searched genotype, epoch {self.epoch + 1}/{self.max_epoch}')
            save_figure(history_figure(self.history), self.save_dir / HISTORY_PICTURE)
        except ImportError as error:
            if not self._told_no_pictures:
                self.log(f'=> No genotype pictures: {error}')
                self._told_no_pictures = True

    def _format_weights(self, weights: Tensor) -> str:
        lines = ['   softmax(alpha)  ' + ''.join(f'{op:>10}' for op in self.model.ops)]
        for index, row in enumerate(weights.tolist()):
            lines.append(f'   module {index + 1:2d}       ' + ''.join(f'{w:>10.4f}' for w in row))
        return '\n'.join(lines)

    # -------------------------------------------------------------- checkpoints
    def resume_state(self) -> dict:
        """The whole search state: weights and alpha, memories, both optimizers and
        schedulers, the split and the genotype history."""
        return {
            'model': self.model.state_dict(),
            'memories': None if self.memories is None else {
                subset: memory.state_dict() for subset, memory in self.memories.items()},
            'optimizer': self.optimizer.state_dict(),
            'arch_optimizer': self.arch_optimizer.state_dict(),
            'scheduler': None if self.scheduler is None else self.scheduler.state_dict(),
            'arch_scheduler': (None if self.arch_scheduler is None
                               else self.arch_scheduler.state_dict()),
            'split': self._split_settings(),
            'history': self.history,
        }

    def load_resume_state(self, state: dict) -> None:
        if state['split'] != self._split_settings():
            raise ValueError(
                f'the checkpoint was written by a search with split {state["split"]["scheme"]!r} '
                f'{state["split"]["ratios"]} seed {state["split"]["seed"]} (or other data); '
                f'build the engine with the same scheme, ratios, seed and data to resume it')
        self.model.load_state_dict(state['model'])
        if self.memories is not None:
            for subset, memory in self.memories.items():
                memory.load_state_dict(state['memories'][subset])
        self.optimizer.load_state_dict(state['optimizer'])
        self.arch_optimizer.load_state_dict(state['arch_optimizer'])
        for scheduler, key in ((self.scheduler, 'scheduler'),
                               (self.arch_scheduler, 'arch_scheduler')):
            if scheduler is not None:
                scheduler.load_state_dict(state[key])
        self.history = state['history']
        self._memories_ready = True

    def save_model(self, epoch: int, rank1, save_dir: PathLike, is_best: bool = False) -> None:
        """Write the whole search state to ``<save_dir>/search_checkpoint.pth`` atomically
        (rank 0; the other processes hold the same state)."""
        if not self.dist.is_main:
            return
        state = {'epoch': epoch + 1, 'rank1': None if rank1 is None else float(rank1),
                 **self.resume_state(), 'rng': random_state.get_state()}
        atomic_write(Path(save_dir) / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp))

    def _split_settings(self) -> dict:
        return {'scheme': self.scheme_name, 'ratios': list(self.ratios), 'seed': self.seed,
                'train_pids': self.split.train_pids, 'valid_pids': self.split.valid_pids}

    def load_epoch_checkpoint(self, path: PathLike, name: str = 'model') -> int:
        """Restore a search from its ``search_checkpoint.pth``; returns the epoch it ends."""
        state = torch.load(path, map_location='cpu', weights_only=True)
        self.load_resume_state(state)
        random_state.set_state(state['rng'])
        self.log(f'=> Resumed the search from {path} at epoch {state["epoch"]}')
        return state['epoch']

    def epoch_checkpoints(self, save_dir: PathLike, name: str = 'model') -> List[Tuple[int, Path]]:
        path = Path(save_dir) / CHECKPOINT_FILE
        if not path.is_file():
            return []
        return [(torch.load(path, map_location='cpu', weights_only=True)['epoch'], path)]
