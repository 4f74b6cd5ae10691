"""Checkpoints that a crash cannot leave half-written."""
import os
import tempfile
from pathlib import Path
from typing import Any, Union

import torch


def save_atomic(obj: Any, path: Union[str, os.PathLike]) -> Path:
    """``torch.save`` into a temporary file beside ``path``, then rename it into place.

    A reader sees either the previous file or the complete new one, never a partial
    write, whatever happens during the save.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.part')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
