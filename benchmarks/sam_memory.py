"""Peak memory and time of the spatial alignment loss: msinet-reid's chunked computation
against a straightforward full-tensor one that mirrors the authors' code.

Each variant runs once, forward and backward, at batch 64 (16 identities x 4 images) on
the final feature maps of 256x128 persons (16x8 maps) and 256x256 vehicles (16x16 maps)::

    python benchmarks/sam_memory.py                 # CPU: peak resident memory
    python benchmarks/sam_memory.py --device cuda   # GPU: torch.cuda.max_memory_allocated
    python benchmarks/sam_memory.py --quick         # tiny sizes, a few seconds

On the CPU (Linux, glibc) each variant runs in a fresh process that returns freed blocks
to the OS at once and whose peak resident set size is reset (``/proc/self/clear_refs``)
once its inputs exist, so the figure is the extra memory the loss needs, autograd's
saved tensors and backward included.
"""
import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Dict, NamedTuple

import torch
from torch import Tensor

import msinet_reid  # noqa: F401  (registers torchreid aliases before anything else)
from msinet_reid.losses import SpatialAlignLoss

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import in_fresh_process, peak_above, release_freed_memory_to_the_os, reset_peak  # noqa: E402,E501


def reference_spatial_align_loss(maps: Tensor, self_activation: Tensor, labels: Tensor,
                                 mode: str = 'pos_neg') -> Tensor:
    """The loss computed as the authors' code does, ``B x B x HW x HW`` tensor included.

    Assumes, as their code does, that every identity has the same number of images.
    """
    batch, _, height, width = maps.shape
    positions = height * width
    scores = torch.einsum('gchw,pcyx->gpyxhw', maps, maps).reshape(
        batch, batch, positions, positions)
    activation = scores.max(dim=3).values
    same = labels[:, None] == labels[None, :]
    positives = activation[same].view(batch, -1, positions)
    negatives = activation[~same].view(batch, -1, positions)

    def cosine_distances(x: Tensor, y: Tensor) -> Tensor:
        dots = torch.bmm(x, y.transpose(1, 2))
        return 1 - dots / (x.norm(dim=2)[:, :, None] * y.norm(dim=2)[:, None, :])

    loss = maps.new_zeros(())
    if 'pos' in mode:
        loss = loss + cosine_distances(self_activation[:, None], positives).mean()
    if 'neg' in mode:
        loss = loss + cosine_distances(negatives, negatives).mean()
    return loss


class Result(NamedTuple):
    peak_bytes: int
    seconds: float
    loss: float


VARIANTS: Dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    'full tensor': reference_spatial_align_loss,
    'msinet-reid': SpatialAlignLoss('pos_neg'),
}


def _inputs(batch: int, channels: int, height: int, width: int, device: str):
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(batch, channels, height, width, generator=generator).relu()
    self_activation = torch.randn(batch, height * width, generator=generator)
    labels = torch.arange(batch // 4).repeat_interleave(4)
    return (maps.to(device).requires_grad_(), self_activation.to(device).requires_grad_(),
            labels.to(device))


def _run(variant: str, inputs) -> Result:
    started = time.perf_counter()
    loss = VARIANTS[variant](*inputs)
    loss.backward()
    if inputs[0].is_cuda:
        torch.cuda.synchronize()
    return Result(0, time.perf_counter() - started, loss.item())


def _measure_cpu(variant: str, shape: tuple) -> tuple:
    torch.set_num_threads(1)
    release_freed_memory_to_the_os()
    _run(variant, _inputs(8, 8, 4, 2, device='cpu'))  # page in the code the variant runs
    inputs = _inputs(*shape, device='cpu')
    baseline = reset_peak()
    result = _run(variant, inputs)
    return tuple(result._replace(peak_bytes=peak_above(baseline)))  # plain, for the pipe


def measure(variant: str, shape: tuple, device: str) -> Result:
    """One forward and backward pass of ``variant`` on inputs of ``shape``."""
    if device == 'cpu':
        return Result(*in_fresh_process(_measure_cpu, variant, shape))
    inputs = _inputs(*shape, device=device)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    baseline = torch.cuda.memory_allocated()
    result = _run(variant, inputs)
    return result._replace(peak_bytes=torch.cuda.max_memory_allocated() - baseline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--quick', action='store_true', help='tiny sizes, for a smoke test')
    args = parser.parse_args()
    if args.quick:
        cases = {'8 x 64ch, 8x4 maps': (8, 64, 8, 4)}
    else:
        cases = {'64 x 512ch, 256x128 input (16x8 maps)': (64, 512, 16, 8),
                 '64 x 512ch, 256x256 input (16x16 maps)': (64, 512, 16, 16)}
    for label, shape in cases.items():
        full, chunked = (measure(variant, shape, args.device) for variant in VARIANTS)
        if abs(full.loss - chunked.loss) > 1e-4 * max(1.0, abs(full.loss)):
            raise RuntimeError(f'losses differ: {full.loss} vs {chunked.loss}')
        print(f'{label}, {args.device}, loss {chunked.loss:.6f} (both)')
        for name, result in zip(VARIANTS, (full, chunked)):
            print(f'  {name:<12} peak {result.peak_bytes / 2**20:8.1f} MiB  '
                  f'time {result.seconds:7.3f} s')
        print(f'  ratio msinet-reid / full tensor: peak memory '
              f'{chunked.peak_bytes / max(full.peak_bytes, 1):.3f}, '
              f'time {chunked.seconds / full.seconds:.3f}')


if __name__ == '__main__':
    main()
