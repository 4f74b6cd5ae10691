"""The process's random generators (Python, NumPy, torch CPU and CUDA) as one state that a
checkpoint can hold, and a block that runs with its own seed and leaves them untouched."""
import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch


def get_state() -> dict:
    """The state of every global generator, as tensors and plain Python values (so a
    checkpoint holding it loads with ``weights_only=True``)."""
    name, keys, *position = np.random.get_state()
    return {
        'python': random.getstate(),
        'numpy': (name, torch.from_numpy(keys.astype(np.int64)), *position),
        'torch': torch.get_rng_state(),
        'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def set_state(state: dict) -> None:
    """Restore what :func:`get_state` returned."""
    random.setstate(_tuples(state['python']))
    name, keys, *position = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), *position))
    torch.set_rng_state(state['torch'])
    if state['cuda'] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _tuples(value):
    """``random.setstate`` wants tuples where a checkpoint may hold lists."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with Python's, NumPy's and torch's CPU generators seeded by ``seed``,
    then put them back as they were: what the block draws depends on ``seed`` alone, and
    the code around it draws as if the block had not run.

    Example::

        >>> with seeded(1234):
        ...     image = transform(image)  # the same augmentation in any process
    """
    python, numpy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    # The CPU generator alone: torch.manual_seed also queues a seeding of each lazily
    # initialised device (CUDA, XPU), formatting the stack under a lock that a forked
    # loader worker can inherit held.
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)
        torch.set_rng_state(cpu)
