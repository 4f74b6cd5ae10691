"""The example training script, end to end on tiny synthetic Market-1501 data."""
import re
from pathlib import Path

import pytest


from msinet_reid.recipes import EXPERIMENTS

from helpers import load_script

train_msinet = load_script('examples/train_msinet.py')


@pytest.fixture(scope='module')
def root(tiny_market):
    return tiny_market(num_train_ids=4, num_test_ids=5, images_per_camera=3, num_cameras=2)


def tiny_run(root, save_dir, *flags):
    return train_msinet.main([
        '--root', str(root), '--save-dir', str(save_dir), '--device', 'cpu', '--workers', '0',
        '--height', '64', '--width', '32', '--batch-size', '8', '--num-instances', '2',
        '--print-freq', '1', *flags])


def test_one_tiny_epoch_then_resume(root, tmp_path, capsys):
    save_dir = tmp_path / 'log'
    trainer = tiny_run(root, save_dir, '--model', 'msinet_sam', '--epochs', '1')
    out = capsys.readouterr().out
    assert 'loss_sa' in out and 'Rank-1' in out
    checkpoint = save_dir / 'model' / 'model.pth.tar-1'
    assert checkpoint.is_file() and trainer.scheduler.last_epoch == 1

    # Resumed at its end, a run evaluates again instead of skipping the final test.
    tiny_run(root, save_dir, '--model', 'msinet_sam', '--epochs', '1', '--resume', 'auto')
    out = capsys.readouterr().out
    assert 'Resumed from' in out and 'epoch 2, batch 1' in out
    assert 'Final test' in out and 'Rank-1' in out and 'epoch: [' not in out

    trainer = tiny_run(root, save_dir, '--model', 'msinet_sam', '--epochs', '2',
                       '--resume', str(checkpoint))
    assert 'Loaded scheduler' in capsys.readouterr().out
    assert (save_dir / 'model' / 'model.pth.tar-2').is_file()
    assert trainer.scheduler.last_epoch == 2


def test_documented_experiments_exist():
    root = Path(__file__).resolve().parents[1]
    pages = [root / 'README.md', *sorted((root / 'docs').glob('*.md'))]
    named = {name for page in pages
             for name in re.findall(r'--experiment (\w+)', page.read_text())}
    assert named and named <= set(EXPERIMENTS)


@pytest.mark.slow
def test_torchrun_two_processes_then_resume_in_one(root, tmp_path):
    """``torchrun -m msinet_reid train`` (gloo on the CPU), as the docs show it; its
    checkpoint resumes in a single process, in the training example."""
    import subprocess
    import sys

    save_dir = tmp_path / 'log'
    flags = ['--root', str(root), '--save-dir', str(save_dir), '--device', 'cpu',
             '--workers', '0', '--height', '64', '--width', '32', '--batch-size', '8',
             '--num-instances', '2', '--model', 'msinet_sam']
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         '--standalone', '-m', 'msinet_reid', 'train', *flags, '--epochs', '1',
         '--print-freq', '1'],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count('Checkpoint saved') == 1  # rank 0 alone writes and prints
    assert result.stdout.count('** Results **') == 1
    # torchreid's start and end lines: rank 0 alone speaks.
    assert result.stdout.count('=> Start training') == 1
    assert result.stdout.count('Elapsed ') == 1
    assert result.stdout.count('Model card written') == 1
    checkpoint = save_dir / 'model' / 'model.pth.tar-1'

    trainer = train_msinet.main([*flags, '--epochs', '2', '--resume', str(checkpoint)])
    assert trainer.scheduler.last_epoch == 2
    assert (save_dir / 'model' / 'model.pth.tar-2').is_file()
