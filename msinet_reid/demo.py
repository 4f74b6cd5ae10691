"""The built-in demo: train MSINet on synthetic Market-1501-style data, on the CPU.

Everything goes through torchreid: its ``Market1501`` dataset and ``ImageDataManager``
read the generated data, :class:`~msinet_reid.engine.ImageMSINetEngine` (a torchreid
``Engine`` with the paper's losses) trains, and its metrics evaluate. The untrained model
is evaluated first, so the gain from training shows.
"""
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import torch

from ._torchreid import models, optim, utils
from .data import image_data_manager, make_market1501
from .engine import ImageMSINetEngine
from .evaluation import evaluate, results_table


def default_root() -> Path:
    cache = os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')
    return Path(cache) / 'msinet_reid' / 'demo'


def _option(default, help: str):
    return field(default=default, metadata={'help': help})


@dataclass
class DemoConfig:
    """Settings of the demo; the defaults train for a few minutes on two CPU cores."""

    root: Path = field(default_factory=default_root,
                       metadata={'help': 'folder for the data and the training logs'})
    model: str = _option('msinet', 'registered MSINet model to train')
    epochs: int = _option(10, 'training epochs')
    batch_size: int = _option(32, 'training batch size (identities x instances)')
    num_instances: int = _option(4, 'images per identity in a batch')
    height: int = _option(96, 'image height (a multiple of 16, at least 32)')
    width: int = _option(48, 'image width (a multiple of 16)')
    lr: float = _option(0.002, 'Adam learning rate (cosine schedule)')
    num_train_ids: int = _option(64, 'identities in the training split')
    num_test_ids: int = _option(64, 'identities in the query/gallery split')
    workers: int = _option(2, 'data loading processes')
    seed: int = _option(0, 'seed for the data and the training')
    device: str = _option('cpu', "'cpu' or 'cuda'")
    print_freq: int = _option(0, 'print training progress every N batches (0: at the end of '
                                 'each epoch)')


def run_demo(config: Optional[DemoConfig] = None) -> Dict[str, Dict[str, float]]:
    """Generate the data if absent, evaluate, train, evaluate again; return both results.

    Example::

        >>> results = run_demo(DemoConfig(epochs=1))
        >>> results['trained']['mAP'] > results['untrained']['mAP']
    """
    config = config or DemoConfig()
    started = time.time()
    root = Path(config.root).expanduser()
    device = torch.device(config.device)
    use_gpu = device.type == 'cuda'
    utils.set_random_seed(config.seed)

    print(f'[1/3] Synthetic Market-1501 dataset in {root}')
    make_market1501(root, num_train_ids=config.num_train_ids, num_test_ids=config.num_test_ids,
                    height=config.height, width=config.width, seed=config.seed)
    datamanager = image_data_manager(
        root=str(root), sources='market1501', height=config.height, width=config.width,
        transforms=['random_flip', 'random_crop'], batch_size_train=config.batch_size,
        batch_size_test=128, num_instances=config.num_instances,
        train_sampler='RandomIdentitySampler', workers=config.workers, use_gpu=use_gpu,
    )
    model = models.build_model(config.model, datamanager.num_train_pids, loss='triplet',
                               pretrained=False).to(device)

    print(f'[2/3] Evaluating the untrained {config.model}')
    untrained = evaluate(model, datamanager, device)['market1501']

    print(f'[3/3] Training {config.model} for {config.epochs} epochs, then evaluating it, '
          f'with ImageMSINetEngine on {device}')
    optimizer = optim.build_optimizer(model, optim='adam', lr=config.lr)
    scheduler = optim.build_lr_scheduler(optimizer, lr_scheduler='cosine',
                                         max_epoch=config.epochs)
    trainer = ImageMSINetEngine(datamanager, model, optimizer, scheduler=scheduler,
                                use_gpu=use_gpu, seed=config.seed)
    trainer.run(save_dir=str(root / 'log'), max_epoch=config.epochs,
                print_freq=config.print_freq)

    trained = trainer.results['market1501']  # the engine's final test
    results = {'untrained': untrained, 'trained': trained}
    print(results_table({f'{state} {config.model}': scores for state, scores in results.items()}))
    print(f'Done in {time.time() - started:.0f} s; checkpoints and TensorBoard logs in '
          f'{root / "log"}')
    return results
