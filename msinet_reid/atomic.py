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
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
