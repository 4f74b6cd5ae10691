"""Atomic file writes: a reader sees the old file or the new one, never a partial one."""
import os
import tempfile
from pathlib import Path
from typing import Callable, Union

PathLike = Union[str, os.PathLike]


def atomic_write(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Let ``write`` fill a temporary sibling of ``path``, then rename it onto ``path``.

    Example::

        >>> atomic_write('log/checkpoint.pth', lambda tmp: torch.save(state, tmp))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would create it; mkstemp makes 0600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _umask() -> int:
    """The process's file mode creation mask, read without changing it."""
    try:
        with open('/proc/self/status') as status:
            line = next(line for line in status if line.startswith('Umask:'))
        return int(line.split()[1], 8)
    except (OSError, StopIteration):
        return 0o022
