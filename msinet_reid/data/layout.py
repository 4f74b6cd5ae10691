"""torchreid's dataset folders, read with errors that say what is wrong with the folder.

torchreid parses each dataset's file names (Market-1501's ``0002_c1s1_000451_03.jpg``,
MSMT17's list files, ...) and stops with whatever that parsing raises, often
``'NoneType' object has no attribute 'groups'``; a missing folder starts a download.
:func:`image_data_manager` and :func:`load_image_dataset` name the file that does not
follow the dataset's naming, or the folder that is missing.
"""
import urllib.error
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Iterator, List, Optional

from .._torchreid import data

# Locals of torchreid's dataset parsers that hold the entry being parsed.
_PARSED = ('img_path', 'img_info', 'line')
_SPLITS = ('train', 'query', 'gallery')


class DatasetLayoutError(ValueError):
    """A dataset folder torchreid cannot read: missing, or a file named otherwise."""


def _dataset_frames(traceback: Optional[TracebackType]) -> Iterator[dict]:
    """The locals of each frame of torchreid's dataset code in ``traceback``, outermost
    first."""
    while traceback is not None:
        frame = traceback.tb_frame
        if 'datasets' in Path(frame.f_code.co_filename).parts:
            yield frame.f_locals
        traceback = traceback.tb_next


def _entry_being_parsed(traceback: Optional[TracebackType]) -> Optional[str]:
    """The file name or list line that torchreid's dataset code was parsing when it raised."""
    entry = None
    for names in _dataset_frames(traceback):
        entry = next((names[name] for name in _PARSED if name in names), entry)
    return None if entry is None else str(entry).strip()


def _empty_splits(traceback: Optional[TracebackType]) -> List[str]:
    """The splits torchreid's ``Dataset`` was given empty when it raised."""
    for names in _dataset_frames(traceback):
        if all(isinstance(names.get(split), list) for split in _SPLITS):
            return [split for split in _SPLITS if not names[split]]
    return []


@contextmanager
def explained_dataset_errors(name: str, root) -> Iterator[None]:
    """Turn torchreid's errors while reading dataset ``name`` under ``root`` into a
    :class:`DatasetLayoutError` that names the file or folder at fault and the fix."""
    try:
        yield
    except urllib.error.URLError as error:
        raise DatasetLayoutError(
            f"torchreid found no {name} folder under {root} and could not download it "
            f'({error.reason}). Put the dataset there, laid out as torchreid expects, or '
            f'pass the --root that holds it.') from error
    except (AttributeError, ValueError, IndexError, TypeError) as error:
        empty = _empty_splits(error.__traceback__)
        if empty:
            raise DatasetLayoutError(
                f"torchreid found no {' or '.join(empty)} images of {name} under {root}. "
                f'Put the images in the folders torchreid reads for {name}, or pass the '
                f'--root that holds them.') from error
        entry = _entry_being_parsed(error.__traceback__)
        if entry is None:
            raise
        raise DatasetLayoutError(
            f"torchreid's {name} dataset cannot parse {entry!r} under {root} "
            f'({type(error).__name__}: {error}). Its files must be named as the dataset '
            f'names them (e.g. Market-1501: 0002_c1s1_000451_03.jpg, identity then camera); '
            f'rename or remove the files that are not, or choose the right --dataset.'
        ) from error


def image_data_manager(**kwargs) -> 'data.ImageDataManager':
    """torchreid's ``ImageDataManager(**kwargs)``, with :func:`explained_dataset_errors`.

    Example::

        >>> manager = image_data_manager(root='reid-data', sources='market1501')
    """
    names = kwargs.get('sources', '')
    with explained_dataset_errors(names if isinstance(names, str) else ', '.join(names),
                                  kwargs.get('root', '')):
        return data.ImageDataManager(**kwargs)


def load_image_dataset(name: str, root) -> 'data.datasets.ImageDataset':
    """torchreid's image dataset ``name`` under ``root`` (train, query and gallery lists),
    with :func:`explained_dataset_errors`.

    Example::

        >>> len(load_image_dataset('market1501', 'reid-data').gallery)
        15913
    """
    with explained_dataset_errors(name, root):
        return data.datasets.init_image_dataset(name, root=str(root), verbose=False)
