"""Learning-rate schedule of the paper (sec. 4.2): linear warm-up, then step decay."""
from bisect import bisect_right
from typing import List, Sequence, Tuple

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


# The paper's schedule: 350 epochs, 10 of warm-up, x0.1 at 150, 225 and 300.
PAPER_EPOCHS = 350
PAPER_WARMUP_EPOCHS = 10
PAPER_MILESTONES = (150, 225, 300)


def paper_schedule(max_epoch: int = PAPER_EPOCHS) -> Tuple[Tuple[int, ...], int]:
    """The paper's milestones and warm-up epochs, scaled in proportion to ``max_epoch``.

    >>> paper_schedule(70)
    ((30, 45, 60), 2)
    """
    scale = max_epoch / PAPER_EPOCHS
    return (tuple(round(epoch * scale) for epoch in PAPER_MILESTONES),
            round(PAPER_WARMUP_EPOCHS * scale))


class WarmupMultiStepLR(LRScheduler):
    """Linear warm-up from ``warmup_factor * lr`` to ``lr``, then ``x gamma`` at each milestone.

    Stepped once per epoch, as torchreid's ``Engine`` steps its scheduler. The paper
    trains for 350 epochs with 10 warm-up epochs and milestones 150, 225 and 300.

    Example::

        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.065, momentum=0.9)
        >>> scheduler = WarmupMultiStepLR(optimizer, milestones=(150, 225, 300))
        >>> [round(lr, 5) for lr in scheduler.get_last_lr()]  # epoch 0: 1% of the lr
        [0.00065]
    """

    def __init__(
        self, optimizer: Optimizer, milestones: Sequence[int] = PAPER_MILESTONES,
        gamma: float = 0.1, warmup_epochs: int = PAPER_WARMUP_EPOCHS, warmup_factor: float = 0.01,
        last_epoch: int = -1,
    ) -> None:
        if list(milestones) != sorted(milestones):
            raise ValueError(f'milestones must be increasing, got {list(milestones)}')
        if warmup_epochs < 0 or not 0 < warmup_factor <= 1:
            raise ValueError(
                f'warmup_epochs must be >= 0 and warmup_factor in (0, 1], got '
                f'{warmup_epochs} and {warmup_factor}')
        self.milestones = list(milestones)
        self.gamma = gamma
        self.warmup_epochs = warmup_epochs
        self.warmup_factor = warmup_factor
        super().__init__(optimizer, last_epoch)

    def lr_factor(self, epoch: int) -> float:
        """The multiplier of the base learning rate at ``epoch`` (0-based)."""
        factor = self.gamma ** bisect_right(self.milestones, epoch)
        if epoch < self.warmup_epochs:
            progress = epoch / self.warmup_epochs
            factor *= self.warmup_factor * (1 - progress) + progress
        return factor

    def get_lr(self) -> List[float]:
        factor = self.lr_factor(self.last_epoch)
        return [base_lr * factor for base_lr in self.base_lrs]
