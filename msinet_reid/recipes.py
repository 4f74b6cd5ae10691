"""The paper's training settings (sec. 4.2, 4.3) as named presets.

``scratch`` and ``pretrained`` are the in-domain settings of Table 2; ``cross_domain``
fine-tunes ImageNet weights for 250 epochs with colour jitter instead of random erasing.
Start from a preset and override what differs::

    >>> recipe = get_recipe('scratch', max_epoch=120, batch_size=32)
    >>> optimizer, scheduler = build_optimizer(model, recipe)
    >>> datamanager = torchreid.data.ImageDataManager(
    ...     root='reid-data', sources='market1501', **recipe.datamanager_kwargs())

The transforms are torchreid's: its ``random_crop`` enlarges by 1/8 and crops back, where
the authors pad by 10 pixels and crop; its ``color_jitter`` is milder than theirs.
"""
import dataclasses
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from torch import nn
from torch.optim import Optimizer

from ._torchreid import optim
from .optim import PAPER_MILESTONES, PAPER_WARMUP_EPOCHS, WarmupMultiStepLR, paper_schedule

IN_DOMAIN_TRANSFORMS = ('random_flip', 'random_crop', 'random_erase')
CROSS_DOMAIN_TRANSFORMS = ('random_flip', 'random_crop', 'color_jitter')


@dataclass(frozen=True)
class Recipe:
    """One training setting; every field can be overridden with :func:`get_recipe`."""

    name: str
    pretrained: bool  # start from ImageNet weights
    max_epoch: int = 350
    lr: float = 0.065
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = PAPER_WARMUP_EPOCHS
    warmup_factor: float = 0.01
    milestones: Tuple[int, ...] = PAPER_MILESTONES
    gamma: float = 0.1
    transforms: Tuple[str, ...] = IN_DOMAIN_TRANSFORMS
    height: int = 256
    width: int = 128
    batch_size: int = 64
    num_instances: int = 4  # images per identity in a batch
    margin: float = 0.3
    weight_sa: float = 2.0  # lambda_sa; only models with SAM use it
    sam_mode: str = 'pos_neg'
    eval_freq: int = 40
    normalize_feature: bool = True  # the authors rank with L2-normalised features

    def datamanager_kwargs(self) -> Dict:
        """Arguments of torchreid's ``ImageDataManager`` for this recipe."""
        return dict(height=self.height, width=self.width, transforms=list(self.transforms),
                    batch_size_train=self.batch_size, num_instances=self.num_instances,
                    train_sampler='RandomIdentitySampler')

    def engine_kwargs(self) -> Dict:
        """Loss arguments of :class:`msinet_reid.engine.ImageMSINetEngine`."""
        return dict(margin=self.margin, weight_sa=self.weight_sa, sam_mode=self.sam_mode)

    def run_kwargs(self) -> Dict:
        """Arguments of torchreid's ``Engine.run``."""
        return dict(max_epoch=self.max_epoch, eval_freq=self.eval_freq,
                    normalize_feature=self.normalize_feature)


RECIPES: Dict[str, Recipe] = {
    'scratch': Recipe('scratch', pretrained=False),
    'pretrained': Recipe('pretrained', pretrained=True),
    'cross_domain': Recipe('cross_domain', pretrained=True, max_epoch=250,
                           transforms=CROSS_DOMAIN_TRANSFORMS),
}


def get_recipe(name: str, **overrides) -> Recipe:
    """Preset ``name`` with ``overrides`` applied.

    Example::

        >>> get_recipe('cross_domain', lr=0.01).max_epoch
        250
    """
    if name not in RECIPES:
        raise ValueError(f'unknown recipe {name!r}; choose one of {", ".join(RECIPES)}')
    fields = {field.name for field in dataclasses.fields(Recipe)} - {'name'}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f'unknown recipe fields {sorted(unknown)}; valid: {sorted(fields)}')
    return dataclasses.replace(RECIPES[name], **overrides)


def scaled_recipe(name: str, max_epoch: int, **overrides) -> Recipe:
    """Preset ``name`` shortened (or lengthened) to ``max_epoch`` epochs, its warm-up and
    milestones scaled in proportion (:func:`msinet_reid.optim.paper_schedule`).

    Example::

        >>> scaled_recipe('scratch', 35).milestones  # a shorter run, the same shape
        (15, 22, 30)
    """
    milestones, warmup_epochs = paper_schedule(max_epoch)
    return get_recipe(name, **{'max_epoch': max_epoch, 'milestones': milestones,
                               'warmup_epochs': warmup_epochs, **overrides})


def build_optimizer(model: nn.Module, recipe: Recipe) -> Tuple[Optimizer, WarmupMultiStepLR]:
    """SGD and the warm-up step schedule of ``recipe``; step the scheduler once per epoch.

    Example::

        >>> optimizer, scheduler = build_optimizer(model, get_recipe('scratch'))
        >>> scheduler.get_last_lr()  # epoch 0: warm-up from 1% of 0.065
        [0.00065]
    """
    optimizer = optim.build_optimizer(model, optim='sgd', lr=recipe.lr,
                                      weight_decay=recipe.weight_decay, momentum=recipe.momentum)
    scheduler = WarmupMultiStepLR(optimizer, recipe.milestones, gamma=recipe.gamma,
                                  warmup_epochs=recipe.warmup_epochs,
                                  warmup_factor=recipe.warmup_factor)
    return optimizer, scheduler


VEHICLE_DATASETS = ('veri', 'vehicleid')
VEHICLE_SIZE = (256, 256)  # paper sec. 4.2: vehicles at 256x256, persons at 256x128


@dataclass(frozen=True)
class Experiment:
    """One of the paper's experiments: a recipe, a model, the training dataset and, across
    domains, the dataset evaluated on."""

    recipe: str
    model: str
    source: str
    target: Optional[str] = None


EXPERIMENTS: Dict[str, Experiment] = {
    'market1501_scratch': Experiment('scratch', 'msinet', 'market1501'),
    'market1501_pretrained': Experiment('pretrained', 'msinet', 'market1501'),
    'msmt17_scratch': Experiment('scratch', 'msinet', 'msmt17'),
    'msmt17_pretrained': Experiment('pretrained', 'msinet', 'msmt17'),
    'veri_scratch': Experiment('scratch', 'msinet', 'veri'),
    'veri_pretrained': Experiment('pretrained', 'msinet', 'veri'),
    'market1501_to_msmt17_sam': Experiment('cross_domain', 'msinet_sam', 'market1501',
                                           'msmt17'),
    'veri_to_vehicleid_sam': Experiment('cross_domain', 'msinet_sam', 'veri', 'vehicleid'),
}


def dataset_recipe(name: str, source: str) -> Recipe:
    """Preset ``name`` at the paper's input size for training dataset ``source``.

    Example::

        >>> dataset_recipe('scratch', 'veri').height, dataset_recipe('scratch', 'veri').width
        (256, 256)
    """
    if source in VEHICLE_DATASETS:
        return get_recipe(name, height=VEHICLE_SIZE[0], width=VEHICLE_SIZE[1])
    return get_recipe(name)


__all__ = ['CROSS_DOMAIN_TRANSFORMS', 'EXPERIMENTS', 'Experiment', 'IN_DOMAIN_TRANSFORMS',
           'RECIPES', 'Recipe', 'VEHICLE_DATASETS', 'build_optimizer', 'dataset_recipe',
           'get_recipe', 'scaled_recipe']
