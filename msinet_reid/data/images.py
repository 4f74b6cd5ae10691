"""Reading images: RGB from any file Pillow reads, and every file checked before the work.

:func:`read_rgb` converts greyscale, palette, RGBA and 16-bit images to 8-bit RGB (Pillow's
``convert('RGB')`` clips 16-bit values, turning a 16-bit crop white).

torchreid's ``read_image`` retries an unreadable file forever, so one partly downloaded
crop hangs a training run. :func:`check_images` decodes every file (``Image.verify`` reads
headers only and passes truncated JPEGs) and returns the ones that fail, with the reason;
:func:`require_readable` does it for a torchreid data manager, once per set of files (the
verdict is cached, keyed on the paths, sizes and modification times), on rank 0 under
torchrun, and raises :class:`UnreadableImagesError` naming the files and the fix.
"""
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, List, NamedTuple, Optional, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from .. import distributed
from ..atomic import PathLike, atomic_write

# Files named in an error message; the rest are counted.
LISTED = 5


# Greyscale modes of more than 8 bits, which Pillow's convert('RGB') clips instead of scaling.
_WIDE_GREY = ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N')


def read_rgb(path: PathLike) -> Image.Image:
    """The image at ``path`` as 8-bit RGB, whatever its mode: 16-bit greyscale is scaled
    to 8 bits, alpha is dropped, palettes and greyscale are expanded.

    Example::

        >>> read_rgb('crop_16bit.png').mode
        'RGB'
    """
    with Image.open(path) as image:
        if image.mode in _WIDE_GREY:
            wide = np.asarray(image, dtype=np.float64).clip(0, 65535)
            return Image.fromarray(np.rint(wide / 257).astype(np.uint8), 'L').convert('RGB')
        return image.convert('RGB')


class UnreadableImage(NamedTuple):
    path: str
    reason: str


class UnreadableImagesError(ValueError):
    """Images that do not decode; ``unreadable`` lists them all."""

    def __init__(self, unreadable: Sequence[UnreadableImage], total: int, fix: str) -> None:
        self.unreadable = list(unreadable)
        listed = ''.join(f'\n  {image.path}: {image.reason}' for image in unreadable[:LISTED])
        more = len(unreadable) - LISTED
        super().__init__(
            f'{len(unreadable)} of {total} images cannot be read:{listed}'
            f'{f"{chr(10)}  ... and {more} more" if more > 0 else ""}\n{fix}')


def image_problem(path: PathLike) -> Optional[str]:
    """Why the image at ``path`` cannot be read as RGB, or ``None`` if it can."""
    try:
        with Image.open(path) as image:
            image.load()  # decodes every pixel: a truncated file fails here
            if image.width == 0 or image.height == 0:
                return 'the image has no pixels'
    except FileNotFoundError:
        return 'no such file'
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        if isinstance(error, OSError) and Path(path).is_file() and not Path(path).stat().st_size:
            return 'the file is empty'
        return f'{type(error).__name__}: {error}'
    return None


def default_workers() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


def check_images(paths: Iterable[PathLike], workers: Optional[int] = None,
                 progress: bool = False) -> List[UnreadableImage]:
    """The images among ``paths`` that do not decode, each with the reason, in order.

    Every file is decoded in full by Pillow in ``workers`` threads (Pillow releases the
    GIL while it decodes; default: the cores this process may use).

    Example::

        >>> check_images(['ok.jpg', 'half_downloaded.jpg'])
        [UnreadableImage(path='half_downloaded.jpg', reason='OSError: image file is truncated ...')]
    """
    paths = [str(path) for path in paths]
    with ThreadPoolExecutor(workers or default_workers()) as pool:
        problems = pool.map(image_problem, paths, chunksize=64)
        problems = tqdm(problems, total=len(paths), desc='Checking images', unit='image',
                        disable=not progress, mininterval=1)
        return [UnreadableImage(path, problem) for path, problem in zip(paths, problems)
                if problem is not None]


def _fingerprint(paths: Sequence[str]) -> str:
    """A digest of the files' paths, sizes and modification times."""
    digest = hashlib.sha256()
    for path in sorted(set(paths)):
        try:
            stat = os.stat(path)
            digest.update(f'{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n'.encode())
        except OSError:
            digest.update(f'{path}\0missing\n'.encode())
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where verdicts are kept: ``$XDG_CACHE_HOME/msinet_reid/image_checks``."""
    cache = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(cache) / 'msinet_reid' / 'image_checks'


def cached_check(paths: Sequence[PathLike], workers: Optional[int] = None,
                 progress: bool = True) -> List[UnreadableImage]:
    """:func:`check_images`, remembered: the same files, unchanged, are not read again."""
    paths = [str(path) for path in paths]
    record = cache_dir() / f'{_fingerprint(paths)}.json'
    try:
        return [UnreadableImage(*item) for item in json.loads(record.read_text())]
    except (OSError, ValueError, TypeError):
        pass
    unreadable = check_images(paths, workers, progress)
    try:
        atomic_write(record, lambda tmp: Path(tmp).write_text(json.dumps(unreadable)))
    except OSError:
        pass  # a read-only cache costs a check next time, nothing more
    return unreadable


def datamanager_images(datamanager, train: bool = True) -> List[str]:
    """The paths of the images a torchreid data manager reads: its training set (with
    ``train``) and the query and gallery sets of each test dataset."""
    items = []
    if train:
        items += getattr(getattr(datamanager.train_loader, 'dataset', None), 'data', None) or []
    for subsets in (getattr(datamanager, 'test_dataset', None) or {}).values():
        items += subsets['query'] + subsets['gallery']
    paths = []
    for item in items:  # (path, pid, camid, ...), or (paths of a tracklet, pid, ...)
        paths += [item[0]] if isinstance(item[0], (str, Path)) else list(item[0])
    return [str(path) for path in paths]


def drop_images(datamanager, paths: Iterable[PathLike]) -> None:
    """Leave the images at ``paths`` out of the data manager's query and gallery sets."""
    dropped = {str(path) for path in paths}
    if dropped:
        for subsets in datamanager.test_dataset.values():
            for items in subsets.values():  # the lists the test loaders' datasets read
                items[:] = [item for item in items if str(item[0]) not in dropped]


FIX = ('Re-download or restore these files, or remove them from the dataset folder (or run '
       '`msinet-reid check-data` to list them all).')


def require_readable(paths: Sequence[PathLike], workers: Optional[int] = None,
                     fix: str = FIX) -> None:
    """Raise :class:`UnreadableImagesError` if any image among ``paths`` does not decode.

    Under torchrun, rank 0 checks and every process receives its verdict, so all stop
    together. The verdict is cached (:func:`cached_check`): a second run pays a ``stat``
    per file.

    Example::

        >>> require_readable(datamanager_images(datamanager))
    """
    paths = [str(path) for path in paths]
    verdict = [cached_check(paths, workers)] if distributed.is_main_process() else [None]
    if distributed.is_distributed():
        import torch.distributed as dist

        dist.broadcast_object_list(verdict, src=0)
    if verdict[0]:
        raise UnreadableImagesError([UnreadableImage(*item) for item in verdict[0]],
                                    len(paths), fix)
