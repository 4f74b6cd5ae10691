"""PyTorch's distributed stack as the engines use it: set-up under torchrun, and the few
collectives whose results every process must share (gathered features, rank-0-only work).

Every function also works in a plain single process, where it does the obvious local
thing, so the engines have one code path.

Example (``torchrun --nproc_per_node=2 train.py``)::

    >>> info = init_distributed()          # nccl on CUDA, gloo on CPU
    >>> with main_process_first():         # rank 0 downloads, the others then read the cache
    ...     model = torchreid.models.build_model('msinet', 751, pretrained=True)
"""
import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional

import torch
import torch.distributed as dist
from torch import Tensor

TIMEOUT_ENV = 'MSINET_DIST_TIMEOUT'
DEFAULT_TIMEOUT_S = 1800


@dataclass(frozen=True)
class DistributedInfo:
    """Where this process stands: its rank among ``world_size`` and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(backend: Optional[str] = None,
                     timeout_s: Optional[float] = None) -> DistributedInfo:
    """Join the process group that torchrun describes in the environment, if any.

    Without ``WORLD_SIZE > 1`` in the environment this is a single process and nothing is
    initialised. ``backend`` defaults to nccl on CUDA and gloo on CPU. Collectives fail
    after ``timeout_s`` (default ``$MSINET_DIST_TIMEOUT`` or 30 minutes) instead of
    hanging forever when a process dies.
    """
    world_size = int(os.environ.get('WORLD_SIZE', 1))
    local_rank = int(os.environ.get('LOCAL_RANK', 0))
    cuda = torch.cuda.is_available()
    device = torch.device('cuda', local_rank) if cuda else torch.device('cpu')
    if world_size > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        timeout_s = timeout_s or float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
        dist.init_process_group(backend or ('nccl' if cuda else 'gloo'),
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistributedInfo(get_rank(), get_world_size(), local_rank, device)


def setup_device(device: str = 'cuda') -> torch.device:
    """Join torchrun's process group, if any, and return the device this process uses:
    its own GPU (``LOCAL_RANK``) for ``'cuda'``, else ``device`` (gloo on the CPU)."""
    on_cpu = torch.device(device).type != 'cuda'
    info = init_distributed(backend='gloo' if on_cpu else None)
    return torch.device(device) if on_cpu else info.device


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def communication_device() -> torch.device:
    """Where collectives take their tensors: this process's GPU under nccl, else the CPU."""
    if is_distributed() and dist.get_backend() == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def barrier() -> None:
    if is_distributed():
        dist.barrier()


@contextmanager
def main_process_first() -> Iterator[None]:
    """Run the block on rank 0 first (a download, a dataset generation), then on the others."""
    if not is_main_process():
        barrier()
    yield
    if is_main_process():
        barrier()


@torch.no_grad()
def all_gather(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` (same shape on every process) from all processes along dim 0."""
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def broadcast(tensor: Tensor, src: int = 0) -> Tensor:
    """``tensor`` as process ``src`` holds it, on every process (same shape and dtype on
    each), in place; returned for chaining."""
    if is_distributed():
        dist.broadcast(tensor, src=src)
    return tensor


def all_gather_with_grad(tensor: Tensor) -> Tensor:
    """Like :func:`all_gather`, but this process's own rows keep their autograd history,
    so a loss over the whole gathered batch still trains the local model."""
    if not is_distributed():
        return tensor
    gathered = list(all_gather(tensor.detach()).chunk(get_world_size()))
    gathered[get_rank()] = tensor
    return torch.cat(gathered)


def broadcast_module(module: torch.nn.Module) -> None:
    """Give every process rank 0's parameters and buffers."""
    if is_distributed():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


BUCKET_BYTES = 25 * 2 ** 20  # DDP's default bucket_cap_mb


@torch.no_grad()
def all_reduce_mean(tensors: Iterable[Tensor], bucket_bytes: int = BUCKET_BYTES) -> None:
    """Average ``tensors`` over all processes, in place, a few flat buckets at a time.

    As DDP's reducer does, the tensors are copied into flat buckets of at most
    ``bucket_bytes`` (one dtype and device each), so a model costs a handful of
    ``all_reduce`` calls rather than one per tensor. Every process must pass tensors of
    the same shapes in the same order.
    """
    if not is_distributed():
        return
    world_size = get_world_size()
    for bucket in _buckets(list(tensors), bucket_bytes):
        flat = torch.cat([t.reshape(-1) for t in bucket])
        dist.all_reduce(flat)
        flat.div_(world_size)
        for tensor, averaged in zip(bucket, flat.split([t.numel() for t in bucket])):
            tensor.copy_(averaged.view_as(tensor))


def _buckets(tensors: List[Tensor], bucket_bytes: int) -> Iterator[List[Tensor]]:
    groups: Dict[tuple, List[Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    for group in groups.values():
        bucket, size = [], 0
        for tensor in group:
            if bucket and size + tensor.numel() * tensor.element_size() > bucket_bytes:
                yield bucket
                bucket, size = [], 0
            bucket.append(tensor)
            size += tensor.numel() * tensor.element_size()
        yield bucket


def average_gradients(params: Iterable[Tensor]) -> None:
    """Average the gradients of ``params`` over all processes, in place (bucketed).

    What DDP does inside ``backward``, for updates that DDP's reducer cannot follow: the
    search's alternating steps each backpropagate into only part of the parameters.
    Parameters without a gradient are left out (the same ones on every process).
    """
    all_reduce_mean(p.grad for p in params if p.grad is not None)


def average_buffers(module: torch.nn.Module) -> None:
    """Average ``module``'s floating-point buffers (BatchNorm running statistics) over all
    processes, in place, so that every process holds the same statistics. Integer
    buffers (batch counters) advance alike on every process and are left as they are."""
    all_reduce_mean(b for b in module.buffers() if b.is_floating_point())
