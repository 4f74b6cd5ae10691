"""Blocks of rows under a memory budget, and ragged (CSR-like) arrays in torch.

Every step of retrieval works on blocks of rows sized so that the temporary tensors of
one block stay within a budget in bytes: the memory of a whole run is the budget plus
what is kept (features, the k-nearest-neighbour table, sparse encodings), whatever the
number of images.
"""
from typing import Iterator, List, Tuple

import torch
from torch import Tensor

# Bytes the temporary tensors of one block may take, unless a caller gives a budget.
BLOCK_BYTES = 64 * 2 ** 20


def row_blocks(n: int, bytes_per_row: int, budget: int = BLOCK_BYTES) -> Iterator[slice]:
    """Consecutive rows of ``0..n-1``, as many per block as ``budget`` allows (at least one).

    >>> list(row_blocks(5, 100, budget=250))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    rows = max(1, budget // max(1, bytes_per_row))
    for start in range(0, n, rows):
        yield slice(start, min(start + rows, n))


def cost_blocks(bytes_per_row: Tensor, budget: int = BLOCK_BYTES) -> Iterator[slice]:
    """Like :func:`row_blocks`, for rows of different costs (one block may hold a single
    row over the budget)."""
    ends = bytes_per_row.cumsum(0).cpu()
    start, n = 0, len(ends)
    while start < n:
        spent = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(torch.searchsorted(ends, spent + budget, right=True)))
        yield slice(start, min(stop, n))
        start = stop


def pointers(sorted_rows: Tensor, n: int) -> Tensor:
    """CSR row pointers (``n + 1``) of entries sorted by row."""
    counts = torch.bincount(sorted_rows, minlength=n)
    return torch.cat((counts.new_zeros(1), counts.cumsum(0)))


def row_sizes(row_pointers: Tensor) -> Tensor:
    """Entries per row, from CSR row pointers."""
    return row_pointers[1:] - row_pointers[:-1]


def ragged_arange(starts: Tensor, lengths: Tensor) -> Tensor:
    """``cat([arange(s, s + l) for s, l in zip(starts, lengths)])``, without the loop."""
    ends = lengths.cumsum(0)
    offsets = (starts - ends + lengths).repeat_interleave(lengths)
    return offsets + torch.arange(len(offsets), device=starts.device)


class Filling:
    """Results of consecutive blocks written into tensors allocated once, then read as
    one: ``Filling(capacity, torch.long, torch.float32)``, ``.add(keys, values)`` per
    block, ``.tensors()`` at the end.

    Why not a list of each block's results and ``torch.cat``: small results kept between
    the blocks' large temporaries pin glibc's heap, which then holds memory it cannot give
    back (seen with two threads: gigabytes above the live tensors). ``capacity`` is an
    upper bound where one is known; past it the tensors double.
    """

    def __init__(self, capacity: int, *dtypes: torch.dtype,
                 device: torch.device = torch.device('cpu')) -> None:
        self._buffers: List[Tensor] = [torch.empty(capacity, dtype=dtype, device=device)
                                       for dtype in dtypes]
        self.filled = 0

    def add(self, *parts: Tensor) -> None:
        stop = self.filled + len(parts[0])
        if stop > len(self._buffers[0]):
            grown = max(stop, 2 * len(self._buffers[0]))
            self._buffers = [torch.cat((buffer[:self.filled],
                                        buffer.new_empty(grown - self.filled)))
                             for buffer in self._buffers]
        for buffer, part in zip(self._buffers, parts):
            buffer[self.filled:stop] = part
        self.filled = stop

    def tensors(self) -> Tuple[Tensor, ...]:
        """What was added, in order (views of the buffers)."""
        return tuple(buffer[:self.filled] for buffer in self._buffers)
