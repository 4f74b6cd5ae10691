"""Identity split of the training data into search-train and search-validation sets.

The Twins Contrastive Mechanism unbinds the identities of the two sets (paper sec. 3.1,
supplementary sec. 8): ratios ``(train %, valid %)`` of the training identities. Ratios
summing to at most 100% give disjoint sets; past 100%, the ``train + valid - 100`` percent
of identities in both sets have their images divided evenly between the two.
"""
import math
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

Item = Tuple  # torchreid's (img_path, pid, camid, dsetid)

# Paper Table 9: (train %, valid %) of the searches without and with identity overlap.
TABLE9_RATIOS = (
    (90, 10), (75, 25), (67, 33), (50, 50), (33, 67), (25, 75), (10, 90),
    (60, 60), (40, 80), (60, 80), (80, 60), (80, 80), (100, 100),
)


@dataclass(frozen=True)
class IdentitySplit:
    """The two search sets, each relabelled to ``0..num_ids-1``.

    ``train_pids[label]`` / ``valid_pids[label]`` give the original (data manager) label
    of each identity, shared by the two sets; ``overlap`` holds the identities in both.
    """

    train: List[Item]
    valid: List[Item]
    train_pids: List[int]
    valid_pids: List[int]

    @property
    def overlap(self) -> List[int]:
        return sorted(set(self.train_pids) & set(self.valid_pids))


def _percent_of(count: int, percent: float) -> int:
    return math.floor(count * percent / 100 + 0.5)  # half up: round() would round to even


def check_ratios(ratios: Sequence[float]) -> Tuple[float, float]:
    """Validate ``(train %, valid %)``; both in (0, 100]."""
    if len(ratios) != 2 or not all(isinstance(r, (int, float)) for r in ratios):
        raise ValueError(f'split ratios are two percentages (train, valid), got {ratios!r}')
    train, valid = ratios
    if not (0 < train <= 100 and 0 < valid <= 100):
        raise ValueError(
            f'split ratios are percentages of the training identities in (0, 100], got '
            f'train={train}, valid={valid}; e.g. (60, 80) for the paper\'s default or '
            f'(50, 50) for disjoint halves')
    return float(train), float(valid)


def split_identities(
    data: Sequence[Item], ratios: Sequence[float] = (60, 80), seed: int = 0,
) -> IdentitySplit:
    """Split torchreid train items by identity into search-train and search-valid sets.

    Which identities go where, and which images of an overlapping identity go to which
    set, depend only on ``seed``. An overlapping identity needs at least two images.

    Example::

        >>> split = split_identities(datamanager.train_loader.dataset.train, (60, 80))
        >>> len(split.train_pids), len(split.valid_pids), len(split.overlap)
    """
    train_ratio, valid_ratio = check_ratios(ratios)
    images: Dict[int, List[Item]] = defaultdict(list)
    for item in data:
        images[item[1]].append(item)
    pids = sorted(images)
    num_train = _percent_of(len(pids), train_ratio)
    num_valid = _percent_of(len(pids), valid_ratio)
    if train_ratio + valid_ratio <= 100:
        num_valid = min(num_valid, len(pids) - num_train)
    if num_train < 1 or num_valid < 1:
        raise ValueError(
            f'{len(pids)} identities give {num_train} search-train and {num_valid} '
            f'search-valid identities at ratios {ratios}; both sets need identities, so use '
            f'more data or larger ratios')
    num_overlap = max(0, num_train + num_valid - len(pids))

    rng = random.Random(seed)
    order = pids.copy()
    rng.shuffle(order)
    train_only = order[:num_train - num_overlap]
    overlap = order[num_train - num_overlap:num_train]
    valid_only = order[num_train:num_train + num_valid - num_overlap]

    train_items = {pid: images[pid] for pid in train_only}
    valid_items = {pid: images[pid] for pid in valid_only}
    for pid in overlap:
        shuffled = images[pid].copy()
        if len(shuffled) < 2:
            raise ValueError(
                f'identity {pid} has one image, which cannot be divided between the '
                f'search-train and search-valid sets; use ratios summing to at most 100 '
                f'(disjoint sets) or drop single-image identities')
        rng.shuffle(shuffled)
        half = len(shuffled) // 2
        train_items[pid], valid_items[pid] = shuffled[:half], shuffled[half:]

    train, train_pids = _relabel(train_items)
    valid, valid_pids = _relabel(valid_items)
    return IdentitySplit(train, valid, train_pids, valid_pids)


def _relabel(images: Dict[int, List[Item]]) -> Tuple[List[Item], List[int]]:
    pids = sorted(images)
    items = [(path, label, *rest) for label, pid in enumerate(pids)
             for path, _, *rest in images[pid]]
    return items, pids
