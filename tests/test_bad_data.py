"""Bad data gets a clear error before the work, never a hang or a raw traceback: damaged
images, odd image modes, empty folders, misnamed dataset files, wrong checkpoints and
broken ONNX files."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from msinet_reid import distributed
from msinet_reid.cli import main
from msinet_reid.data import images as image_checks
from msinet_reid.data.images import (UnreadableImagesError, check_images, read_rgb,
                                     require_readable)
from msinet_reid.data.layout import DatasetLayoutError, load_image_dataset

from helpers import random_checkpoint, run_distributed

MARKET = Path('market1501') / 'Market-1501-v15.09.15'


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test starts with no remembered verdicts."""
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))


def truncate(path: Path) -> Path:
    """Cut ``path`` to half its bytes, as a broken download leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


@pytest.fixture
def market(tiny_market, tmp_path) -> Path:
    """A copy of the tiny synthetic Market-1501 that a test may damage; returns its root."""
    root = tmp_path / 'data'
    shutil.copytree(tiny_market(), root)
    return root


def damaged_folder(folder: Path) -> dict:
    """A folder with good crops and the damaged files users meet; returns them by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = {}
    for name in ('a_good.jpg', 'b_good.png'):
        Image.fromarray(rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)).save(folder / name)
        files[name] = None
    Image.fromarray(rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)).save(
        folder / 'c_truncated.jpg')
    truncate(folder / 'c_truncated.jpg')
    (folder / 'd_text.jpg').write_text('not an image')
    (folder / 'e_empty.jpg').write_bytes(b'')
    files.update({'c_truncated.jpg': 'truncated', 'd_text.jpg': 'cannot identify',
                  'e_empty.jpg': 'empty'})
    return files


def test_check_images_names_each_damaged_file_with_the_reason(tmp_path):
    files = damaged_folder(tmp_path)
    paths = sorted(tmp_path.iterdir())
    found = check_images(paths, workers=2)
    assert [Path(image.path).name for image in found] == [n for n, bad in files.items() if bad]
    for image in found:
        assert files[Path(image.path).name] in image.reason, image
    # Pillow's verify() reads headers only: it passes the truncated JPEG that decoding fails.
    with Image.open(tmp_path / 'c_truncated.jpg') as image:
        image.verify()


def test_every_image_mode_reads_as_rgb(tmp_path):
    """Greyscale, with alpha, palette, 1-bit, 16-bit and 1x1 crops are converted, not
    refused; 16-bit values are scaled to 8 bits, not clipped."""
    grey16 = np.full((8, 4), 32768, dtype=np.uint16)
    made = {'grey.png': Image.new('L', (4, 8), 77), 'alpha.png': Image.new('RGBA', (4, 8)),
            'grey_alpha.png': Image.new('LA', (4, 8)), 'palette.png': Image.new('P', (4, 8)),
            'bits.png': Image.new('1', (4, 8)), 'grey16.png': Image.fromarray(grey16),
            'pixel.jpg': Image.new('RGB', (1, 1), (10, 200, 30))}
    for name, image in made.items():
        image.save(tmp_path / name)
    assert Image.open(tmp_path / 'grey16.png').mode.startswith('I')
    assert check_images(sorted(tmp_path.iterdir())) == []
    for name in made:
        assert read_rgb(tmp_path / name).mode == 'RGB', name
    assert np.asarray(read_rgb(tmp_path / 'grey16.png')).mean() == pytest.approx(128, abs=1)
    assert np.asarray(read_rgb(tmp_path / 'grey.png'))[0, 0].tolist() == [77, 77, 77]


HANGING_RUN = '''
import sys, torch, msinet_reid
from msinet_reid.engine import ImageMSINetEngine
from torchreid import data, models

# torchreid's default RandomSampler: every training image is read in the first epoch.
manager = data.ImageDataManager(root=sys.argv[1], sources='market1501', height=64, width=32,
                                batch_size_train=8, workers=0)
model = models.build_model('msinet', manager.num_train_pids, loss='triplet', pretrained=False)
engine = ImageMSINetEngine(manager, model, torch.optim.SGD(model.parameters(), lr=0.01),
                           use_gpu=False)
engine.run(save_dir=sys.argv[2], max_epoch=1, print_freq=1)
'''


def test_training_on_a_damaged_image_stops_at_once_with_the_file_named(market, tmp_path):
    """torchreid's loader retries an unreadable image forever; the engine checks first.
    In a process of its own, with a timeout: a hang fails the test instead of the suite."""
    damaged = truncate(sorted((market / MARKET / 'bounding_box_train').glob('*.jpg'))[3])
    script = tmp_path / 'train.py'
    script.write_text(HANGING_RUN)
    started = time.time()
    result = subprocess.run([sys.executable, str(script), str(market), str(tmp_path / 'log')],
                            capture_output=True, text=True, timeout=90,
                            env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert result.returncode != 0
    assert time.time() - started < 60
    assert 'UnreadableImagesError: 1 of ' in result.stderr
    assert f'{damaged}: OSError: image file is truncated' in result.stderr
    assert 'Re-download or restore these files' in result.stderr
    assert 'Will redo' not in result.stdout and 'epoch: [1/1]' not in result.stdout


def test_the_verdict_is_remembered_until_a_file_changes(tmp_path, monkeypatch):
    damaged_folder(tmp_path / 'crops')
    paths = sorted((tmp_path / 'crops').iterdir())
    decoded = []
    problem = image_checks.image_problem
    monkeypatch.setattr(image_checks, 'image_problem',
                        lambda path: decoded.append(path) or problem(path))
    for _ in range(2):
        with pytest.raises(UnreadableImagesError, match='3 of 5 images cannot be read'):
            require_readable(paths)
    assert len(decoded) == 5  # the second verdict came from the cache
    good = tmp_path / 'crops' / 'c_truncated.jpg'
    Image.new('RGB', (4, 8)).save(good)  # repaired: the files changed, so they are read again
    with pytest.raises(UnreadableImagesError, match='2 of 5 images'):
        require_readable(paths)
    assert len(decoded) == 10


def _check_on_every_rank(info, paths, out):
    decoded = []
    problem = image_checks.image_problem
    image_checks.image_problem = lambda path: decoded.append(path) or problem(path)
    try:
        require_readable(paths)
    except UnreadableImagesError as error:
        (out / f'rank-{info.rank}').write_text(f'{len(decoded)}\n{error}')


@pytest.mark.slow
def test_under_torchrun_rank_0_checks_and_every_process_stops(tmp_path):
    damaged_folder(tmp_path / 'crops')
    paths = sorted(str(p) for p in (tmp_path / 'crops').iterdir())
    run_distributed(_check_on_every_rank, paths, tmp_path)
    for rank, decoded in ((0, 5), (1, 0)):
        count, message = (tmp_path / f'rank-{rank}').read_text().split('\n', 1)
        assert int(count) == decoded
        assert message.startswith('3 of 5 images cannot be read') and 'd_text.jpg' in message
    assert not distributed.is_distributed()


def test_check_data_lists_the_damaged_files(market, capsys):
    assert main(['check-data', '--root', str(market), '--dataset', 'market1501']) == 0
    out = capsys.readouterr().out
    assert 'train' in out and 'query' in out and 'gallery' in out and 'All ' in out
    damaged = truncate(sorted((market / MARKET / 'query').glob('*.jpg'))[0])
    (market / MARKET / 'bounding_box_test' / '0001_c1s1_000001_00.jpg').write_text('oops')
    assert main(['check-data', '--root', str(market), '--dataset', 'market1501']) == 1
    out = capsys.readouterr().out
    assert f'unreadable: {damaged}: OSError: image file is truncated' in out
    assert 'cannot identify image file' in out and '2 of ' in out


def test_misnamed_dataset_files_are_named(market, capsys):
    misnamed = market / MARKET / 'bounding_box_train' / 'holiday_photo.jpg'
    Image.new('RGB', (32, 64)).save(misnamed)
    with pytest.raises(DatasetLayoutError, match=r"market1501 dataset cannot parse "
                                                 r"'.*holiday_photo\.jpg'.*rename or remove"):
        load_image_dataset('market1501', market)
    with pytest.raises(SystemExit) as exit_info:
        main(['check-data', '--root', str(market), '--dataset', 'market1501'])
    assert exit_info.value.code == 2
    assert 'holiday_photo.jpg' in capsys.readouterr().err


def test_an_empty_dataset_folder_is_named(tmp_path):
    for split in ('bounding_box_train', 'bounding_box_test', 'query'):
        (tmp_path / MARKET / split).mkdir(parents=True)
    Image.new('RGB', (32, 64)).save(tmp_path / MARKET / 'query' / '0001_c1s1_000001_00.jpg')
    with pytest.raises(DatasetLayoutError,
                       match='torchreid found no train or gallery images of market1501 under'):
        load_image_dataset('market1501', tmp_path)


@pytest.fixture
def weights(tmp_path) -> Path:
    return random_checkpoint(tmp_path / 'msinet.pth')


def extract(weights, folder, out, *flags):
    return main(['extract', '--weights', str(weights), '--images', str(folder), '--out',
                 str(out), '--height', '64', '--width', '32', '--workers', '0', *flags])


def test_extract_stops_before_any_work_or_skips_with_a_list(weights, tmp_path, capsys):
    damaged_folder(tmp_path / 'crops')
    out = tmp_path / 'features.npy'
    with pytest.raises(SystemExit) as exit_info:
        extract(weights, tmp_path / 'crops', out)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert '3 of 5 images cannot be read' in err and '--skip-unreadable' in err
    assert 'Traceback' not in err and not list(tmp_path.glob('features*'))

    assert extract(weights, tmp_path / 'crops', out, '--skip-unreadable') == 0
    printed = capsys.readouterr().out
    assert np.load(out).shape == (2, 768)
    kept = out.with_suffix('.txt').read_text().split()
    assert [Path(p).name for p in kept] == ['a_good.jpg', 'b_good.png']
    skipped = out.with_suffix('.skipped.txt').read_text().splitlines()
    assert [Path(line.split('\t')[0]).name for line in skipped] == [
        'c_truncated.jpg', 'd_text.jpg', 'e_empty.jpg']
    assert 'Skipped 3 unreadable images' in printed and 'features.skipped.txt' in printed

    (tmp_path / 'crops' / 'c_truncated.jpg').unlink()
    (tmp_path / 'crops' / 'd_text.jpg').unlink()
    (tmp_path / 'crops' / 'e_empty.jpg').unlink()
    assert extract(weights, tmp_path / 'crops', out) == 0
    assert not out.with_suffix('.skipped.txt').exists()  # the old list no longer holds


def test_extract_odd_crops_and_empty_folders(weights, tmp_path, capsys):
    crops = tmp_path / 'crops'
    crops.mkdir()
    Image.new('RGB', (1, 1), (200, 10, 10)).save(crops / 'pixel.jpg')
    Image.fromarray(np.full((64, 32), 40000, dtype=np.uint16)).save(crops / 'grey16.png')
    Image.new('P', (32, 64)).save(crops / 'palette.png')
    assert extract(weights, crops, tmp_path / 'f.npy') == 0
    features = np.load(tmp_path / 'f.npy')
    assert features.shape == (3, 768) and np.isfinite(features).all()

    (tmp_path / 'empty').mkdir()
    with pytest.raises(SystemExit):
        extract(weights, tmp_path / 'empty', tmp_path / 'g.npy')
    assert 'no images under' in capsys.readouterr().err
    only_bad = tmp_path / 'bad'
    only_bad.mkdir()
    (only_bad / 'x.jpg').write_text('no')
    with pytest.raises(SystemExit):
        extract(weights, only_bad, tmp_path / 'h.npy', '--skip-unreadable')
    assert 'none of the 1 images can be read' in capsys.readouterr().err


def evaluate(weights, root, *flags):
    return main(['evaluate', '--weights', str(weights), '--root', str(root),
                 '--height', '64', '--width', '32', '--workers', '0', *flags])


def test_evaluate_stops_or_skips_damaged_test_images(weights, market, capsys):
    damaged = truncate(sorted((market / MARKET / 'query').glob('*.jpg'))[2])
    with pytest.raises(SystemExit) as exit_info:
        evaluate(weights, market)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f'{damaged}: OSError: image file is truncated' in err and 'Traceback' not in err
    assert evaluate(weights, market, '--skip-unreadable') == 0
    out = capsys.readouterr().out
    assert 'Rank-1' in out and f'Left out 1 unreadable test images:\n  {damaged}' in out


def test_evaluate_names_a_broken_onnx_file_and_another_models_checkpoint(market, tmp_path,
                                                                         capsys):
    pytest.importorskip('onnxruntime', reason='needs onnxruntime (extras onnx, test)')
    for name, content in (('text.onnx', b'not a model'), ('empty.onnx', b'')):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(SystemExit):
            evaluate(tmp_path / name, market)
        err = capsys.readouterr().err
        assert 'cannot load' in err and 'truncated or not an ONNX file' in err, err
        assert 'Traceback' not in err

    import torchreid
    sam = torchreid.models.build_model('msinet_vr', 5, pretrained=False)
    torch.save(sam.state_dict(), tmp_path / 'vr.pth')
    with pytest.raises(SystemExit):
        evaluate(tmp_path / 'vr.pth', market)
    err = capsys.readouterr().err
    # (Genotypes other tests registered, under other names, may be listed beside msinet_vr.)
    assert 'does not hold msinet weights' in err and 'msinet_vr' in err.split('it holds ')[1]
    # Another class count is fine: the features do not read the classifiers.
    assert evaluate(tmp_path / 'vr.pth', market, '--model', 'msinet_vr') == 0


@pytest.mark.slow
def test_the_command_hides_torchreids_cython_warning():
    # msinet-reid, python -m msinet_reid; and the library, which leaves the warning to its
    # users: importing it shows torchreid's. Three processes at once (each mostly imports).
    commands = {name: [sys.executable, '-m', name, 'check-data', '--help']
                for name in ('msinet_reid_cli', 'msinet_reid')}
    commands['import'] = [sys.executable, '-c', 'import msinet_reid']
    processes = {name: subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True) for name, command in commands.items()}
    results = {name: process.communicate(timeout=120) for name, process in processes.items()}
    for name in ('msinet_reid_cli', 'msinet_reid'):
        stdout, stderr = results[name]
        assert processes[name].returncode == 0 and '--dataset' in stdout
        assert 'Cython' not in stderr, name
    assert 'Cython evaluation' in results['import'][1]
