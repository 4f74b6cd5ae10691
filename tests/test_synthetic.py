"""The synthetic Market-1501 generator: layout, determinism, reuse and torchreid reading it."""
import collections
import hashlib
import json
import re

import numpy as np
import pytest
from PIL import Image

import msinet_reid  # noqa: F401  (makes torchreid.data importable)
from msinet_reid.data import make_market1501, synthetic
from torchreid.data.datasets.image import Market1501

TINY = dict(num_train_ids=6, num_test_ids=4, images_per_camera=3, height=64, width=32)
NAME = re.compile(r'^(\d{4})_c([1-6])s[1-6]_\d{6}_\d{2}\.jpg$')
SPLITS = ('bounding_box_train', 'query', 'bounding_box_test')


def files(folder):
    """{relative path: bytes} of every file under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob('*') if p.is_file()}


def images(folder, split):
    """(pid, camera) of each image of one split, parsed from the file names."""
    names = sorted(p.name for p in (folder / split).iterdir())
    assert all(NAME.match(n) for n in names), names
    return [tuple(map(int, NAME.match(n).groups())) for n in names]


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic')
    return root, make_market1501(root, progress=False, **TINY)


def test_layout_and_names(tiny):
    root, folder = tiny
    assert folder == root.resolve() / 'market1501' / 'Market-1501-v15.09.15'
    assert sorted(p.name for p in folder.iterdir()) == sorted(SPLITS + (synthetic.MARKER,))
    train, query, gallery = (images(folder, split) for split in SPLITS)

    per_camera = collections.Counter(train)
    assert set(per_camera.values()) == {3}
    cameras = collections.defaultdict(set)
    for pid, camera in per_camera:
        cameras[pid].add(camera)
    assert sorted(cameras) == [1, 2, 3, 4, 5, 6]
    assert all(len(c) >= 2 for c in cameras.values())

    # One query per (test id, camera), the two other images in the gallery.
    assert len(query) == len(set(query))
    assert {pid for pid, _ in query} == {7, 8, 9, 10}
    real = collections.Counter(shot for shot in gallery if shot[0] != 0)
    assert real == {shot: 2 for shot in query}
    assert 1 <= sum(pid == 0 for pid, _ in gallery) <= 8
    with Image.open(next((folder / 'query').iterdir())) as image:
        assert image.size == (32, 64)


def test_same_parameters_give_identical_bytes(tiny, tmp_path):
    _, folder = tiny
    assert files(make_market1501(tmp_path / 'a', progress=False, **TINY)) == files(folder)
    other_seed = files(make_market1501(tmp_path / 'b', seed=1, progress=False, **TINY))
    assert other_seed.keys() != files(folder).keys()


# sha256 over the (path, bytes) of every file of the TINY dataset, written by the generator
# before it had domains (Pillow 13.0.0's JPEG encoder): the default domain must not change.
TINY_SHA256 = '60fd44233cd357469a44740828adb3a8b56d69ac7549e2ee9a788c5c384e67da'


def digest(folder):
    sha = hashlib.sha256()
    for path, content in sorted(files(folder).items()):
        sha.update(path.encode())
        sha.update(content)
    return sha.hexdigest()


def mean_pixel(folder, split='bounding_box_train'):
    return np.mean([np.asarray(Image.open(p), np.float32).mean(axis=(0, 1))
                    for p in (folder / split).iterdir()], axis=0)


def test_default_domain_is_unchanged_and_campus_is_shifted(tiny, tmp_path):
    _, street = tiny
    assert digest(street) == TINY_SHA256
    campus = make_market1501(tmp_path, progress=False, domain='campus', **TINY)
    # The same people and cameras (the same seed) in another look: darker and bluer.
    for split in SPLITS:
        assert images(campus, split) == images(street, split)
    assert json.loads((campus / synthetic.MARKER).read_text())['parameters']['domain'] == 'campus'
    street_rgb, campus_rgb = mean_pixel(street), mean_pixel(campus)
    assert campus_rgb.mean() < 0.9 * street_rgb.mean()
    assert campus_rgb[2] / campus_rgb[0] > 1.1 * street_rgb[2] / street_rgb[0]
    with pytest.raises(ValueError, match='domain must be one of street, campus'):
        make_market1501(tmp_path / 'x', progress=False, domain='night', **TINY)


def test_second_call_reuses_and_changed_parameters_regenerate(tmp_path):
    folder = make_market1501(tmp_path, progress=False, **TINY)
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob('*')}
    assert make_market1501(tmp_path, progress=False, **TINY) == folder
    assert {p: p.stat().st_mtime_ns for p in folder.rglob('*')} == stamps

    before = files(folder)
    assert make_market1501(tmp_path, progress=False, **dict(TINY, seed=3)) == folder
    assert files(folder) != before
    assert json.loads((folder / synthetic.MARKER).read_text())['parameters']['seed'] == 3
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging left


def test_interrupted_run_leaves_the_previous_dataset(tmp_path, monkeypatch):
    folder = make_market1501(tmp_path, progress=False, **TINY)
    before = files(folder)
    render, calls = synthetic._render, []

    def failing_render(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return render(*args, **kwargs)

    monkeypatch.setattr(synthetic, '_render', failing_render)
    with pytest.raises(KeyboardInterrupt):
        make_market1501(tmp_path, progress=False, **dict(TINY, seed=3))
    assert files(folder) == before
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]


def test_foreign_folder_is_not_deleted(tmp_path):
    photo = tmp_path / 'market1501' / 'Market-1501-v15.09.15' / 'query' / '0001_c1s1_000151_01.jpg'
    photo.parent.mkdir(parents=True)
    photo.write_bytes(b'real data')
    with pytest.raises(FileExistsError, match='not written by'):
        make_market1501(tmp_path, progress=False, **TINY)
    assert photo.read_bytes() == b'real data'


def test_torchreid_reads_it(tiny):
    root, folder = tiny
    dataset = Market1501(root=str(root))
    assert dataset.num_train_pids == 6
    assert dataset.num_train_cams == len({camera for _, camera in images(folder, SPLITS[0])})
    assert len(dataset.query) == len(images(folder, 'query'))
    assert len(dataset.gallery) == len(images(folder, 'bounding_box_test'))
    gallery = {(pid, camid) for _, pid, camid, *_ in dataset.gallery}
    for _, pid, camid, *_ in dataset.query:  # torchreid's evaluation ignores same-camera matches
        assert any(g_pid == pid and g_camid != camid for g_pid, g_camid in gallery)


def test_image_data_manager_loads_a_batch(tiny):
    import torchreid

    root, _ = tiny
    manager = torchreid.data.ImageDataManager(
        root=str(root), sources='market1501', height=64, width=32, batch_size_train=8,
        batch_size_test=8, workers=0, transforms=None)
    assert manager.num_train_pids == 6
    batch = next(iter(manager.test_loader['market1501']['query']))
    assert tuple(batch['img'].shape[1:]) == (3, 64, 32)


def test_progress_bar_only_when_asked(tmp_path, capfd):
    make_market1501(tmp_path / 'quiet', progress=False, **TINY)
    assert capfd.readouterr().err == ''
    make_market1501(tmp_path / 'loud', progress=True, **TINY)
    assert '100%' in capfd.readouterr().err


@pytest.mark.parametrize('bad, name', [
    (dict(num_cameras=1), 'num_cameras'), (dict(num_cameras=7), 'num_cameras'),
    (dict(height=0), 'height'), (dict(width=-32), 'width'), (dict(width=32.0), 'width'),
    (dict(images_per_camera=1), 'images_per_camera'), (dict(num_train_ids=0), 'num_train_ids'),
    (dict(num_test_ids=0), 'num_test_ids'), (dict(seed=-1), 'seed'),
    (dict(num_train_ids=1000, num_test_ids=502), 'num_train_ids \\+ num_test_ids'),
])
def test_bad_arguments_raise(tmp_path, bad, name):
    with pytest.raises(ValueError, match=f'^{name} must'):
        make_market1501(tmp_path, progress=False, **dict(TINY, **bad))
    assert not (tmp_path / 'market1501').exists()
