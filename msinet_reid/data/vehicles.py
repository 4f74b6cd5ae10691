"""The vehicle ReID datasets of the paper as torchreid image datasets.

Importing this module (``import msinet_reid`` does) registers them with torchreid as
``'veri'`` (:class:`VeRi`, VeRi-776) and ``'vehicleid'`` (:class:`VehicleID`), so
``torchreid.data.ImageDataManager(sources='veri', ...)`` reads them like the built-in
person datasets. Both follow torchreid's conventions: items are ``(path, pid, camid)``
with 0-based camids, train pids relabelled to ``0..N-1``, query and gallery pids kept.
"""
import glob
import os
import random
import re
import warnings
from typing import Dict, List, Sequence, Tuple, Type

from .._torchreid import data

__all__ = ['VeRi', 'VehicleID', 'register_datasets']

Item = Tuple[str, int, int]  # image path, vehicle id, camera id


class _VehicleDataset(data.ImageDataset):
    """Finds the dataset folder under ``root`` and explains what is missing."""

    title: str  # the dataset's name in messages
    folder_names: Tuple[str, ...]  # accepted names of the dataset folder, documented first
    layout: str  # the expected layout, formatted with the dataset folder

    def _locate(self, root: str) -> None:
        """Set ``root`` and ``dataset_dir``, the first of ``folder_names`` that exists."""
        self.root = os.path.abspath(os.path.expanduser(root))
        candidates = [os.path.join(self.root, name) for name in self.folder_names]
        self.dataset_dir = next((path for path in candidates if os.path.isdir(path)),
                                candidates[0])
        self.check_before_run([self.dataset_dir])

    def check_before_run(self, required_files: Sequence[str]) -> None:
        """Raise ``FileNotFoundError`` naming the first missing path and the layout."""
        for path in required_files:
            if not os.path.exists(path):
                raise FileNotFoundError(f'{self.title}: {path} is missing. Expected layout:\n'
                                        + self.layout.format(folder=self.dataset_dir))

    def _require(self, items: list, source: str, what: str) -> list:
        # torchreid's Dataset indexes the first item of every split: fail clearly instead.
        if not items:
            raise ValueError(f'{self.title}: no {what} in {source}. Expected layout:\n'
                             + self.layout.format(folder=self.dataset_dir))
        return items


def _relabel(items: List[Item]) -> List[Item]:
    """Train pids as class labels ``0..N-1``, in increasing pid order."""
    labels = {pid: label for label, pid in enumerate(sorted({pid for _, pid, _ in items}))}
    return [(path, labels[pid], camid) for path, pid, camid in items]


class VeRi(_VehicleDataset):
    """VeRi-776 (Liu et al., ICME 2016): 776 vehicles seen by 20 cameras.

    576 vehicles (37,778 images) for training, 200 for testing (1,678 query and 11,579
    gallery images). Names are ``VVVV_cCCC_FFFFFFFF_N.jpg``: vehicle id, camera (from 1),
    frame, index. torchreid's evaluation drops gallery images of the query's own vehicle
    and camera, which is VeRi's cross-camera protocol.

    Layout (the folder may also be called ``VeRi``)::

        <root>/veri/
            image_train/0001_c001_00016450_0.jpg ...
            image_query/0002_c002_00030600_0.jpg ...
            image_test/0002_c002_00030600_0.jpg ...

    Example::

        >>> import torchreid, msinet_reid
        >>> datamanager = torchreid.data.ImageDataManager(
        ...     root='reid-data', sources='veri', height=256, width=256)
    """

    title = 'VeRi-776'
    folder_names = ('veri', 'VeRi')
    layout = ('  {folder}/\n'
              '    image_train/   training images, e.g. 0001_c001_00016450_0.jpg\n'
              '                   (vehicle id, camera, frame, index)\n'
              '    image_query/   query images, named the same way\n'
              '    image_test/    gallery images, named the same way')
    _name = re.compile(r'(\d+)_c(\d+)_')

    def __init__(self, root: str = '', **kwargs):
        self._locate(root)
        self.train_dir = os.path.join(self.dataset_dir, 'image_train')
        self.query_dir = os.path.join(self.dataset_dir, 'image_query')
        self.gallery_dir = os.path.join(self.dataset_dir, 'image_test')
        self.check_before_run([self.train_dir, self.query_dir, self.gallery_dir])

        train = _relabel(self._read_folder(self.train_dir))
        query = self._read_folder(self.query_dir)
        gallery = self._read_folder(self.gallery_dir)
        super().__init__(train, query, gallery, **kwargs)

    def _read_folder(self, folder: str) -> List[Item]:
        items = []
        for path in sorted(glob.glob(os.path.join(folder, '*.jpg'))):
            match = self._name.match(os.path.basename(path))
            if match is None:
                raise ValueError(f'{self.title}: cannot read the vehicle id and camera from '
                                 f'{path}; expected a name like 0002_c002_00030600_0.jpg')
            pid, camera = map(int, match.groups())
            items.append((path, pid, camera - 1))  # torchreid counts cameras from 0
        return self._require(items, folder, '.jpg images')


class VehicleID(_VehicleDataset):
    """VehicleID (Liu et al., CVPR 2016): 26,267 vehicles seen from the front or rear.

    13,164 vehicles train; the test lists hold 800, 1,600 or 2,400 vehicles. Test protocol:
    one random image of each test vehicle is its gallery, the others are queries. The
    choice is drawn from ``random.Random(gallery_seed)``, so it is the same for the train,
    query and gallery datasets that torchreid's ``ImageDataManager`` builds separately;
    repeat the evaluation over several seeds to average the protocol's randomness.

    Args:
        root: the folder that holds ``vehicleid`` (or ``VehicleID``, ``VehicleID_V1.0``).
        test_size: 800, 1600 or 2400; which ``test_list_<size>.txt`` to test on. The
            default, 2400, is what the paper's reference code tests on. The number of
            vehicles in the list is not checked, so smaller lists (synthetic data) work.
        gallery_seed: seed of the gallery selection.

    Layout::

        <root>/vehicleid/
            image/0000001.jpg ...
            train_test_split/
                train_list.txt        lines '<image name> <vehicle id>', e.g. '0000001 1'
                test_list_800.txt     same format
                test_list_1600.txt
                test_list_2400.txt

    Example (``ImageDataManager`` passes only ``root`` and its own options, so register a
    variant to test on another size or seed)::

        >>> import functools, torchreid, msinet_reid
        >>> from msinet_reid.data import VehicleID
        >>> torchreid.data.register_image_dataset(
        ...     'vehicleid_800', functools.partial(VehicleID, test_size=800))
        >>> datamanager = torchreid.data.ImageDataManager(
        ...     root='reid-data', sources='vehicleid_800', height=256, width=256)
    """

    title = 'VehicleID'
    folder_names = ('vehicleid', 'VehicleID', 'VehicleID_V1.0')
    layout = ('  {folder}/\n'
              '    image/<image name>.jpg\n'
              "    train_test_split/train_list.txt   lines '<image name> <vehicle id>'\n"
              '    train_test_split/test_list_800.txt, test_list_1600.txt, '
              'test_list_2400.txt   same format')
    test_sizes = (800, 1600, 2400)
    # VehicleID records no cameras. torchreid's evaluation drops gallery images with the
    # query's pid *and* camid (same-camera matches), so query and gallery get different
    # camids: with equal ones every true match would be dropped.
    query_camid, gallery_camid = 0, 1

    def __init__(self, root: str = '', test_size: int = 2400, gallery_seed: int = 0,
                 **kwargs):
        if test_size not in self.test_sizes:
            raise ValueError(f'test_size must be one of {self.test_sizes}, got {test_size!r}')
        self._locate(root)
        self.image_dir = os.path.join(self.dataset_dir, 'image')
        split_dir = os.path.join(self.dataset_dir, 'train_test_split')
        self.train_list = os.path.join(split_dir, 'train_list.txt')
        self.test_list = os.path.join(split_dir, f'test_list_{test_size}.txt')
        self.check_before_run([self.image_dir, self.train_list, self.test_list])

        train = _relabel([(path, pid, 0) for path, pid in self._read_list(self.train_list)])
        query, gallery = self._split_test(self._read_list(self.test_list), gallery_seed)
        super().__init__(train, query, gallery, **kwargs)

    def _read_list(self, list_file: str) -> List[Tuple[str, int]]:
        items = []
        with open(list_file) as lines:
            for number, line in enumerate(lines, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2 or not fields[1].isdigit():
                    raise ValueError(f"{self.title}: {list_file}, line {number}: expected "
                                     f"'<image name> <vehicle id>', got {line.strip()!r}")
                path = os.path.join(self.image_dir, fields[0] + '.jpg')
                items.append((path, int(fields[1])))
        return self._require(items, list_file, 'images listed')

    def _split_test(self, items: List[Tuple[str, int]], seed: int
                    ) -> Tuple[List[Item], List[Item]]:
        """One random gallery image per vehicle, the rest are queries."""
        by_vehicle: Dict[int, List[str]] = {}
        for path, pid in items:
            by_vehicle.setdefault(pid, []).append(path)
        rng = random.Random(seed)
        query, gallery = [], []
        for pid, paths in by_vehicle.items():  # in the list's order, so the seed decides
            chosen = rng.randrange(len(paths))
            gallery.append((paths[chosen], pid, self.gallery_camid))
            query.extend((path, pid, self.query_camid)
                         for index, path in enumerate(paths) if index != chosen)
        return self._require(query, self.test_list, 'vehicle with two images or more'), gallery


DATASETS: Dict[str, Type[_VehicleDataset]] = {'veri': VeRi, 'vehicleid': VehicleID}


def register_datasets() -> None:
    """Register :data:`DATASETS` with torchreid's ``register_image_dataset``.

    ``import msinet_reid`` calls it. Calling it again (a re-import or module reload) is
    harmless: this module's own entries are refreshed. A different dataset that the user
    registered under one of the names first is kept, with a warning saying how to use
    this package's class under another name.

    Example::

        >>> register_datasets()  # already done by ``import msinet_reid``
    """
    registry = vars(data.datasets)['__image_datasets']  # torchreid's name -> class dict
    for name, dataset in DATASETS.items():
        present = registry.get(name)
        if present is None:
            data.register_image_dataset(name, dataset)
        elif (getattr(present, '__module__', None), getattr(present, '__qualname__', None)) \
                == (dataset.__module__, dataset.__qualname__):
            registry[name] = dataset  # ours, maybe from before a reload: use the current one
        else:
            warnings.warn(
                f'torchreid already has a dataset named {name!r} ({present!r}); keeping it. '
                f'To use msinet_reid.data.{dataset.__name__}, register it under another name: '
                f"torchreid.data.register_image_dataset('msinet_{name}', "
                f'msinet_reid.data.{dataset.__name__})', stacklevel=2)


register_datasets()
