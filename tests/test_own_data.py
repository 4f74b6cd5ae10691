"""Data of one's own: a folder or a CSV list read into torchreid samples, checked (every
problem named in one error), registered with torchreid, and given to the commands with
--data."""
import csv
import os
import re
import shutil
import subprocess
import sys
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
    tested = {(Path(path).parts[-3], pid) for path, pid, _, _ in
              from_folder.samples('query') + from_folder.samples('gallery')}
    assert tested == {('distractor', 0), ('visitor 1', 1), ('visitor 2', 2)}
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
    shutil.rmtree(folder / 'gallery')


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


def test_many_cases_of_a_problem_are_counted(folder):
    rows = list_rows() + [(f'train/{index}.png', 'x', 'c', 'val') for index in range(7)]
    assert problems_of(write_list(folder / 'crops.csv', rows)) == [
        f"{folder / 'crops.csv'}: splits other than train, query, gallery: line 31: 'val'; "
        "line 32: 'val'; line 33: 'val'; line 34: 'val'; line 35: 'val'; ... and 2 more. "
        'Write one of those three']


def test_a_list_that_is_not_text(folder):
    path = folder / 'train/007/Cam-1/0.png'
    assert problems_of(path)[0].startswith(f'{path} is not UTF-8 text')


def held_out_folder(root: Path) -> Path:
    """Train only: identities 'p0'..'p5' seen by two or three cameras, 'solo' by one."""
    crops = [('train', f'p{identity}', f'c{camera}', f'{index}.png')
             for identity in range(6) for camera in range(2 + identity % 2)
             for index in range(2)]
    return write_crops(root, crops + [('train', 'solo', 'c0', f'{index}.jpg')
                                      for index in range(3)])


def test_test_ids_hold_identities_out_with_a_cross_camera_match(tmp_path):
    root = held_out_folder(tmp_path / 'crops')
    assert not load_own_data(root).evaluates
    own = load_own_data(root, test_ids=3, seed=5)
    assert own.summary()['test_ids'] == 3
    query, gallery = own.splits['query'], own.splits['gallery']
    held = {record.identity for record in query}
    assert len(held) == 3 and 'solo' not in held
    assert not held & {record.identity for record in own.splits['train']}
    # The first image of each camera but the first is a query; the rest are the gallery.
    for identity in held:
        cameras = sorted({record.camera for record in gallery if record.identity == identity})
        assert sorted(Path(record.path).relative_to(root).as_posix() for record in query
                      if record.identity == identity) == [
            f'train/{identity}/{camera}/0.png' for camera in cameras[1:]]
        assert {record.camera for record in gallery if record.identity == identity} \
            == set(cameras)
    assert load_own_data(root, test_ids=3, seed=5).splits == own.splits  # deterministic
    assert any(load_own_data(root, test_ids=3, seed=seed).splits != own.splits
               for seed in range(1, 5))


def test_test_ids_beyond_the_identities_with_two_cameras(tmp_path):
    problems = problems_of(held_out_folder(tmp_path / 'crops'), test_ids=7)
    assert problems == ['--test-ids 7: 6 training identities are seen by two cameras or more, '
                        'which a held-out identity needs (a query, and a gallery image from '
                        'another camera); pass --test-ids 6 or fewer']


def data_manager(name: str, **options) -> 'torchreid.data.ImageDataManager':
    return torchreid.data.ImageDataManager(
        root='unused', sources=name, height=HEIGHT, width=WIDTH, batch_size_train=4,
        batch_size_test=4, workers=0, use_gpu=False, **options)


def test_registered_data_feeds_image_data_manager(folder, unique_name):
    name = unique_name()
    own = register_own_data(name, folder)
    datamanager = data_manager(name)
    assert datamanager.num_train_pids == 3
    batch = next(iter(datamanager.train_loader))
    assert batch['img'].shape == (4, 3, HEIGHT, WIDTH)
    assert set(batch['pid'].tolist()) <= {0, 1, 2}
    loaders = datamanager.test_loader[name]
    assert [len(loaders[split].dataset) for split in ('query', 'gallery')] == [2, 9]
    assert loaders['query'].dataset.query == own.samples('query')
    # Registering again replaces the data; the name of another dataset is refused.
    register_own_data(name, held_out_folder(folder.parent / 'other'))
    assert data_manager(name).num_train_pids == 7
    with pytest.raises(ValueError, match="torchreid already has a dataset named 'market1501'"):
        register_own_data('market1501', folder)


def test_data_without_query_and_gallery_trains_without_test_sets(tmp_path, unique_name,
                                                                 capsys):
    name = unique_name()
    register_own_data(name, held_out_folder(tmp_path / 'crops'))
    datamanager = data_manager(name, combineall=True)
    assert datamanager.num_train_pids == 7
    assert len(datamanager.train_loader.dataset) == 33
    loaders = datamanager.test_loader[name]
    assert len(loaders['query'].dataset) == len(loaders['gallery'].dataset) == 0
    assert '  query    |     0 |        0 |         0' in capsys.readouterr().out


def run_cli(command: str, weights, *flags) -> int:
    return main([command, '--weights', str(weights), '--height', str(HEIGHT), '--width',
                 str(WIDTH), '--workers', '0', *map(str, flags)])


def test_check_data_prints_the_summary_or_every_problem(folder, capsys):
    assert main(['check-data', '--data', str(folder)]) == 0
    out = capsys.readouterr().out
    digest = load_own_data(folder).summary()['sha256']
    assert f'folder {folder}\n' in out and f'sha256 of the images and their labels: {digest}' \
        in out
    assert re.search(r'\n  query +2 +2 +1\n', out)
    assert 'All 29 images decode; no problems found.' in out
    (folder / 'gallery/visitor 2/Cam-1/0.png').write_text('not an image')
    shutil.rmtree(folder / 'gallery/visitor 1/Cam-1')
    assert main(['check-data', '--data', str(folder)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f'the data at {folder} has 2 problems')
    assert "'visitor 1' (camera 'cam 2')" in out and 'visitor 2/Cam-1/0.png: ' in out


@pytest.mark.slow
def test_evaluate_ranks_the_query_of_own_data_or_held_out_identities(folder, tmp_path,
                                                                     msinet_weights, capsys):
    assert run_cli('evaluate', msinet_weights, '--data', folder) == 0
    assert f'{folder} (msinet.pth): Rank-1 ' in capsys.readouterr().out
    root = held_out_folder(tmp_path / 'train_only')
    with pytest.raises(SystemExit):
        run_cli('evaluate', msinet_weights, '--data', root)
    assert 'has no query and gallery images: add query/ and gallery/' in capsys.readouterr().err
    assert run_cli('evaluate', msinet_weights, '--data', root, '--test-ids', 2) == 0
    assert f'{root} (msinet.pth): Rank-1 ' in capsys.readouterr().out


def test_extract_writes_every_split_in_order(folder, msinet_weights):
    out = folder.parent / 'features.npy'
    assert run_cli('extract', msinet_weights, '--data', folder, '--out', out) == 0
    own = load_own_data(folder)
    assert out.with_suffix('.txt').read_text().splitlines() == [
        record.path for split in ('train', 'query', 'gallery') for record in own.splits[split]]
    assert np.load(out).shape == (29, 768)


@pytest.mark.parametrize('flags, expected', [
    (['evaluate', '--weights', 'w.pth', '--data', 'crops', '--root', 'reid-data'],
     'argument --root: not allowed with argument --data'),
    (['evaluate', '--weights', 'w.pth', '--data', 'crops', '--dataset', 'market1501'],
     '--dataset names a torchreid dataset under --root; --data reads its own'),
    (['check-data', '--root', 'reid-data', '--test-ids', '3'],
     '--test-ids and --seed hold identities of --data out'),
    (['check-data', '--root', 'reid-data'], '--root needs --dataset'),
    (['check-data'], 'one of the arguments --root --data is required'),
    (['extract', '--weights', 'w.pth', '--data', 'crops', '--images', 'crops', '--out', 'f'],
     'argument --images: not allowed with argument --data'),
], ids=['data and root', 'data and dataset', 'root and test-ids', 'root alone', 'nothing',
        'data and images'])
def test_one_source_of_data(flags, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(flags)
    assert exit_info.value.code == 2 and expected in capsys.readouterr().err


@pytest.mark.slow
def test_registration_works_in_the_official_torchreid_layout(folder, tmp_path):
    from test_torchreid_layouts import REPO, _official_layout

    script = (
        'import sys, msinet_reid, torchreid\n'
        'from torchreid.data import ImageDataManager\n'
        "assert 'torchreid.reid' not in sys.modules\n"
        f'msinet_reid.data.register_own_data("shop", {str(folder)!r})\n'
        'manager = ImageDataManager(root="", sources="shop", height=32, width=16, workers=0,\n'
        '                           batch_size_train=4, use_gpu=False)\n'
        'print("batch", tuple(next(iter(manager.train_loader))["img"].shape))\n')
    env = {**os.environ, 'XDG_CACHE_HOME': str(tmp_path / 'cache'),
           'PYTHONPATH': os.pathsep.join([str(_official_layout(tmp_path)), str(REPO)])}
    result = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'batch (4, 3, {HEIGHT}, {WIDTH})' in result.stdout
