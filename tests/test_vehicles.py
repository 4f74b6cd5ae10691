"""VeRi-776 and VehicleID: the synthetic layouts, torchreid reading them, errors, registration."""
import collections
import functools
import importlib
import re
import warnings

import numpy as np
import pytest
from PIL import Image

import msinet_reid  # noqa: F401  (registers the datasets, makes torchreid.data importable)
import torchreid
from msinet_reid.data import VehicleID, VeRi, make_vehicleid, make_veri, vehicles
from torchreid.metrics import evaluate_rank

VERI_SIZE = dict(num_train_ids=6, num_test_ids=4, images_per_camera=2, num_cameras=5,
                 height=64, width=64)
VEHICLEID_SIZE = dict(num_train_ids=6, num_test_ids=6, images_per_camera=2, num_cameras=3,
                      height=64, width=64)
VERI_NAME = re.compile(r'^(\d{4})_c(\d{3})_\d{8}_0\.jpg$')
LIST_LINE = re.compile(r'^(\d{7}) (\d+)$')


def files(folder):
    """{relative path: bytes} of every file under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob('*') if p.is_file()}


def veri_images(folder):
    """(pid, camera) of each image of a VeRi folder, parsed from the file names."""
    names = sorted(p.name for p in folder.iterdir())
    assert all(VERI_NAME.match(n) for n in names), names
    return [tuple(map(int, VERI_NAME.match(n).groups())) for n in names]


def listed(list_file):
    """[(image name, vehicle id)] of a VehicleID list."""
    lines = list_file.read_text().splitlines()
    assert all(LIST_LINE.match(line) for line in lines), lines
    return [(name, int(pid)) for name, pid in (line.split() for line in lines)]


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp('vehicles')
    make_veri(root, progress=False, **VERI_SIZE)
    make_vehicleid(root, progress=False, **VEHICLEID_SIZE)
    return root


@pytest.fixture
def registry():
    """torchreid's dataset registry, restored after the test."""
    entries = vars(torchreid.data.datasets)['__image_datasets']
    saved = dict(entries)
    yield entries
    entries.clear()
    entries.update(saved)


def manager(root, source):
    return torchreid.data.ImageDataManager(
        root=str(root), sources=source, height=64, width=64, batch_size_train=8,
        batch_size_test=8, workers=0, transforms=None)


# ---------------------------------------------------------------------------- the layouts

def test_synthetic_veri_layout(root):
    folder = root / 'veri'
    train, query, gallery = (veri_images(folder / split)
                             for split in ('image_train', 'image_query', 'image_test'))
    assert set(collections.Counter(train).values()) == {2}  # images_per_camera
    assert {pid for pid, _ in train} == set(range(1, 7))
    cameras = collections.defaultdict(set)
    for pid, camera in train + query:
        cameras[pid].add(camera)
    assert all(2 <= len(c) <= 5 for c in cameras.values())
    # One query per (test vehicle, camera); the other image of that camera in the gallery.
    assert {pid for pid, _ in query} == {7, 8, 9, 10}
    assert collections.Counter(gallery) == {shot: 1 for shot in query}
    with Image.open(next((folder / 'image_query').iterdir())) as image:
        assert image.size == (64, 64)


def test_synthetic_vehicleid_layout(root):
    folder = root / 'vehicleid'
    train = listed(folder / 'train_test_split' / 'train_list.txt')
    tests = {size: listed(folder / 'train_test_split' / f'test_list_{size}.txt')
             for size in (800, 1600, 2400)}
    assert {pid for _, pid in train} == set(range(1, 7))
    # The lists are nested: a third, two thirds and all of the six test vehicles.
    assert [sorted({pid for _, pid in tests[size]}) for size in (800, 1600, 2400)] == \
        [[7, 8], [7, 8, 9, 10], [7, 8, 9, 10, 11, 12]]
    assert tests[800] == tests[2400][:len(tests[800])]
    names = [name for name, _ in train + tests[2400]]
    assert len(names) == len(set(names))
    assert sorted(p.stem for p in (folder / 'image').iterdir()) == sorted(names)
    assert all(n >= 2 for n in collections.Counter(pid for _, pid in train).values())


def test_same_parameters_give_identical_bytes(root, tmp_path):
    for make, size, name in ((make_veri, VERI_SIZE, 'veri'),
                             (make_vehicleid, VEHICLEID_SIZE, 'vehicleid')):
        assert files(make(tmp_path / 'a', progress=False, **size)) == files(root / name)
        assert files(make(tmp_path / 'b', seed=1, progress=False, **size)) != \
            files(root / name)


@pytest.mark.parametrize('make, bad, name', [
    (make_veri, dict(num_cameras=21), 'num_cameras'),
    (make_veri, dict(images_per_camera=1), 'images_per_camera'),
    (make_veri, dict(num_train_ids=700, num_test_ids=77), 'num_train_ids \\+ num_test_ids'),
    (make_vehicleid, dict(num_test_ids=2), 'num_test_ids'),
    (make_vehicleid, dict(num_cameras=1), 'num_cameras'),
])
def test_bad_arguments_raise(tmp_path, make, bad, name):
    size = VERI_SIZE if make is make_veri else VEHICLEID_SIZE
    with pytest.raises(ValueError, match=f'^{name} must'):
        make(tmp_path, progress=False, **dict(size, **bad))
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------ torchreid reading them

def test_veri_through_image_data_manager(root):
    datamanager = manager(root, 'veri')
    train_cameras = {camera for _, camera in veri_images(root / 'veri' / 'image_train')}
    assert datamanager.num_train_pids == 6
    assert datamanager.num_train_cams == len(train_cameras)
    dataset = datamanager.train_loader.dataset
    assert sorted({pid for _, pid, *_ in dataset.train}) == list(range(6))  # relabelled
    loaders = datamanager.test_loader['veri']
    for split, folder in (('query', 'image_query'), ('gallery', 'image_test')):
        items = loaders[split].dataset.data
        # Test pids are kept; cameras count from 0.
        assert sorted((pid, camid + 1) for _, pid, camid, _ in items) == \
            sorted(veri_images(root / 'veri' / folder))
    batch = next(iter(loaders['query']))
    assert tuple(batch['img'].shape[1:]) == (3, 64, 64)


def test_vehicleid_through_image_data_manager(root):
    datamanager = manager(root, 'vehicleid')
    assert datamanager.num_train_pids == 6
    assert datamanager.num_train_cams == 1
    # torchreid builds query and gallery separately: the seeded split must agree.
    loaders = datamanager.test_loader['vehicleid']
    query, gallery = (loaders[split].dataset.data for split in ('query', 'gallery'))
    test = listed(root / 'vehicleid' / 'train_test_split' / 'test_list_2400.txt')
    assert sorted(item[0] for item in query + gallery) == \
        sorted(str(root / 'vehicleid' / 'image' / f'{name}.jpg') for name, _ in test)
    assert sorted(pid for _, pid, _, _ in gallery) == list(range(7, 13))
    batch = next(iter(loaders['gallery']))
    assert tuple(batch['img'].shape[1:]) == (3, 64, 64)


@pytest.mark.parametrize('test_size, test_pids', [(800, 2), (1600, 4), (2400, 6)])
def test_vehicleid_test_sizes(root, test_size, test_pids):
    dataset = VehicleID(str(root), test_size=test_size, verbose=False)
    test = listed(root / 'vehicleid' / 'train_test_split' / f'test_list_{test_size}.txt')
    assert len(dataset.gallery) == len({pid for _, pid, _, _ in dataset.gallery}) == test_pids
    assert len(dataset.query) + len(dataset.gallery) == len(test)
    assert {camid for *_, camid, _ in dataset.query} == {VehicleID.query_camid}
    assert {camid for *_, camid, _ in dataset.gallery} == {VehicleID.gallery_camid}


def test_vehicleid_gallery_is_seeded(root):
    def gallery(seed):
        return VehicleID(str(root), gallery_seed=seed, verbose=False).gallery

    assert gallery(0) == gallery(0)
    assert gallery(1) == gallery(1)
    assert gallery(0) != gallery(1)
    assert [pid for _, pid, *_ in gallery(0)] == [pid for _, pid, *_ in gallery(1)]


def test_evaluation_keeps_vehicleid_matches(root):
    """torchreid drops gallery images with the query's pid and camid: VehicleID's
    different query and gallery camids keep every true match."""
    dataset = VehicleID(str(root), verbose=False)
    (q_pids, q_camids), (g_pids, g_camids) = (
        (np.array([item[1] for item in split]), np.array([item[2] for item in split]))
        for split in (dataset.query, dataset.gallery))
    distmat = (q_pids[:, None] != g_pids[None, :]).astype(np.float32)
    cmc, mean_ap = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=1)
    assert cmc[0] == 1.0 and mean_ap == 1.0
    with pytest.raises(AssertionError, match='do not appear in gallery'):
        evaluate_rank(distmat, q_pids, g_pids, q_camids, np.zeros_like(g_camids), max_rank=1)


def test_other_test_size_through_image_data_manager(root, registry):
    torchreid.data.register_image_dataset(
        'vehicleid_800', functools.partial(VehicleID, test_size=800, gallery_seed=3))
    datamanager = manager(root, 'vehicleid_800')
    gallery = datamanager.test_loader['vehicleid_800']['gallery'].dataset.data
    assert gallery == VehicleID(str(root), test_size=800, gallery_seed=3, verbose=False).gallery


def test_bad_test_size_raises(root):
    with pytest.raises(ValueError, match=r'^test_size must be one of \(800, 1600, 2400\)'):
        VehicleID(str(root), test_size=1000)


# ----------------------------------------------------------------------------- the errors

def skeleton(root, paths):
    """A dataset layout of empty folders (ending in /) and files."""
    for path in paths:
        target = root / path
        if path.endswith('/'):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text('0000001 1\n')
    return root


VERI_FOLDERS = ['veri/image_train/', 'veri/image_query/', 'veri/image_test/']
VEHICLEID_FILES = ['vehicleid/image/'] + [
    f'vehicleid/train_test_split/{name}.txt'
    for name in ('train_list', 'test_list_800', 'test_list_1600', 'test_list_2400')]


@pytest.mark.parametrize('dataset, present, missing', [
    (VeRi, [], 'veri'),
    (VeRi, [p for p in VERI_FOLDERS if 'query' not in p], 'veri/image_query'),
    (VehicleID, [], 'vehicleid'),
    (VehicleID, VEHICLEID_FILES[1:], 'vehicleid/image'),
    (VehicleID, [p for p in VEHICLEID_FILES if 'train_list' not in p],
     'vehicleid/train_test_split/train_list.txt'),
    (VehicleID, [p for p in VEHICLEID_FILES if '2400' not in p],
     'vehicleid/train_test_split/test_list_2400.txt'),
])
def test_missing_path_is_named_with_the_layout(tmp_path, dataset, present, missing):
    skeleton(tmp_path, present)
    with pytest.raises(FileNotFoundError) as error:
        dataset(str(tmp_path))
    message = str(error.value)
    assert message.startswith(f'{dataset.title}: {tmp_path / missing} is missing. '
                              'Expected layout:\n')
    assert str(tmp_path / missing.split('/')[0]) + '/\n' in message
    for part in ('image_train/', 'image_query/', 'image_test/') if dataset is VeRi else \
            ('image/', 'train_list.txt', 'test_list_800.txt', 'test_list_2400.txt'):
        assert part in message


def test_alternative_folder_names(root, tmp_path):
    (tmp_path / 'VeRi').symlink_to(root / 'veri')
    (tmp_path / 'VehicleID_V1.0').symlink_to(root / 'vehicleid')
    assert VeRi(str(tmp_path), verbose=False).dataset_dir == str(tmp_path / 'VeRi')
    assert VehicleID(str(tmp_path), verbose=False).num_train_pids == 6


def test_empty_folder_and_bad_names_raise(tmp_path):
    skeleton(tmp_path, VERI_FOLDERS)
    with pytest.raises(ValueError, match=r'^VeRi-776: no \.jpg images in .*image_train'):
        VeRi(str(tmp_path))
    (tmp_path / 'veri' / 'image_train' / 'car.jpg').write_bytes(b'')
    with pytest.raises(ValueError, match='cannot read the vehicle id and camera from .*car.jpg'):
        VeRi(str(tmp_path))


def test_bad_list_line_raises(tmp_path):
    skeleton(tmp_path, VEHICLEID_FILES)
    (tmp_path / 'vehicleid' / 'train_test_split' / 'train_list.txt').write_text(
        '0000001 1\n\n0000002 two\n')
    with pytest.raises(ValueError, match=r"train_list.txt, line 3: expected '<image name> "
                                         r"<vehicle id>', got '0000002 two'"):
        VehicleID(str(tmp_path))


def test_test_list_without_queries_raises(tmp_path):
    skeleton(tmp_path, VEHICLEID_FILES)  # one image of one vehicle in every list
    with pytest.raises(ValueError, match='no vehicle with two images or more in .*2400'):
        VehicleID(str(tmp_path))


# ------------------------------------------------------------------------ the registration

def test_registered_on_import(registry):
    assert registry['veri'] is VeRi and registry['vehicleid'] is VehicleID


def test_registering_again_is_silent_and_reload_refreshes(registry):
    module = dict(vars(vehicles))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            vehicles.register_datasets()
            importlib.reload(vehicles)
        assert registry['veri'] is vehicles.VeRi is not VeRi
        assert registry['vehicleid'] is vehicles.VehicleID is not VehicleID
    finally:  # back to the classes that msinet_reid.data exports
        vars(vehicles).update(module)


def test_a_users_dataset_is_kept(registry):
    class MyVeRi(torchreid.data.ImageDataset):
        pass

    del registry['veri']
    torchreid.data.register_image_dataset('veri', MyVeRi)
    with pytest.warns(UserWarning, match="already has a dataset named 'veri'.*keeping it"):
        vehicles.register_datasets()
    assert registry['veri'] is MyVeRi
    assert registry['vehicleid'] is VehicleID
