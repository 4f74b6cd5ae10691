"""The paper's training recipe as a torchreid engine (sec. 3.3, 4.2)."""
from contextlib import contextmanager
from typing import Dict, Iterator, List

import torch
from torch import Tensor, nn

from .. import distributed
from .._torchreid import metrics
from ..losses import CrossEntropyLoss, SpatialAlignLoss, TripletLoss
from .base import DistributedEngine


@contextmanager
def _capture_output(module: nn.Module) -> Iterator[List[Tensor]]:
    """Collect what ``module`` returns during the ``with`` block."""
    outputs: List[Tensor] = []
    handle = module.register_forward_hook(lambda _module, _input, output: outputs.append(output))
    try:
        yield outputs
    finally:
        handle.remove()


class ImageMSINetEngine(DistributedEngine):
    """Trains MSINet as the paper does, with torchreid's loop, checkpoints and evaluation.

    Per batch: for each head (global and part) cross-entropy with label smoothing on the
    logits plus batch-hard triplet loss on the L2-normalised features, summed over the heads;
    if the model has a Spatial Alignment Module (``msinet_sam``), plus ``weight_sa`` times
    the spatial alignment loss on the final feature maps of the same forward pass.

    Args:
        datamanager: a torchreid ``ImageDataManager`` (use ``RandomIdentitySampler``).
        model: an MSINet built with ``loss='triplet'``.
        optimizer: e.g. from :func:`msinet_reid.recipes.build_optimizer`.
        margin: triplet margin.
        weight_t, weight_x: weights of the triplet and cross-entropy terms.
        weight_sa: lambda_sa of the spatial alignment loss; 0 turns SAM off.
        sam_mode: ``'pos'``, ``'neg'`` or ``'pos_neg'`` (the paper's default).
        scheduler: stepped once per epoch, e.g. :class:`msinet_reid.optim.WarmupMultiStepLR`.
        use_gpu: train on CUDA when available.
        label_smooth: label smoothing (epsilon 0.1) in the cross-entropy.
        amp: mixed precision (CUDA only).
        seed: seeds the identity-balanced batches (see :class:`DistributedEngine`).
        sync_bn: under torchrun, BatchNorm statistics over the global batch (CUDA only).

    Under ``torchrun`` the triplet and SAM losses compare each image with the whole global
    batch, as in a single process; the data manager's ``batch_size`` is the global batch.

    Example::

        >>> model = torchreid.models.build_model('msinet_sam', datamanager.num_train_pids,
        ...                                      loss='triplet', pretrained=False).cuda()
        >>> optimizer, scheduler = msinet_reid.recipes.build_optimizer(model, 'scratch')
        >>> trainer = ImageMSINetEngine(datamanager, model, optimizer, scheduler=scheduler)
        >>> trainer.run(save_dir='log/msinet_sam', max_epoch=350, eval_freq=40)
    """

    def __init__(
        self, datamanager, model: nn.Module, optimizer: torch.optim.Optimizer,
        margin: float = 0.3, weight_t: float = 1, weight_x: float = 1, weight_sa: float = 2.0,
        sam_mode: str = 'pos_neg', scheduler=None, use_gpu: bool = True,
        label_smooth: bool = True, amp: bool = False, seed: int = 0, sync_bn: bool = False,
    ) -> None:
        super().__init__(datamanager, use_gpu, seed)
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.register_model('model', model, optimizer, scheduler)

        if min(weight_t, weight_x, weight_sa) < 0 or weight_t + weight_x == 0:
            raise ValueError(f'loss weights must be >= 0 with weight_t + weight_x > 0, got '
                             f'{weight_t}, {weight_x}, {weight_sa}')
        if amp and not self.use_gpu:
            raise ValueError('amp=True needs CUDA; pass amp=False to train on the CPU')
        self.weight_t, self.weight_x, self.weight_sa = weight_t, weight_x, weight_sa
        self.amp = amp
        self.scaler = torch.amp.GradScaler('cuda', enabled=amp)

        self.criterion_t = TripletLoss(margin)
        self.criterion_x = CrossEntropyLoss(num_classes=datamanager.num_train_pids,
                                            use_gpu=self.use_gpu, label_smooth=label_smooth)
        net = getattr(model, 'module', model)  # DataParallel
        self.criterion_sa = SpatialAlignLoss(sam_mode)
        # SAM is on when the model has its module and its loss has a weight.
        self.align_module = getattr(net, 'align_module', None) if weight_sa > 0 else None
        if self.align_module is not None:
            self.final_stage = net.cells[-1]  # its output: the final feature maps
        unused_sam = self.align_module is None and getattr(net, 'align_module', None) is not None
        self.network = self.parallel(model, sync_bn, find_unused_parameters=unused_sam)

    def forward_backward(self, data: dict) -> Dict[str, float]:
        imgs, pids = self.parse_data_for_train(data)
        if self.use_gpu:
            imgs, pids = imgs.cuda(), pids.cuda()

        with torch.autocast('cuda', enabled=self.amp), self._featuremaps() as maps:
            outputs = self.network(imgs)
        if not (isinstance(outputs, tuple) and len(outputs) == 2):
            raise TypeError("ImageMSINetEngine needs logits and features from the model: "
                            "build it with loss='triplet'")
        logits, features = outputs

        # Triplet and SAM compare the images of a batch with each other: under torchrun they
        # see the global batch (this process's rows keep their gradients). DDP averages the
        # gradients over processes, so these whole-batch terms are scaled back by the number
        # of processes; cross-entropy, a mean over this process's rows, needs nothing.
        world_size = distributed.get_world_size()
        all_pids = distributed.all_gather(pids)
        loss = 0
        summary = {}
        if self.weight_t > 0:
            loss_t = sum(self.criterion_t(distributed.all_gather_with_grad(f.float()), all_pids)
                         for f in features)
            loss = loss + self.weight_t * world_size * loss_t
            summary['loss_t'] = loss_t.item()
        if self.weight_x > 0:
            loss_x = sum(self.criterion_x(y.float(), pids) for y in logits)
            loss = loss + self.weight_x * loss_x
            summary['loss_x'] = loss_x.item()
            summary['acc'] = metrics.accuracy(logits[0], pids)[0].item()
        if self.align_module is not None:
            if len(maps) != 1:  # DataParallel runs the stage once per device
                raise RuntimeError('the SAM loss needs the whole batch from one forward '
                                   'pass: train on one device, without DataParallel')
            final = maps[0].float()
            loss_sa = self.criterion_sa(distributed.all_gather_with_grad(final),
                                        distributed.all_gather_with_grad(self.align_module(final)),
                                        all_pids)
            loss = loss + self.weight_sa * world_size * loss_sa
            summary['loss_sa'] = loss_sa.item()

        self.optimizer.zero_grad()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return summary

    @contextmanager
    def _featuremaps(self) -> Iterator[List[Tensor]]:
        """The final feature maps of the forward pass in the block, when SAM needs them."""
        if self.align_module is None:
            yield []
        else:
            with _capture_output(self.final_stage) as outputs:
                yield outputs
