"""What makes training survive preemption: resume checkpoints written every N iterations
or M minutes (atomically, the last two kept), and the stop signals of schedulers
(SIGTERM, SIGINT, SIGUSR1) turned into "finish the batch, checkpoint, exit non-zero"."""
import argparse
import re
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Dict, List, Optional, Tuple

from ..atomic import PathLike
from ..data.loading import STOP_SIGNALS

RESUME_DIR = 'resume'
KEEP = 2  # resume checkpoints kept: the newest, and one in case it is unreadable
DEFAULT_MINUTES = 10.0
_NAME = re.compile(r'resume-e(\d+)-b(\d+)\.pth\.tar$')

Position = Tuple[int, int]  # (epoch, batch): the next batch to train


def add_checkpoint_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--checkpoint-every N`` and ``--checkpoint-minutes M``, the intervals of the
    engines' resume checkpoints (``run(checkpoint_every=..., checkpoint_minutes=...)``), to
    a training script's ``parser``."""
    parser.add_argument('--checkpoint-every', type=int, default=0, metavar='N',
                        help='write a resume checkpoint every N iterations (0: by time only)')
    parser.add_argument('--checkpoint-minutes', type=float, default=DEFAULT_MINUTES,
                        metavar='M', help='write a resume checkpoint every M minutes (0: by '
                                          'iterations only); SIGTERM, SIGINT and SIGUSR1 '
                                          'always write one')


def checkpoint_options(args: argparse.Namespace) -> Dict[str, float]:
    """The ``run`` arguments of the flags :func:`add_checkpoint_flags` added."""
    return {'checkpoint_every': args.checkpoint_every,
            'checkpoint_minutes': args.checkpoint_minutes}


def resume_path(save_dir: PathLike, epoch: int, batch: int) -> Path:
    """Where the resume checkpoint of position ``(epoch, batch)`` goes."""
    return Path(save_dir) / RESUME_DIR / f'resume-e{epoch:04d}-b{batch:06d}.pth.tar'


def resume_checkpoints(save_dir: PathLike) -> List[Tuple[Position, Path]]:
    """The resume checkpoints in ``save_dir``, oldest first."""
    found = []
    for path in (Path(save_dir) / RESUME_DIR).glob('resume-e*-b*.pth.tar'):
        match = _NAME.match(path.name)
        if match:
            found.append(((int(match[1]), int(match[2])), path))
    return sorted(found)


def prune(save_dir: PathLike, keep: int = KEEP) -> None:
    """Delete all but the ``keep`` newest resume checkpoints of ``save_dir``."""
    for _, path in resume_checkpoints(save_dir)[:-keep]:
        path.unlink(missing_ok=True)


class CheckpointSchedule:
    """When a resume checkpoint is due: every ``every`` iterations (0: never by count)
    and every ``minutes`` minutes of training (0: never by time), whichever comes first.

    Example::

        >>> schedule = CheckpointSchedule(every=500, minutes=10)
        >>> if schedule.due(iteration):
        ...     write(); schedule.written()
    """

    def __init__(self, every: int = 0, minutes: float = DEFAULT_MINUTES) -> None:
        if every < 0 or minutes < 0:
            raise ValueError(f'checkpoint intervals must be >= 0 (0 turns one off), got '
                             f'every={every} iterations, minutes={minutes}')
        self.every, self.seconds = every, minutes * 60
        self.last = time.monotonic()

    def due(self, iteration: Optional[int] = None) -> bool:
        """Whether one is due after ``iteration`` (``None``: between iterations, by time)."""
        by_count = iteration is not None and self.every > 0 and iteration % self.every == 0
        return by_count or (self.seconds > 0 and time.monotonic() - self.last >= self.seconds)

    def written(self) -> None:
        self.last = time.monotonic()


class TrainingInterrupted(SystemExit):
    """Training stopped on a signal, after writing the resume checkpoint ``path``.

    A ``SystemExit`` with code ``128 + signal`` (143 for SIGTERM, 138 for SIGUSR1, 130
    for SIGINT): uncaught, the process ends quietly with the code that tells a scheduler
    it was stopped, and ``--resume auto`` continues the run.
    """

    def __init__(self, signum: int, path: Path) -> None:
        super().__init__(128 + signum)
        self.signum, self.path = signum, path

    def __str__(self) -> str:
        return (f'training stopped by {signal.Signals(self.signum).name}; it continues from '
                f'{self.path} with --resume auto')


class StopSignals:
    """While in the ``with`` block, SIGTERM, SIGINT and SIGUSR1 set :attr:`signum` instead
    of ending the process, and the previous handlers come back afterwards. A second
    SIGINT (Ctrl-C twice) interrupts at once. Outside the main thread nothing is
    installed (Python delivers signals to the main thread only).

    Example::

        >>> with StopSignals() as stop:
        ...     for batch in loader:
        ...         step(batch)
        ...         if stop.signum:
        ...             break
    """

    def __init__(self) -> None:
        self.signum = 0
        self._previous: Dict[int, object] = {}

    def __enter__(self) -> 'StopSignals':
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = self.signum or signum
        print(f'=> {signal.Signals(signum).name}: finishing the batch, then writing a resume '
              f'checkpoint', file=sys.stderr, flush=True)
