"""Training and test data of one's own, as a folder or a list file, for torchreid.

Two layouts, either given as ``PATH``:

- a folder ``PATH/train/<identity>/<camera>/<image>``, with ``query/`` and ``gallery/``
  laid out alike (identity and camera names are any strings; images are files of any
  format Pillow opens, hidden files left out);
- a list file, CSV with the header ``path,identity,camera,split``: ``split`` is
  ``train``, ``query`` or ``gallery``, paths are relative to the file's folder, fields are
  stripped of surrounding spaces.

Without query and gallery images the data trains without evaluating, or, with
``test_ids=N``, holds out N training identities as query and gallery (:func:`hold_out`).

:func:`load_own_data` reads and checks the data; every problem found (a missing or
unreadable file, a query without a gallery match from another camera, a single camera,
duplicate paths, an empty split, a bad list line, ...) is named with its fix in one
:class:`OwnDataError`. :func:`register_own_data` registers the data with torchreid under a
name, so ``torchreid.data.ImageDataManager(sources=name)`` reads it.

Labels follow torchreid's conventions: samples are ``(path, pid, camid, dsetid)``; train
pids are ``0..N-1`` over the identity names sorted; query and gallery share one numbering
over their identity names sorted, and every split numbers cameras over all camera names
sorted, so the same name gets the same number.
"""
import csv
import functools
import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from PIL import Image

from .._torchreid import data as torchreid_data
from ..atomic import PathLike
from .images import LISTED, cached_check

__all__ = ['HEADER', 'OwnData', 'OwnDataError', 'OwnImageDataset', 'Record', 'SPLITS',
           'hold_out', 'load_own_data', 'register_own_data']

SPLITS = ('train', 'query', 'gallery')
OWN_NAME = 'own'  # the torchreid name that the commands register --data under
HEADER = ('path', 'identity', 'camera', 'split')
Sample = Tuple[str, int, int, int]  # torchreid's (path, pid, camid, dsetid)


class Record(NamedTuple):
    """One image: its path and the names of its identity and camera."""
    path: str  # absolute and normalised
    identity: str
    camera: str
    line: int = 0  # its line in the list file; 0 in a folder


class OwnDataError(ValueError):
    """Data that cannot be used; ``problems`` names every problem found, each with its fix."""

    def __init__(self, source: PathLike, problems: List[str]) -> None:
        self.problems = list(problems)
        listed = ''.join(f'\n  {number}. {problem}' for number, problem in enumerate(problems, 1))
        super().__init__(f'the data at {source} has {len(problems)} '
                         f'problem{"s" if len(problems) > 1 else ""}; fix them and retry:{listed}')


def _problem(what: str, cases: List[str], fix: str) -> List[str]:
    """``[]`` without ``cases``, else one problem: ``what``, the first
    :data:`~msinet_reid.data.images.LISTED` cases and their count, and ``fix``."""
    if not cases:
        return []
    more = len(cases) - LISTED
    listed = '; '.join(cases[:LISTED]) + (f'; ... and {more} more' if more > 0 else '')
    return [f'{what}: {listed}. {fix}']


@dataclass(frozen=True)
class OwnData:
    """Checked data of one's own: each split's records, sorted by path.

    Example::

        >>> own = load_own_data('shop-crops')
        >>> own.samples('train')[0]
        ('/data/shop-crops/train/alice/door/0001.jpg', 0, 0, 0)
    """
    source: Path  # the folder or the list file
    splits: Dict[str, List[Record]]  # every split of SPLITS, query and gallery maybe empty
    test_ids: int = 0  # identities held out of train as query and gallery
    seed: int = 0  # of the held-out identities' draw

    @property
    def root(self) -> Path:
        """The folder that the summary's paths are relative to: the data's, or the list
        file's."""
        return self.source if self.source.is_dir() else self.source.parent

    @property
    def evaluates(self) -> bool:
        """Whether the data has query and gallery images to evaluate on."""
        return bool(self.splits['query'])

    def samples(self, split: str) -> List[Sample]:
        """``split``'s records as torchreid samples ``(path, pid, camid, 0)``."""
        tested = self.splits['query'] + self.splits['gallery']
        numbered = self.splits['train'] if split == 'train' else tested
        pids = _numbers(record.identity for record in numbered)
        camids = _numbers(record.camera for records in self.splits.values()
                          for record in records)
        return [(record.path, pids[record.identity], camids[record.camera], 0)
                for record in self.splits[split]]

    def summary(self) -> dict:
        """Identities, images and cameras per split, and ``sha256``, a digest of every
        image's split, path (relative to the folder, or to the list file's folder) and
        identity and camera names: the same for the same data wherever it lies.

        Example::

            >>> load_own_data('shop-crops').summary()['splits']['train']
            {'images': 1200, 'identities': 100, 'cameras': 4}
        """
        return {'source': str(self.source),
                'layout': 'folder' if self.source.is_dir() else 'list',
                'test_ids': self.test_ids, 'seed': self.seed, 'evaluates': self.evaluates,
                **describe_splits(self.splits, self.root)}


def describe_splits(splits: Dict[str, Sequence[tuple]], root: PathLike) -> dict:
    """Images, identities and cameras of each split of ``(path, identity, camera, ...)``
    rows (records or torchreid samples), and ``sha256``, a digest of every row's split,
    path relative to ``root``, identity and camera.

    Example::

        >>> describe_splits({'train': [('/data/a/1.jpg', 'alice', 'door')]}, '/data')
        {'splits': {'train': {'images': 1, 'identities': 1, 'cameras': 1}}, 'sha256': '...'}
    """
    lines = sorted(f'{split}\t{Path(os.path.relpath(path, root)).as_posix()}\t{identity}\t'
                   f'{camera}\n' for split, rows in splits.items()
                   for path, identity, camera, *_ in rows)
    return {'splits': {split: {'images': len(rows),
                               'identities': len({row[1] for row in rows}),
                               'cameras': len({row[2] for row in rows})}
                       for split, rows in splits.items()},
            'sha256': hashlib.sha256(''.join(lines).encode()).hexdigest()}


def _numbers(names: Iterable[str]) -> Dict[str, int]:
    return {name: number for number, name in enumerate(sorted(set(names)))}


# ------------------------------------------------------------------------------------
# Reading: each reader returns the records of each split it found, and its problems; it
# raises OwnDataError when it can read nothing (no train/ folder, a wrong header).

Found = Tuple[Dict[str, List[Record]], List[str]]


@functools.lru_cache(maxsize=None)
def _image_extensions() -> frozenset:
    """The file extensions of the image formats Pillow opens (``.jpg``, ``.png``, ...)."""
    return frozenset(extension for extension, kind in Image.registered_extensions().items()
                     if kind in Image.OPEN)


def _visible(folder: Path) -> List[Path]:
    return sorted(entry for entry in folder.iterdir() if not entry.name.startswith('.'))


def _read_folder(root: Path) -> Found:
    layout = f'{root}/train/<identity>/<camera>/<image>'
    if not (root / 'train').is_dir():
        raise OwnDataError(root, [f'{root} has no train/ folder: lay the images out as '
                                  f'{layout}, with query/ and gallery/ alike to evaluate, or '
                                  f'pass a list file (CSV)'])
    splits = {split: [] for split in SPLITS}
    misplaced = []
    for split in (split for split in SPLITS if (root / split).is_dir()):
        for identity in _visible(root / split):
            for camera in _visible(identity) if identity.is_dir() else [identity]:
                for image in _visible(camera) if camera.is_dir() else [camera]:
                    if image.is_file() and image.parent.parent.parent == root / split:
                        if image.suffix.lower() in _image_extensions():
                            splits[split].append(
                                Record(os.path.abspath(image), identity.name, camera.name))
                    elif image.is_dir() or image.suffix.lower() in _image_extensions():
                        misplaced.append(str(image))
    return splits, _problem(f'not at {layout} (or query/, gallery/ alike)', misplaced,
                            'Move each image into the folder of its identity and camera')


def _read_list(list_file: Path) -> Found:
    try:
        return _parse_list(list_file)
    except UnicodeDecodeError as error:
        raise OwnDataError(list_file, [f'{list_file} is not UTF-8 text ({error}): pass a CSV '
                                       f'list file saved as UTF-8, or a folder']) from error


def _parse_list(list_file: Path) -> Found:
    with open(list_file, newline='', encoding='utf-8-sig') as file:  # -sig: Excel's BOM
        rows = csv.reader(file)
        header = [name.strip() for name in next(rows, [])]
        if header != list(HEADER):
            raise OwnDataError(list_file, [
                f'{list_file}, line 1: the header is {",".join(header)!r}; the first line '
                f'must be {",".join(HEADER)}'])
        splits = {split: [] for split in SPLITS}
        malformed, bad_splits = [], []
        for row in rows:
            fields = [value.strip() for value in row]
            if not any(fields):
                continue
            if len(fields) != len(HEADER) or not all(fields[:3]):
                malformed.append(f'line {rows.line_num}: {",".join(row)!r}')
            elif fields[3] not in splits:
                bad_splits.append(f'line {rows.line_num}: {fields[3]!r}')
            else:
                path = os.path.normpath(os.path.join(list_file.parent.absolute(), fields[0]))
                splits[fields[3]].append(Record(path, fields[1], fields[2], rows.line_num))
    return splits, (
        _problem(f'{list_file}: lines without a path, an identity, a camera and a split',
                 malformed, 'Give each line the four fields')
        + _problem(f'{list_file}: splits other than {", ".join(SPLITS)}', bad_splits,
                   'Write one of those three'))


def hold_out(train: List[Record], test_ids: int, seed: int = 0
             ) -> Tuple[List[Record], List[Record], List[Record]]:
    """``(train, query, gallery)``: ``test_ids`` identities, drawn with ``seed`` among the
    training identities seen by two cameras or more, moved from ``train`` to query and
    gallery. Of each held-out identity, the first image (by path) of each camera but the
    first (by name) is a query; all its other images are the gallery. Every query thus
    has a gallery match from another camera: the images of the first camera.

    Raises ``ValueError`` if fewer identities than ``test_ids`` have two cameras, or none
    would be left to train on.

    Example::

        >>> train, query, gallery = hold_out(load_own_data('shop-crops').splits['train'], 10)
    """
    if test_ids < 0:
        raise ValueError(f'--test-ids {test_ids}: pass a number of identities, 0 or more')
    by_identity: Dict[str, List[Record]] = {}
    for record in sorted(train):
        by_identity.setdefault(record.identity, []).append(record)
    eligible = sorted(identity for identity, records in by_identity.items()
                      if len({record.camera for record in records}) > 1)
    if test_ids > len(eligible):
        raise ValueError(
            f'--test-ids {test_ids}: {len(eligible)} training identities are seen by two '
            f'cameras or more, which a held-out identity needs (a query, and a gallery image '
            f'from another camera); pass --test-ids {len(eligible)} or fewer')
    if test_ids >= len(by_identity):
        raise ValueError(f'--test-ids {test_ids} holds out all {len(by_identity)} training '
                         f'identities; pass --test-ids {len(by_identity) - 1} or fewer')
    held = set(random.Random(seed).sample(eligible, test_ids))
    query, gallery = [], []
    for identity in sorted(held):
        first_camera = min(record.camera for record in by_identity[identity])
        queried = set()
        for record in by_identity[identity]:
            if record.camera != first_camera and record.camera not in queried:
                queried.add(record.camera)
                query.append(record)
            else:
                gallery.append(record)
    return [record for record in train if record.identity not in held], query, gallery


# ------------------------------------------------------------------------------------
# Checks: each returns the problems it finds, each named with its fix.


def _duplicates(splits: Dict[str, List[Record]]) -> List[str]:
    seen: Dict[str, List[str]] = {}
    for split, records in splits.items():
        for record in records:
            seen.setdefault(record.path, []).append(
                f'line {record.line}' if record.line else split)
    repeated = [f'{path} ({", ".join(where)})' for path, where in seen.items() if len(where) > 1]
    return _problem('paths listed more than once', repeated, 'List each image once, in one split')


def _empty_splits(splits: Dict[str, List[Record]], source: Path) -> List[str]:
    problems = [f'{source} has no train images: add some'] if not splits['train'] else []
    for split, other in (('query', 'gallery'), ('gallery', 'query')):
        if splits[other] and not splits[split]:
            problems.append(f'{source} has {other} images but no {split} images: add {split} '
                            f'images to evaluate, or remove the {other} images to train '
                            f'without evaluating')
    return problems


def _evaluation_problems(query: List[Record], gallery: List[Record]) -> List[str]:
    cameras = {record.camera for record in query + gallery}
    if len(cameras) == 1:
        return [f'query and gallery hold one camera, {next(iter(cameras))!r}: evaluation '
                f'leaves out gallery images from the query\'s own camera, so it would leave '
                f'out every match. Give the images their true cameras']
    matched = {(record.identity, record.camera) for record in gallery}
    gallery_cameras: Dict[str, set] = {}
    for identity, camera in matched:
        gallery_cameras.setdefault(identity, set()).add(camera)
    unmatched = sorted({(record.identity, record.camera) for record in query
                        if not gallery_cameras.get(record.identity, set()) - {record.camera}})
    return _problem('query identities without a gallery image from another camera '
                    '(evaluation leaves out same-camera matches, so their queries would '
                    'count for nothing)',
                    [f'{identity!r} (camera {camera!r})' for identity, camera in unmatched],
                    'Add gallery images of them from other cameras, or remove their queries')


def _file_problems(records: List[Record], workers: Optional[int]) -> List[str]:
    verdicts = cached_check([record.path for record in records], workers)
    missing = [image.path for image in verdicts if image.reason == 'no such file']
    unreadable = [f'{image.path}: {image.reason}' for image in verdicts
                  if image.reason != 'no such file']
    return (_problem('missing files', missing,
                     'Restore them, or remove them from the list or folder')
            + _problem('images that do not decode', unreadable,
                       'Re-download or restore them, or remove them from the list or folder'))


def load_own_data(path: PathLike, test_ids: int = 0, seed: int = 0, images: bool = True,
                  workers: Optional[int] = None) -> OwnData:
    """The data at ``path`` (a folder, or a CSV list file), checked.

    Args:
        path: the folder holding ``train/`` (and ``query/``, ``gallery/``), or the list file.
        test_ids: without query and gallery, hold out this many training identities as
            query and gallery (:func:`hold_out`); 0 trains without evaluating.
        seed: the seed of the held-out identities' draw.
        images: also decode every image (in ``workers`` threads; the verdict is cached
            like training's check); with ``False`` missing and damaged files are left for
            the caller to find.

    Raises :class:`OwnDataError` naming every problem found, and ``FileNotFoundError`` if
    there is nothing at ``path``.

    Example::

        >>> own = load_own_data('shop-crops', test_ids=10)
        >>> own.summary()['splits']['query']['identities']
        10
    """
    source = Path(path).expanduser().absolute()
    if not source.exists():
        raise FileNotFoundError(f'no data at {source}: pass a folder holding train/ or a '
                                f'list file (CSV, header {",".join(HEADER)})')
    splits, problems = (_read_folder if source.is_dir() else _read_list)(source)
    if test_ids and (splits['query'] or splits['gallery']):
        problems.append(f'--test-ids {test_ids} holds training identities out as query and '
                        f'gallery, but {source} has its own: leave --test-ids out')
    elif test_ids and splits['train']:
        try:
            splits['train'], splits['query'], splits['gallery'] = hold_out(
                splits['train'], test_ids, seed)
        except ValueError as error:
            problems.append(str(error))
    problems += _empty_splits(splits, source)
    problems += _duplicates(splits)
    if splits['query'] and splits['gallery']:
        problems += _evaluation_problems(splits['query'], splits['gallery'])
    if images:
        problems += _file_problems([record for records in splits.values()
                                    for record in records], workers)
    if problems:
        raise OwnDataError(source, problems)
    return OwnData(source, {split: sorted(records) for split, records in splits.items()},
                   test_ids, seed)


# ------------------------------------------------------------------------------------
# torchreid


class OwnImageDataset(torchreid_data.ImageDataset):
    """torchreid's ``ImageDataset`` over :class:`OwnData`; torchreid's options (``mode``,
    ``transform``, ``combineall``, ...) as for its own datasets; ``root`` is not used.
    Data without query and gallery gives empty query and gallery sets.

    Example::

        >>> dataset = OwnImageDataset(load_own_data('shop-crops'), mode='query')
    """

    def __init__(self, own: OwnData, root: str = '', **kwargs) -> None:
        self.own = own
        train, query, gallery = (own.samples(split) for split in SPLITS)
        if own.evaluates:
            super().__init__(train, query, gallery, **kwargs)
            return
        # torchreid's Dataset reads the first sample of every split: give it the first
        # training image for query and gallery, then empty them; nothing to combine.
        super().__init__(train, train[:1], train[:1],
                         **{**kwargs, 'combineall': False, 'verbose': False})
        self.query, self.gallery = [], []
        if self.mode != 'train':
            self.data = []
        if kwargs.get('verbose', True):
            self.show_summary()


def _ours(dataset) -> bool:
    return isinstance(dataset, functools.partial) and dataset.func is OwnImageDataset


def register_own_data(name: str, path: PathLike, test_ids: int = 0, seed: int = 0,
                      images: bool = True, workers: Optional[int] = None) -> OwnData:
    """Read and check the data at ``path`` (:func:`load_own_data`) and register it with
    torchreid as image dataset ``name``; returns the data.

    ``torchreid.data.ImageDataManager(root=..., sources=name)`` then reads it (its
    ``root`` is not used). Registering a name again replaces the data registered under it
    by this function; a name of another dataset raises ``ValueError``.

    Example::

        >>> register_own_data('shop', 'shop-crops', test_ids=10)
        >>> datamanager = torchreid.data.ImageDataManager(root='', sources='shop')
    """
    registry = vars(torchreid_data.datasets)['__image_datasets']  # torchreid's name -> class
    if name in registry and not _ours(registry[name]):
        raise ValueError(f'torchreid already has a dataset named {name!r} '
                         f'({registry[name]!r}): register the data under another name')
    own = load_own_data(path, test_ids, seed, images, workers)
    registry[name] = functools.partial(OwnImageDataset, own)
    return own
