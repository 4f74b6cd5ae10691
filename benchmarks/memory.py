"""Peak resident memory of a piece of work, each measured in a fresh forked process.

The benchmarks' memory figures are the peak resident set size above what the process
held once its inputs existed (``reset_peak`` then ``peak_above``), read from
``/proc/self/status``: what the work itself needs, as a user's process sees it.
"""
import ctypes
import multiprocessing
import re
from typing import Callable, TypeVar

Result = TypeVar('Result')


def resident_kib(field: str = 'VmRSS') -> int:
    """A ``/proc/self/status`` figure in KiB: ``VmRSS`` (now) or ``VmHWM`` (the peak)."""
    with open('/proc/self/status') as status:
        return int(re.search(rf'{field}:\s+(\d+)', status.read()).group(1))


def reset_peak() -> int:
    """Make the peak resident size the current one; returns the current one (KiB)."""
    with open('/proc/self/clear_refs', 'w') as clear_refs:
        clear_refs.write('5')
    return resident_kib('VmRSS')


def peak_above(baseline_kib: int) -> int:
    """Bytes of the peak resident size above ``baseline_kib``."""
    return (resident_kib('VmHWM') - baseline_kib) * 1024


def release_freed_memory_to_the_os() -> None:
    """Serve every block of 64 KiB or more by mmap, so that freeing returns it at once.

    glibc otherwise raises its mmap threshold after large frees and keeps later blocks
    in its heap, where the resident size shows memory the program no longer uses. For
    measuring what an algorithm holds; a user's process runs with glibc's defaults.
    """
    libc = ctypes.CDLL('libc.so.6')
    m_mmap_threshold = -3
    if not libc.mallopt(m_mmap_threshold, 64 * 1024):
        raise RuntimeError('mallopt(M_MMAP_THRESHOLD) failed')


def _call(connection, function, args) -> None:
    connection.send(function(*args))
    connection.close()


def in_fresh_process(function: Callable[..., Result], *args) -> Result:
    """``function(*args)`` in a forked process: it starts with the modules loaded and no
    memory of earlier runs. Its result comes back pickled; the function itself is not."""
    context = multiprocessing.get_context('fork')
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_call, args=(sender, function, args))
    process.start()
    sender.close()
    try:
        result = receiver.recv()
    except EOFError:
        raise RuntimeError(f'{function.__name__} failed in its process') from None
    finally:
        process.join()
    return result
