"""Data of one's own: a folder or a CSV list read into torchreid samples, checked (every
problem named in one error), registered with torchreid, and given to the commands with
--data."""
import csv
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import torchreid
from PIL import Image

from msinet_reid.cli import main
from msinet_reid.data import OwnDataError, load_own_data, register_own_data

HEIGHT, WIDTH = 32, 16
# (split, identity, camera, file): names of any kind, three image formats. Queries are
# seen by 'cam 2' and matched in the gallery by 'Cam-1' images; 'distractor' is gallery only.
CROPS = [
    *[('train', identity, camera, f'{index}.{suffix}')
      for identity in ('007', 'Zoë', 'a person') for camera in ('Cam-1', 'cam 2')
      for index, suffix in enumerate(('png', 'jpg', 'bmp'))],
    *[('query', identity, 'cam 2', 'q.jpg') for identity in ('visitor 1', 'visitor 2')],
    *[('gallery', identity, camera, f'{index}.png')
      for identity in ('visitor 1', 'visitor 2') for camera in ('Cam-1', 'cam 2')
      for index in range(2)],
    ('gallery', 'distractor', 'Cam-1', 'd.bmp'),
]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """No verdict on the images remembered from another test."""
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))


def write_crops(root: Path, crops=CROPS) -> Path:
    """``crops`` as ``root/<split>/<identity>/<camera>/<file>``, random pixels; ``root``."""
    rng = np.random.default_rng(0)
    for split, identity, camera, name in crops:
        path = root / split / identity / camera / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(path)
    return root


def write_list(path: Path, rows: List[Tuple[str, ...]], header=('path', 'identity', 'camera',
                                                                'split')) -> Path:
    with open(path, 'w', newline='') as file:
        csv.writer(file).writerows([header, *rows])
    return path


def list_rows(crops=CROPS) -> List[Tuple[str, ...]]:
    """The list file's lines for ``crops`` written by :func:`write_crops` beside it."""
    return [(f'{split}/{identity}/{camera}/{name}', identity, camera, split)
            for split, identity, camera, name in crops]


@pytest.fixture
def folder(tmp_path) -> Path:
    return write_crops(tmp_path / 'crops')


def test_folder_and_list_read_to_the_same_samples(folder):
    from_folder = load_own_data(folder)
    # The list lies in the folder, in shuffled order, so its paths name the same files.
    rows = list_rows()
    np.random.default_rng(1).shuffle(rows)
    from_list = load_own_data(write_list(folder / 'crops.csv', rows))
    for split in ('train', 'query', 'gallery'):
        assert from_list.samples(split) == from_folder.samples(split)
    assert from_list.summary()['sha256'] == from_folder.summary()['sha256']
    assert from_folder.summary()['splits'] == {
        'train': {'images': 18, 'identities': 3, 'cameras': 2},
        'query': {'images': 2, 'identities': 2, 'cameras': 1},
        'gallery': {'images': 9, 'identities': 3, 'cameras': 2}}
    # Labels: names sorted; train pids 0..N-1; query and gallery share their numbering,
    # and every split numbers cameras alike.
    train = from_folder.samples('train')
    assert train[0] == (str(folder / 'train/007/Cam-1/0.png'), 0, 0, 0)
    assert {Path(path).parts[-3]: pid for path, pid, _, _ in train} == {
        '007': 0, 'Zoë': 1, 'a person': 2}  # Python's order: 'Z' < 'a'
    tested = {Path(path).parts[-3]: pid for path, pid, _, _ in
              from_folder.samples('query') + from_folder.samples('gallery')}
    assert tested == {'distractor': 0, 'visitor 1': 1, 'visitor 2': 2}
    assert {camid for _, _, camid, _ in from_folder.samples('query')} == {1}


def test_summary_digest_follows_the_labels_not_the_location(folder, tmp_path):
    digest = load_own_data(folder).summary()['sha256']
    assert load_own_data(folder.rename(tmp_path / 'moved')).summary()['sha256'] == digest
    (tmp_path / 'moved' / 'train' / 'Zoë').rename(tmp_path / 'moved' / 'train' / 'Zoe')
    assert load_own_data(tmp_path / 'moved').summary()['sha256'] != digest


def problems_of(path, **options) -> List[str]:
    with pytest.raises(OwnDataError) as error:
        load_own_data(path, **options)
    assert str(error.value).startswith(f'the data at {path} has {len(error.value.problems)}')
    return error.value.problems


def test_every_problem_of_a_list_is_named_in_one_error(folder):
    (folder / 'train/007/Cam-1/0.png').unlink()
    broken = folder / 'train/Zoë/Cam-1/0.png'
    broken.write_bytes(broken.read_bytes()[:60])
    rows = [row for row in list_rows() if row[0] != 'query/visitor 2/cam 2/q.jpg'
            and not row[0].startswith('gallery/visitor 1/Cam-1')]
    rows += [rows[3],  # line 28: listed again
             ('train/x.png', 'x', 'c', 'test'), ('train/y.png', 'y', '', 'train')]
    problems = problems_of(write_list(folder / 'crops.csv', rows))
    assert len(problems) == 6, problems
    text = '\n'.join(problems)
    assert "lines without a path, an identity, a camera and a split: line 30: " \
           "'train/y.png,y,,train'" in text
    assert "splits other than train, query, gallery: line 29: 'test'" in text
    assert f"{folder / 'train/007/cam 2/0.png'} (line 5, line 28)" in text
    assert "query identities without a gallery image from another camera" in text
    assert "'visitor 1' (camera 'cam 2')" in text
    assert f"missing files: {folder / 'train/007/Cam-1/0.png'}. Restore them" in text
    assert f'images that do not decode: {broken}: ' in text


def remove_gallery(folder: Path) -> None:
    __import__('shutil').rmtree(folder / 'gallery')


def one_camera(folder: Path) -> None:
    for camera in (folder / 'gallery').glob('*/Cam-1'):
        (camera.parent / 'cam 2').mkdir(exist_ok=True)
        for image in camera.iterdir():
            image.rename(camera.parent / 'cam 2' / f'moved_{image.name}')


def misplace(folder: Path) -> None:
    (folder / 'train/007/Cam-1/0.png').rename(folder / 'train/007/0.png')


@pytest.mark.parametrize('damage, options, expected', [
    (lambda folder: (folder / 'train').rename(folder / 'training'), {},
     'has no train/ folder: lay the images out as'),
    (remove_gallery, {}, 'has query images but no gallery images: add gallery images to '
                         'evaluate, or remove the query images to train without evaluating'),
    (one_camera, {}, "query and gallery hold one camera, 'cam 2'"),
    (misplace, {}, 'not at'),
    (None, {'test_ids': 1}, '--test-ids 1 holds training identities out as query and gallery, '
                            'but'),
], ids=['no train folder', 'no gallery', 'one camera', 'misplaced', 'test-ids with a query'])
def test_each_folder_problem_is_named(folder, damage, options, expected):
    if damage:
        damage(folder)
    problems = problems_of(folder, **options)
    assert len(problems) == 1 and expected in problems[0], problems


@pytest.mark.parametrize('rows, header, expected', [
    (list_rows(), ('path', 'id', 'camera', 'split'),
     "line 1: the header is 'path,id,camera,split'; the first line must be "
     'path,identity,camera,split'),
    ([row for row in list_rows() if row[3] != 'train'], None, 'has no train images: add some'),
], ids=['header', 'no train'])
def test_each_list_problem_is_named(folder, rows, header, expected):
    path = write_list(folder / 'crops.csv', rows, *[header] if header else [])
    problems = problems_of(path)
    assert len(problems) == 1 and expected in problems[0], problems
