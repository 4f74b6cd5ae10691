"""The paper's training recipe as a torchreid engine (sec. 3.3, 4.2)."""
from contextlib import contextmanager
from typing import Dict, Iterator, List

import torch
from torch import Tensor, nn

from .. import distributed
from .._torchreid import metrics
from ..losses import CrossEntropyLoss, SpatialAlignLoss, TripletLoss
from ..models.msinet import CLASSIFIER_HEADS, TRAINING_HEADS
from .base import DistributedEngine


def _full_precision(tensor: Tensor) -> Tensor:
    """``tensor`` in float32 if autocast made it half precision; float64 stays float64."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


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
        use_gpu: torchreid's flag; the engine trains on the device of ``model``.
        label_smooth: label smoothing (epsilon 0.1) in the cross-entropy.
        amp: mixed precision (CUDA only).
        seed: seeds the identity-balanced batches (see :class:`DistributedEngine`).
        sync_bn: under torchrun, BatchNorm statistics over the global batch (CUDA only).

    Training-only modules that no active term reads (the classifiers and BN necks when
    ``weight_x=0``, the Spatial Alignment Module when ``sam_mode='neg'``) are frozen, so
    that under ``torchrun`` DDP synchronises exactly the parameters the loss trains.

    Under ``torchrun`` the triplet and SAM losses compare each image with the whole global
    batch, as in a single process; the data manager's ``batch_size`` is the global batch.

    Example::

        >>> model = torchreid.models.build_model('msinet_sam', datamanager.num_train_pids,
        ...                                      loss='triplet', pretrained=False).cuda()
        >>> recipe = msinet_reid.recipes.get_recipe('scratch')
        >>> optimizer, scheduler = msinet_reid.recipes.build_optimizer(model, recipe)
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
        if amp and self.device.type != 'cuda':
            raise ValueError(f'amp=True needs CUDA, but the model is on {self.device}: move '
                             f'it with .cuda(), or pass amp=False to train on the CPU')
        self.weight_t, self.weight_x, self.weight_sa = weight_t, weight_x, weight_sa
        self.amp = amp
        self.scaler = torch.amp.GradScaler('cuda', enabled=amp)

        self.criterion_t = TripletLoss(margin)
        self.criterion_x = CrossEntropyLoss(num_classes=datamanager.num_train_pids,
                                            use_gpu=self.device.type == 'cuda',
                                            label_smooth=label_smooth)
        self.criterion_sa = SpatialAlignLoss(sam_mode)
        net = getattr(model, 'module', model)  # DataParallel
        # SAM is on when the model has its module and its loss has a weight; the module
        # itself is read by the positive term only.
        self.sam = weight_sa > 0 and getattr(net, 'align_module', None) is not None
        if self.sam:
            self.final_stage = net.cells[-1]  # its output: the final feature maps
        self.align_module = net.align_module if (
            self.sam and self.criterion_sa.uses_self_activation) else None
        self.freeze(p for name in self.unread_heads(net) for p in getattr(net, name).parameters())
        self.parallel(model, sync_bn)

    def unread_heads(self, net: nn.Module) -> List[str]:
        """The model's training-only modules that no term of this loss reads."""
        read = set(CLASSIFIER_HEADS) if self.weight_x > 0 else set()
        if self.align_module is not None:
            read.add('align_module')
        return [name for name in TRAINING_HEADS
                if name not in read and getattr(net, name, None) is not None]

    def forward_backward(self, data: dict) -> Dict[str, float]:
        imgs, pids = self.to_device(*self.parse_data_for_train(data))

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
            loss_t = sum(self.criterion_t(distributed.all_gather_with_grad(_full_precision(f)),
                                          all_pids) for f in features)
            loss = loss + self.weight_t * world_size * loss_t
            summary['loss_t'] = loss_t.item()
        if self.weight_x > 0:
            loss_x = sum(self.criterion_x(_full_precision(y), pids) for y in logits)
            loss = loss + self.weight_x * loss_x
            summary['loss_x'] = loss_x.item()
            summary['acc'] = metrics.accuracy(logits[0], pids)[0].item()
        if self.sam:
            if len(maps) != 1:  # DataParallel runs the stage once per device
                raise RuntimeError('the SAM loss needs the whole batch from one forward '
                                   'pass: train on one device, without DataParallel')
            final = _full_precision(maps[0])
            activation = None if self.align_module is None else (
                distributed.all_gather_with_grad(self.align_module(final)))
            loss_sa = self.criterion_sa(distributed.all_gather_with_grad(final), activation,
                                        all_pids)
            loss = loss + self.weight_sa * world_size * loss_sa
            summary['loss_sa'] = loss_sa.item()

        self.optimizer.zero_grad()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return summary

    def checkpoint_state(self, name: str, epoch: int, rank1: float) -> dict:
        return {**super().checkpoint_state(name, epoch, rank1), 'scaler': self.scaler.state_dict()}

    def load_checkpoint_state(self, state: dict) -> None:
        if state.get('scaler'):
            self.scaler.load_state_dict(state['scaler'])

    @contextmanager
    def _featuremaps(self) -> Iterator[List[Tensor]]:
        """The final feature maps of the forward pass in the block, when SAM needs them."""
        if not self.sam:
            yield []
        else:
            with _capture_output(self.final_stage) as outputs:
                yield outputs
