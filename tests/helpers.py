"""Helpers shared by the tests."""
import math
from contextlib import contextmanager

import torch
from torch import nn


def deterministic_state_dict(model: nn.Module) -> dict:
    """Weights that depend only on each tensor's name, position and shape.

    Used to compare this package's models with outputs recorded from the reference
    implementation: no random generator is involved, so the values are the same on
    every machine and torch version. Scales keep activations of order one, BN
    variances positive, and Cross Attention's ``gamma`` non-zero so it takes effect.
    """
    state = {}
    for index, (key, value) in enumerate(model.state_dict().items()):
        if not value.is_floating_point():
            state[key] = value.clone()
            continue
        wave = torch.sin(torch.arange(value.numel(), dtype=torch.float64) * 0.7 + index)
        wave = wave.view(value.shape)
        if key.endswith('running_var'):
            wave = 1.0 + 0.5 * wave
        elif key.endswith('running_mean') or key.endswith('bias'):
            wave = 0.1 * wave
        elif key.endswith('gamma'):
            wave = 0.5 + 0.2 * wave
        elif value.dim() == 1:  # BatchNorm scale
            wave = 1.0 + 0.2 * wave
        else:  # conv / linear weight, roughly variance-preserving
            wave = wave * math.sqrt(1.5 / value[0].numel())
        state[key] = wave.to(value.dtype)
    return state


def engine_checkpoint(folder, model_name: str = 'msinet', num_classes: int = 7):
    """A checkpoint of deterministic weights as torchreid's engines write it, numpy rank1
    included; returns its path."""
    import numpy as np
    import torchreid

    model = torchreid.models.build_model(model_name, num_classes, pretrained=False)
    model.load_state_dict(deterministic_state_dict(model))
    torchreid.utils.save_checkpoint(
        {'state_dict': model.state_dict(), 'epoch': 1, 'rank1': np.float32(0.25)}, str(folder))
    return folder / 'model.pth.tar-1'


def random_checkpoint(path, num_classes: int = 8):
    """A bare state_dict of randomly initialised MSINet (seed 0) at ``path``; returns it.

    Unlike :func:`deterministic_state_dict`'s, these weights tell crops apart as trained
    ones do, and keep activations clear of denormal floats, which slow the CPU down many
    times over.
    """
    import torchreid

    torch.manual_seed(0)
    model = torchreid.models.build_model('msinet', num_classes, pretrained=False)
    torch.save(model.state_dict(), path)
    return path


def deterministic_images(batch: int, height: int, width: int) -> torch.Tensor:
    """A fixed batch of images in float64, values in [-1, 1]."""
    n = batch * 3 * height * width
    return torch.cos(torch.arange(n, dtype=torch.float64) * 0.013).view(batch, 3, height, width)


class FrozenBatchNorm:
    """Engine mixin: BatchNorm on running statistics, though torchreid puts every layer in
    train mode each epoch. A step on a global batch is then the same computation whether
    one process or several take it (on GPU, ``sync_bn=True`` gives that with batch
    statistics)."""

    def two_stepped_transfer_learning(self, *args, **kwargs):
        super().two_stepped_transfer_learning(*args, **kwargs)
        for module in self.model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


@contextmanager
def float64(*datamanagers):
    """Models, buffers and losses built in the block are float64, and the images of the
    data managers' loaders are too (torchreid's transforms make float32).

    For comparing computations that differ only in the order of their float sums (one
    process and two, blocks and rows): their float64 rounding (near 1e-16) stays far below
    any tolerance that still catches a wrong result, on every CPU, where float32 rounding
    grows through a few training steps to 1e-4 and beyond.
    """
    from torchvision.transforms import ConvertImageDtype

    to_float64 = ConvertImageDtype(torch.float64)
    composes = [compose for manager in datamanagers
                for compose in (manager.transform_tr, manager.transform_te)]
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    for compose in composes:
        compose.transforms.append(to_float64)
    try:
        yield
    finally:
        torch.set_default_dtype(default)
        for compose in composes:
            compose.transforms.remove(to_float64)


def _distributed_worker(rank, world_size, store, check, args):
    import os

    from msinet_reid import distributed

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    # A file store instead of a TCP port: nothing to race for, nothing left listening.
    torch.distributed.init_process_group('gloo', init_method=f'file://{store}', rank=rank,
                                         world_size=world_size)
    info = distributed.init_distributed()  # finds the group joined and describes it
    try:
        check(info, *args)
    finally:
        torch.distributed.destroy_process_group()


def run_distributed(check, *args, world_size: int = 2) -> None:
    """Run ``check(info, *args)`` in ``world_size`` fresh processes joined with gloo.

    The processes are forked by multiprocessing's fork server, which imported torch,
    torchreid and msinet_reid once and ran nothing: each starts as a fresh interpreter that
    has done those imports, instead of spending seconds on them. Their environment is the
    fork server's, started with the first call: pass settings in ``args``, not os.environ."""
    import multiprocessing
    import tempfile

    import torch.multiprocessing as mp

    multiprocessing.set_forkserver_preload(['torch', 'torchreid', 'msinet_reid'])
    with tempfile.TemporaryDirectory() as folder:
        mp.start_processes(_distributed_worker, nprocs=world_size, start_method='forkserver',
                           args=(world_size, f'{folder}/store', check, args))


def load_script(relative_path: str):
    """Import a script of the repository (benchmarks/, examples/) as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
