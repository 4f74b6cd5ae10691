"""Training survives preemption: real processes are killed (SIGKILL, at chosen moments:
mid-epoch, during evaluation, during clustering) or stopped (SIGTERM, SIGUSR1), resumed
with ``--resume auto``, and end with the uninterrupted run's weights, bit for bit."""
import os
import re
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence

import pytest
import torch

from msinet_reid.engine.preemption import (
    CheckpointSchedule, prune, resume_checkpoints, resume_path,
)

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300


class Stop(NamedTuple):
    """Send ``signum`` when ``marker`` has appeared ``count`` times in the output."""
    marker: str
    signum: int = signal.SIGKILL
    count: int = 1
    agent_only: bool = False  # signal the launched process alone, not its process group


class Attempt(NamedTuple):
    returncode: int
    output: str


def attempt(command: Sequence[str], stop: Optional[Stop] = None) -> Attempt:
    """Run ``command`` (one thread per process, unbuffered) until it ends, or until
    ``stop`` stops it."""
    env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'OMP_NUM_THREADS': '1'}
    process = subprocess.Popen(list(command), cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    watchdog = threading.Timer(TIMEOUT_S, os.killpg, (process.pid, signal.SIGKILL))
    watchdog.start()
    lines: List[str] = []
    seen = 0
    try:
        for line in process.stdout:
            lines.append(line)
            if stop is not None and stop.marker in line:
                seen += 1
                if seen == stop.count:
                    if stop.agent_only:
                        process.send_signal(stop.signum)
                    else:
                        os.killpg(process.pid, stop.signum)
        returncode = process.wait()
    finally:
        watchdog.cancel()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    output = ''.join(lines)
    assert returncode != -signal.SIGKILL or stop is not None, f'timed out:\n{output[-3000:]}'
    return Attempt(returncode, output)


def complete(command: Sequence[str]) -> str:
    result = attempt(command)
    assert result.returncode == 0, result.output[-3000:]
    return result.output


def in_background(command: Sequence[str], written: Path) -> Future:
    """``complete(command)`` in a thread, for a reference run beside the interrupted ones
    (one thread per process: the two share the cores); its result is ``written``, the
    checkpoint it writes."""
    def run() -> Path:
        complete(command)
        return written

    pool = ThreadPoolExecutor(1)
    future = pool.submit(run)
    pool.shutdown(wait=False)
    return future


def interrupted(command: Sequence[str], stops: Sequence[Stop]) -> List[Attempt]:
    """``command`` stopped by each of ``stops`` in turn, then run to its end; every run
    after the first continues with ``--resume auto``."""
    attempts = []
    for stop in stops:
        result = attempt(command, stop)
        assert result.returncode != 0, f'{stop} came too late:\n{result.output[-3000:]}'
        attempts.append(result)
    result = attempt(command)
    assert result.returncode == 0, result.output[-3000:]
    return attempts + [result]


def assert_same_weights(a: Path, b: Path) -> None:
    state_a = torch.load(a, map_location='cpu', weights_only=True)
    state_b = torch.load(b, map_location='cpu', weights_only=True)
    weights_a, weights_b = (s.get('state_dict', s.get('model')) for s in (state_a, state_b))
    assert weights_a.keys() == weights_b.keys()
    different = [k for k in weights_a if not torch.equal(weights_a[k], weights_b[k])]
    assert not different, f'{len(different)} tensors differ, e.g. {different[:3]}'


# torchreid's progress line: epoch: [epoch/epochs][batch done/batches]
PROGRESS = re.compile(r'epoch: \[(\d+)/\d+\]\[(\d+)/(\d+)\]')


def progress(output: str) -> List[tuple]:
    """(epoch, batch done) of every torchreid progress line."""
    return [(int(e), int(b)) for e, b, _ in PROGRESS.findall(output)]


def next_batches(output: str) -> List[tuple]:
    """Where a run that stopped after ``output`` continues if it lost nothing: the batch
    after its last progress line, or, after an epoch's last batch, also the next epoch's
    first (a signal that came after the epoch's last check stops it after the evaluation)."""
    epoch, batch, batches = map(int, PROGRESS.findall(output)[-1])
    return [(epoch, batch + 1)] + ([(epoch + 1, 1)] if batch == batches else [])


def resumed_at(output: str) -> tuple:
    """(epoch, batch) where a resumed run continued, both counted from 1."""
    epoch, batch = re.search(r'Resumed from \S+: epoch (\d+), batch (\d+)', output).groups()
    return int(epoch), int(batch)


# ---------------------------------------------------------------------------- the parts
STOP_SIGNALS_CHECK = """
import os, signal
from pathlib import Path
from msinet_reid.engine.preemption import StopSignals, TrainingInterrupted
before = signal.getsignal(signal.SIGTERM)
with StopSignals() as stop:
    os.kill(os.getpid(), signal.SIGUSR1)
    os.kill(os.getpid(), signal.SIGTERM)  # the first signal is the one reported
    assert stop.signum == signal.SIGUSR1, stop.signum
    try:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C after a signal: stop at once
        raise AssertionError('a second Ctrl-C went on')
    except KeyboardInterrupt:
        pass
assert signal.getsignal(signal.SIGTERM) is before
stopped = TrainingInterrupted(signal.SIGTERM, Path('log/resume/r.pth.tar'))
assert stopped.code == 143 and 'SIGTERM' in str(stopped) and '--resume auto' in str(stopped)
print('ok')
"""


@pytest.mark.slow
def test_stop_signals_are_flags_in_the_block_and_restored_after():
    # In a process of its own: signals sent to the test process crashed it, once many
    # native libraries (with threads of their own) were loaded.
    result = subprocess.run([sys.executable, '-c', STOP_SIGNALS_CHECK], capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.strip() == 'ok', result.stderr[-2000:]


def test_checkpoint_schedule_by_count_and_time(monkeypatch):
    now = [0.0]
    monkeypatch.setattr('time.monotonic', lambda: now[0])
    schedule = CheckpointSchedule(every=3, minutes=1)
    assert [schedule.due(i) for i in (1, 2, 3)] == [False, False, True]
    assert not schedule.due()  # between iterations: by time only
    now[0] = 61
    assert schedule.due() and schedule.due(4)
    schedule.written()
    assert not schedule.due(5)
    assert not CheckpointSchedule(0, 0).due(3)
    with pytest.raises(ValueError, match='must be >= 0'):
        CheckpointSchedule(every=-1)


def test_resume_checkpoints_sort_by_position_and_the_last_two_are_kept(tmp_path):
    for epoch, batch in [(0, 7), (1, 0), (0, 12), (2, 3)]:
        resume_path(tmp_path, epoch, batch).parent.mkdir(exist_ok=True)
        resume_path(tmp_path, epoch, batch).touch()
    assert [p for p, _ in resume_checkpoints(tmp_path)] == [(0, 7), (0, 12), (1, 0), (2, 3)]
    prune(tmp_path)
    assert [p for p, _ in resume_checkpoints(tmp_path)] == [(1, 0), (2, 3)]


# ------------------------------------------------------------------- the recipe engine
EPOCHS = 3


@pytest.fixture(scope='module')
def root(tiny_market):
    return tiny_market(num_train_ids=4, num_test_ids=5, images_per_camera=3, num_cameras=2)


def train_command(root: Path, save_dir: Path, workers: int = 0, torchrun: bool = False):
    launcher = [sys.executable]
    if torchrun:
        launcher += ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                     '--signals-to-handle=SIGTERM,SIGINT,SIGUSR1']
    return [*launcher, 'examples/train_msinet.py', '--root', str(root), '--save-dir',
            str(save_dir), '--device', 'cpu', '--workers', str(workers), '--height', '64',
            '--width', '32', '--batch-size', '8', '--num-instances', '2', '--print-freq', '1',
            '--epochs', str(EPOCHS), '--eval-freq', '1', '--checkpoint-every', '1',
            '--resume', 'auto']


def final_checkpoint(save_dir: Path) -> Path:
    return save_dir / 'model' / f'model.pth.tar-{EPOCHS}'


@pytest.fixture(scope='module')
def uninterrupted(root, tmp_path_factory) -> Future:
    """The uninterrupted run, started at once; its result is its final checkpoint."""
    save_dir = tmp_path_factory.mktemp('uninterrupted')
    return in_background(train_command(root, save_dir), final_checkpoint(save_dir))


@pytest.mark.slow
def test_sigkill_mid_epoch_and_during_evaluation_then_resume_is_bit_exact(
        root, tmp_path, uninterrupted):
    stops = [Stop('Resume checkpoint saved', count=2),  # in the batch after a checkpoint
             Stop('##### Evaluating')]                   # during an evaluation
    runs = interrupted(train_command(root, tmp_path), stops)
    assert_same_weights(final_checkpoint(tmp_path), uninterrupted.result())
    # Work lost to SIGKILL: at most the interval, one iteration.
    for killed, resumed in zip(runs, runs[1:]):
        last = progress(killed.output)[-1]
        at = resumed_at(resumed.output)
        assert at[0] == last[0] and at[1] >= last[1], (last, at)
    assert len(list((tmp_path / 'resume').iterdir())) == 2  # the last two kept


@pytest.mark.slow
def test_loader_workers_do_not_change_the_run_and_sigterm_loses_nothing(
        root, tmp_path, uninterrupted):
    # With 2 loader workers the batches and their augmentations are those of 0 workers.
    command = train_command(root, tmp_path, workers=2)
    command[command.index('--checkpoint-every') + 1] = '0'  # by time only (10 minutes)
    stops = [Stop('epoch: [1/3][2/', signal.SIGTERM), Stop('epoch: [2/3][3/', signal.SIGUSR1)]
    runs = interrupted(command, stops)
    assert_same_weights(final_checkpoint(tmp_path), uninterrupted.result())
    for stopped, resumed, signum in zip(runs, runs[1:], (signal.SIGTERM, signal.SIGUSR1)):
        assert stopped.returncode == 128 + signum, stopped.output[-2000:]
        assert resumed_at(resumed.output) in next_batches(stopped.output)


@pytest.mark.slow
def test_torchrun_processes_stop_at_one_iteration_and_resume_bit_exact(root, tmp_path):
    reference = in_background(train_command(root, tmp_path / 'uninterrupted', torchrun=True),
                              final_checkpoint(tmp_path / 'uninterrupted'))
    # SIGTERM to torchrun alone: it forwards the signal, both processes finish the same
    # batch and write one checkpoint; then SIGKILL to all of them during an evaluation.
    stops = [Stop('epoch: [1/3][2/', signal.SIGTERM, agent_only=True),
             Stop('##### Evaluating', count=1)]
    runs = interrupted(train_command(root, tmp_path / 'killed', torchrun=True), stops)
    assert_same_weights(final_checkpoint(tmp_path / 'killed'), reference.result())
    assert resumed_at(runs[1].output) in next_batches(runs[0].output)


# --------------------------------------------------------- the search, Cluster Contrast
@pytest.mark.slow
def test_killed_search_resumes_bit_exact(tiny_market, tmp_path):
    root = tiny_market(num_train_ids=8, num_test_ids=4, images_per_camera=4, num_cameras=2)

    def command(save_dir: Path) -> List[str]:
        return [sys.executable, 'examples/search.py', '--root', str(root), '--dataset',
                'market1501', '--epochs', '2', '--batch-size', '8', '--height', '64',
                '--width', '32', '--workers', '0', '--device', 'cpu', '--eval-freq', '1',
                '--print-freq', '1', '--checkpoint-every', '1', '--resume', 'auto',
                '--save-dir', str(save_dir)]

    reference = in_background(command(tmp_path / 'uninterrupted'),
                              tmp_path / 'uninterrupted' / 'search_checkpoint.pth')
    runs = interrupted(command(tmp_path / 'killed'),
                       [Stop('epoch: [1/2][2/'), Stop('##### Evaluating')])
    assert_same_weights(tmp_path / 'killed' / 'search_checkpoint.pth', reference.result())
    killed, whole = (torch.load(path, map_location='cpu', weights_only=True) for path in
                     (tmp_path / 'killed' / 'search_checkpoint.pth', reference.result()))
    assert killed['history'] == whole['history']  # the genotype after every epoch
    for subset, memory in whole['memories'].items():  # both memories, bit for bit
        assert all(torch.equal(memory[k], killed['memories'][subset][k]) for k in memory)
    # Resumed mid-epoch, then from the epoch's search_checkpoint.pth (written before the
    # evaluation), which reaches further than the last resume checkpoint.
    assert resumed_at(runs[1].output)[0] == 1
    assert 'Resumed the search from' in runs[2].output


@pytest.mark.slow
def test_cluster_contrast_killed_mid_epoch_and_during_clustering_resumes_bit_exact(tmp_path):
    def command(log_dir: Path) -> List[str]:
        return [sys.executable, 'examples/cluster_contrast.py', '--demo', '--root',
                str(tmp_path / 'data'), '--demo-ids', '8', '4', '--demo-cameras', '3',
                '--height', '64', '--width', '32', '--epochs', '2', '--batch-size', '8',
                '--k1', '10', '--workers', '0', '--print-freq', '1', '--checkpoint-every', '1',
                '--resume', 'auto', '--log-dir', str(log_dir)]

    reference = in_background(command(tmp_path / 'uninterrupted'),
                              tmp_path / 'uninterrupted' / 'model' / 'model.pth.tar-2')
    runs = interrupted(command(tmp_path / 'killed'),
                       [Stop('epoch: [1/2][2/'), Stop('=> Clustering the')])
    assert_same_weights(tmp_path / 'killed' / 'model' / 'model.pth.tar-2', reference.result())
    assert resumed_at(runs[1].output)[0] == 1  # mid-epoch: its clusters come back
    assert runs[1].output.count('=> Clustering the') == 1  # only epoch 2's
