"""Compiled inference: ``torch.compile`` per batch-size bucket, and CUDA graphs on a GPU.

MSINet is hundreds of small kernels (depthwise 3x3 and 1x1 convolutions, the interaction
modules): on a GPU, small batches wait on kernel launches rather than on arithmetic, and
eager MSINet takes longer than ResNet-50 despite 0.42x its FLOPs. :func:`compile_model`
removes what eager execution adds around the arithmetic: inductor fuses the elementwise
operations with their neighbours (on CUDA it also folds BatchNorm into the convolutions:
``freezing``), and on CUDA each bucket's forward pass is captured once as a CUDA graph,
so a call is one graph launch.

Shapes are static: every batch is padded up to the next of a fixed set of bucket sizes
(powers of two up to ``max_batch_size``; larger batches run in chunks of it), each bucket
compiled (and captured) at construction. A caller's loop never compiles, whatever batch
sizes it sends.
"""
import bisect
import copy
from typing import Iterable, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..models import MSINet
from .inference import InferenceModel

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class CompileError(RuntimeError):
    """``torch.compile`` (or CUDA graph capture) failed; the message names the cause."""


def bucket_sizes(max_batch_size: int) -> Tuple[int, ...]:
    """The batch sizes compiled for ``max_batch_size``: powers of two below it, and it.

    Example::

        >>> bucket_sizes(128), bucket_sizes(48)
        ((1, 2, 4, 8, 16, 32, 64, 128), (1, 2, 4, 8, 16, 32, 48))
    """
    if max_batch_size < 1:
        raise ValueError(f'max_batch_size must be at least 1, got {max_batch_size}')
    sizes = [1 << power for power in range(max_batch_size.bit_length())
             if 1 << power < max_batch_size]
    return tuple(sizes + [max_batch_size])


def _feature_module(model: nn.Module, channels_last: bool) -> nn.Module:
    """A copy of ``model`` computing its eval-mode features and nothing else, its weights
    in the memory format of ``channels_last``."""
    if isinstance(model, InferenceModel):
        net = copy.deepcopy(model)
        net.channels_last = channels_last
    elif isinstance(model, MSINet):  # BatchNorm folded, training-only heads dropped
        net = InferenceModel(model, channels_last=channels_last)
    else:  # any torchreid model: inductor folds or fuses its BatchNorms
        net = copy.deepcopy(model).eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return net.to(memory_format=memory_format).requires_grad_(False)


class CompiledModel(nn.Module):
    """Eval-mode features of a model, compiled for a fixed image size and set of batch
    sizes; build it with :func:`compile_model`.

    A call takes ``(B, 3, H, W)`` images of any batch size ``B`` (on any device; they are
    copied to the model's) and returns new ``(B, D)`` float32 features on the model's
    device, which later calls never overwrite. It holds no parameters: ``.to()`` moves
    nothing, and it cannot be trained.
    """

    def __init__(self, model: nn.Module, device: torch.device, image_size: Tuple[int, int],
                 buckets: Sequence[int], dtype: torch.dtype, channels_last: bool,
                 max_autotune: bool, progress: bool) -> None:
        super().__init__()
        if dtype not in DTYPES:
            raise ValueError(f'dtype must be one of {", ".join(map(str, DTYPES))}; got {dtype}')
        self.device, self.dtype = torch.device(device), dtype
        if self.device.type == 'cuda' and self.device.index is None:
            self.device = torch.device('cuda', torch.cuda.current_device())
        self.image_size = tuple(image_size)
        self.buckets = tuple(sorted(set(buckets)))
        if not self.buckets or self.buckets[0] < 1:
            raise ValueError(f'bucket sizes must be positive; got {tuple(buckets)}')
        self.max_batch_size = self.buckets[-1]
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        net = _feature_module(model, channels_last).to(self.device, dtype)
        # Freezing makes the weights constants (folding BatchNorm into convolutions) on
        # CUDA. Not on the CPU: no faster there (benchmarks/inference.py), and its passes
        # emit vector code that fails to build where inductor has no vector ISA (torch
        # 2.14 under ATEN_CPU_CAPABILITY=default).
        options = {'freezing': self.device.type == 'cuda', 'max_autotune': max_autotune}
        # Held outside the module tree: the compiled graphs own their (frozen) weights.
        self._compiled = (torch.compile(net, fullgraph=True, dynamic=False, options=options),)
        self._inputs, self._outputs, self._graphs = {}, {}, {}
        self._build(type(model).__name__, progress)
        self.feature_dim = self._outputs[self.buckets[0]].shape[1]

    @torch.inference_mode()
    def _build(self, name: str, progress: bool) -> None:
        """Compile every bucket (and on CUDA, capture its graph), or raise CompileError."""
        pool = torch.cuda.graph_pool_handle() if self.device.type == 'cuda' else None
        with _compiling_buckets(len(self.buckets)):
            for bucket in tqdm(self.buckets, desc=f'Compiling {name}', unit='batch size',
                               disable=not progress):
                try:
                    self._compile_bucket(bucket, pool)
                except Exception as error:  # any failure of dynamo, inductor or capture
                    raise CompileError(_explain(error, name, bucket, self.device)) from error

    def _compile_bucket(self, bucket: int, pool) -> None:
        height, width = self.image_size
        images = torch.randn(bucket, 3, height, width, device=self.device).to(
            self.dtype, memory_format=self.memory_format)
        self._inputs[bucket] = images
        compiled = self._compiled[0]
        if self.device.type != 'cuda':
            self._outputs[bucket] = compiled(images)
            return
        # Compile and warm up on a side stream (cuBLAS/cuDNN handles, Triton's autotuning),
        # then capture. The graphs share one memory pool: one graph's replay may write
        # over another's output, which is safe because replays never overlap and forward
        # copies each output out before the next replay. The inputs live outside the pool.
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                compiled(images)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            self._outputs[bucket] = compiled(images)
        self._graphs[bucket] = graph

    def train(self, mode: bool = True) -> 'CompiledModel':
        if mode:
            raise RuntimeError('a CompiledModel computes eval-mode features and cannot be '
                               'trained; train the original model and compile it again')
        return super().train(False)

    def _check(self, images: Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f'expected images of shape (batch, 3, height, width); got '
                             f'{tuple(images.shape)}')
        if tuple(images.shape[2:]) != self.image_size:
            height, width = images.shape[2:]
            raise ValueError(
                f'this model was compiled for {self.image_size[0]}x{self.image_size[1]} '
                f'images; got {height}x{width}: resize the images, or compile with '
                f'image_size=({height}, {width})')

    def _run(self, images: Tensor) -> Tensor:
        """Features of at most ``max_batch_size`` images, in the bucket's own output."""
        count = len(images)
        bucket = self.buckets[bisect.bisect_left(self.buckets, count)]
        self._inputs[bucket][:count].copy_(images)  # the rows past count are left as they are
        if bucket in self._graphs:
            self._graphs[bucket].replay()
            return self._outputs[bucket][:count]
        return self._compiled[0](self._inputs[bucket])[:count]

    def forward(self, images: Tensor) -> Tensor:
        self._check(images)
        features = torch.empty(len(images), self.feature_dim, device=self.device)
        # The compiled graphs guard on grad and inference mode and on autocast: run them
        # as they were compiled. (``features`` stays a normal tensor, free to modify.)
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
            for start in range(0, len(images), self.max_batch_size):
                chunk = images[start:start + self.max_batch_size]
                features[start:start + len(chunk)] = self._run(chunk)
        return features

    def extra_repr(self) -> str:
        return (f'image_size={self.image_size}, buckets={self.buckets}, dtype={self.dtype}, '
                f'device={self.device}, cuda_graphs={bool(self._graphs)}')


def _compiling_buckets(count: int):
    """Dynamo's settings while compiling ``count`` buckets: each is one more compiled entry
    of the same forward, so its limits (8 per module, 256 in all) are raised by ``count``;
    and a failure, or a limit reached all the same, raises rather than running eager."""
    config = torch._dynamo.config
    # torch < 2.7 calls the limits cache_size_limit and accumulated_cache_size_limit.
    name = 'recompile_limit' if hasattr(config, 'recompile_limit') else 'cache_size_limit'
    accumulated = f'accumulated_{name}'
    settings = {'suppress_errors': False, name: getattr(config, name) + count,
                accumulated: getattr(config, accumulated) + count}
    for fail in ('fail_on_recompile_limit_hit', 'fail_on_cache_limit_hit'):
        if hasattr(config, fail):
            settings[fail] = True
    return config.patch(settings)


def _explain(error: Exception, name: str, bucket: int, device: torch.device) -> str:
    cause = str(error).strip().splitlines()[0] if str(error).strip() else ''
    message = (f'torch.compile could not compile {name} for batches of {bucket} on '
               f'{device}: {type(error).__name__}: {cause}')
    if device.type == 'cpu' and 'compiler' in str(error).lower():
        message += ' (inductor compiles CPU kernels with a C++ compiler: install g++)'
    return message


def compile_model(model: nn.Module, device: torch.device = torch.device('cpu'),
                  image_size: Tuple[int, int] = (256, 128), max_batch_size: int = 128,
                  dtype: torch.dtype = torch.float32, buckets: Optional[Iterable[int]] = None,
                  channels_last: bool = True, max_autotune: bool = False,
                  progress: bool = True) -> CompiledModel:
    """Compile the eval-mode features of ``model`` for fast inference on ``device``.

    ``model`` is an MSINet (its :class:`InferenceModel` is compiled: BatchNorm folded,
    training-only parts dropped), an ``InferenceModel``, or any torchreid model. The
    copy runs channels-last (NCHW with ``channels_last=False``) in ``dtype`` (float32,
    float16 or bfloat16; the features come back float32), compiled by inductor with
    static shapes for each bucket size: ``bucket_sizes(max_batch_size)``, or ``buckets``
    when given; ``max_autotune`` lets inductor time kernel variants (compiles longer). On
    CUDA every bucket's forward is also captured as a CUDA graph. All of it happens here,
    before this returns (``progress`` shows a bar); a failure raises
    :class:`CompileError` naming the cause.

    Example::

        >>> fast = compile_model(model, torch.device('cuda'), max_batch_size=64)
        >>> fast(torch.randn(13, 3, 256, 128)).shape  # padded to 16, no recompilation
        torch.Size([13, 768])
    """
    return CompiledModel(model, device, image_size,
                         buckets if buckets is not None else bucket_sizes(max_batch_size),
                         dtype, channels_last, max_autotune, progress)
