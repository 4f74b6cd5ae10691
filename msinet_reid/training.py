"""``msinet-reid train``: a registered model trained with the paper's recipe engine on a
torchreid dataset or on one's own data, as one :class:`~msinet_reid.config.TrainConfig`
says, with a model card beside the trained weights.

Example::

    >>> config = load_config(settings={'data.path': 'my_crops', 'recipe.max_epoch': 60})
    >>> engine = train(config)
"""
import time
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from . import __version__, distributed
from ._torchreid import models, utils
from .config import TrainConfig
from .data import image_data_manager
from .data.own import OWN_NAME, describe_splits, register_own_data
from .engine import ImageMSINetEngine
from .model_card import environment, sha256, write_model_card
from .recipes import build_optimizer


def run_name(config: TrainConfig) -> str:
    """The experiment's name, else ``<model>_<recipe>_<data>``: the default save folder
    under ``log/``."""
    if config.experiment:
        return config.experiment
    data = Path(config.data.path).stem if config.data.path else config.data.source
    return f'{config.model.name}_{config.recipe.name}_{data}'


def save_dir_of(config: TrainConfig) -> Path:
    return Path(config.run.save_dir or Path('log') / run_name(config))


def train(config: TrainConfig) -> ImageMSINetEngine:
    """Train as ``config`` says (in one process or under torchrun), evaluate, and write
    the model card (rank 0); return the engine."""
    started = time.time()
    recipe, run = config.recipe, config.run
    device = distributed.setup_device(run.device)  # under torchrun: this process's GPU
    use_gpu = device.type == 'cuda'
    utils.set_random_seed(run.seed)
    save_dir = save_dir_of(config)
    if distributed.is_main_process():
        print(f'msinet-reid {__version__}: {run_name(config)} into {save_dir}\n{recipe}')
    with distributed.main_process_first():  # rank 0 downloads, the others then read
        source, targets, root, data = _datasets(config)
        datamanager = image_data_manager(
            root=root, sources=source, targets=targets, workers=config.data.workers,
            use_gpu=use_gpu, **recipe.datamanager_kwargs())
        extra = {} if config.model.weights is None else {'pretrained_path': config.model.weights}
        model = models.build_model(config.model.name, datamanager.num_train_pids,
                                   loss='triplet', pretrained=recipe.pretrained,
                                   **extra).to(device)
    optimizer, scheduler = build_optimizer(model, recipe)
    engine = ImageMSINetEngine(datamanager, model, optimizer, scheduler=scheduler,
                               use_gpu=use_gpu, amp=run.amp, seed=run.seed, sync_bn=run.sync_bn,
                               **recipe.engine_kwargs())
    start_epoch = engine.resume(run.resume, save_dir) if run.resume else 0
    engine.run(save_dir=str(save_dir), start_epoch=start_epoch, print_freq=run.print_freq,
               rerank=run.rerank, test_only=run.evaluate_only,
               checkpoint_every=run.checkpoint_every, checkpoint_minutes=run.checkpoint_minutes,
               **recipe.run_kwargs())
    if engine.dist.is_main and not run.evaluate_only:
        if 'splits' not in data:  # a torchreid dataset
            data.update(describe_splits(_torchreid_splits(datamanager, targets[0]), root))
        card = write_model_card(save_dir, _card(config, engine, data, device,
                                                time.time() - started))
        print(f'Model card written to {card}')
    return engine


def _datasets(config: TrainConfig) -> Tuple[str, List[str], str, dict]:
    """The torchreid source, targets and root to read (own data registered first), and
    what the model card says of the data."""
    data = config.data
    if data.path is not None:
        own = register_own_data(OWN_NAME, data.path, data.test_ids, config.run.seed)
        return OWN_NAME, [OWN_NAME], str(own.root), {'name': str(own.source), **own.summary()}
    return data.source, [data.target or data.source], data.root, {'name': data.source}


def _torchreid_splits(datamanager, target: str) -> Dict[str, list]:
    test = datamanager.test_dataset[target]
    return {'train': datamanager.train_loader.dataset.train, 'query': test['query'],
            'gallery': test['gallery']}


def _card(config: TrainConfig, engine: ImageMSINetEngine, data: dict, device: torch.device,
          wall_time_s: float) -> Dict:
    weights = save_dir_of(config) / 'model' / f'model.pth.tar-{config.recipe.max_epoch}'
    model = engine.model
    return {
        'model': {'name': config.model.name, 'genotype': list(model.genotype),
                  'input_size': [config.recipe.height, config.recipe.width],
                  'feature_dim': model.feature_dim},
        'config': config.to_dict(),
        'data': data,
        'metrics': {(f'{name} (re-ranked)' if config.run.rerank else name): scores
                    for name, scores in engine.results.items()},
        'environment': environment(device),
        'training': {'epochs': config.recipe.max_epoch, 'wall_time_s': round(wall_time_s, 1)},
        'weights': {'file': str(weights.relative_to(save_dir_of(config))),
                    'sha256': sha256(weights)},
    }
