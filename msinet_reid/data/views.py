"""Datasets over a chosen list of torchreid samples."""
import copy
from typing import Sequence


def dataset_view(dataset, items: Sequence, transform):
    """A shallow copy of torchreid image dataset ``dataset`` that reads ``items`` with
    ``transform``: torchreid's own image reading and batch dicts, for a subset or a
    relabelling of its samples (search sets, pseudo-labelled clusters).

    Example::

        >>> valid = dataset_view(datamanager.train_loader.dataset, valid_items,
        ...                      datamanager.transform_te)
    """
    view = copy.copy(dataset)
    view.data = items
    view.transform = transform
    return view
